"""`kplane migrate --from sqlite:DIR --to etcd:URL[,URL...]`: copy every object to etcd.

The source is read at one revision (a consistent snapshot, paged). The destination must be
empty or hold only what an interrupted run of the same migration copied (the same keys with
the same values): anything else — another cluster's objects, or keys kplane has since
changed there — and nothing is written, since merging two stores would give two Services one
ClusterIP. Each key is created in etcd only if absent, so an interrupted run is resumed by
running it again. At the end the number of keys per resource prefix is compared between
source and destination, and the destination's history is compacted: resourceVersions change
(they are etcd's revisions; uids, names and contents do not), and a client still holding one
from the old store gets 410 Expired (or, above etcd's revision, 504 "too large") and relists,
rather than a watch that silently starts elsewhere. Stop kplane before migrating.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from kplane.storage.interface import KV, KeyExistsError, Store, StoreInUseError, UnavailableError

_ROOT = "/registry/"
_PAGE = 500


def add_migrate_parser(sub: Any) -> None:
    p = sub.add_parser("migrate", help="copy every object from one storage backend to another")
    p.add_argument("--from", dest="source", required=True, help="sqlite:DATA_DIR (kplane's --data-dir)")
    p.add_argument("--to", dest="dest", required=True, help="etcd:URL[,URL...]")
    p.add_argument("--etcd-prefix", default="/registry")
    p.add_argument("--etcd-cafile", default="")
    p.add_argument("--etcd-certfile", default="")
    p.add_argument("--etcd-keyfile", default="")
    p.add_argument("-v", "--v", type=int, default=0, help="log verbosity")


def _resource(key: str) -> str:
    """The resource prefix of a key: /registry/<resource>/ or /registry/<group>/<resource>/."""
    parts = key[len(_ROOT):].split("/")
    if len(parts) >= 3 and "." in parts[0]:
        return "/".join(parts[:2])
    return parts[0]


def _sqlite_path(where: str) -> str:
    path = Path(where).expanduser()
    db = path / "kplane.db" if path.is_dir() else path
    if not db.exists():
        raise SystemExit(f"kplane migrate: no kplane.db at {db}")
    return str(db)


async def _open(spec: str, args: argparse.Namespace) -> Store:
    kind, _, where = spec.partition(":")
    if kind == "sqlite":
        from kplane.storage.sqlite import open_sqlite_store

        return await open_sqlite_store(_sqlite_path(where))
    if kind == "etcd":
        from kplane.storage.etcd import open_etcd_store

        return await open_etcd_store([s for s in where.split(",") if s], prefix=args.etcd_prefix,
                                     cafile=args.etcd_cafile or None, certfile=args.etcd_certfile or None,
                                     keyfile=args.etcd_keyfile or None)
    raise SystemExit(f"kplane migrate: unknown storage {spec!r} (sqlite:DIR or etcd:URL)")


async def _items(store: Store, revision: int = 0) -> AsyncIterator[KV]:
    """Every key under /registry/, page by page, at one revision (0: the current one)."""
    last = None
    while True:
        page = await store.list(_ROOT, revision=revision, start_after=last, limit=_PAGE)
        revision = page.revision
        for kv in page.items:
            yield kv
        if not page.more:
            return
        last = page.items[-1].key


async def _count(store: Store) -> Counter[str]:
    return Counter([_resource(kv.key) async for kv in _items(store)])


async def _foreign_keys(wanted: dict[str, bytes], dest: Store) -> list[str]:
    """Keys of the destination that are not the source's key with the same value."""
    return [kv.key async for kv in _items(dest) if wanted.get(kv.key) != bytes(kv.value)]


async def migrate(source: Store, dest: Store, out: Any = sys.stderr) -> dict[str, int]:
    """Copy every key under /registry/; returns counts of copied, skipped and conflicting keys.
    Refuses (MigrationRefused) a destination holding anything but an earlier run's copies."""
    rev = await source.current_revision()
    wanted = {kv.key: bytes(kv.value) async for kv in _items(source, rev)}  # the snapshot copied
    foreign = await _foreign_keys(wanted, dest)
    if foreign:
        raise MigrationRefused(foreign)
    stats = {"copied": 0, "skipped": 0, "conflicts": 0}
    total = len(wanted)
    for done, (key, value) in enumerate(wanted.items(), start=1):
        try:
            await dest.create(key, value)
            stats["copied"] += 1
        except KeyExistsError:
            existing = await dest.get(key)
            if existing is not None and bytes(existing.value) == value:
                stats["skipped"] += 1
            else:
                stats["conflicts"] += 1
                print(f"\nkplane migrate: {key} exists in the destination with other content; left as is",
                      file=out)
        if done % 50 == 0 or done == total:
            width = 30
            filled = width * done // max(total, 1)
            bar = "#" * filled + "." * (width - filled)
            print(f"\r[{bar}] {done}/{total}", end="", file=out, flush=True)
    print(file=out)
    return stats


class MigrationRefused(Exception):
    def __init__(self, keys: list[str]):
        shown = "\n  ".join(keys[:10]) + (f"\n  ... and {len(keys) - 10} more" if len(keys) > 10 else "")
        super().__init__(f"the destination holds {len(keys)} keys that are not the source's (another cluster's "
                         f"objects, or changed since an earlier run); nothing was written:\n  {shown}")
        self.keys = keys


async def _run(args: argparse.Namespace) -> int:
    try:
        source = await _open(args.source, args)
    except StoreInUseError:
        print(f"kplane migrate: {args.source} is in use by a running kplane serve: stop it first", file=sys.stderr)
        return 1
    try:
        dest = await _open(args.dest, args)
    except UnavailableError as e:
        await source.close()
        print(f"kplane migrate: {e}", file=sys.stderr)
        return 1
    try:
        try:
            stats = await migrate(source, dest)
        except MigrationRefused as e:
            print(f"kplane migrate: refused: {e}", file=sys.stderr)
            return 1
        except UnavailableError as e:
            print(f"\nkplane migrate: {e} (run it again to resume)", file=sys.stderr)
            return 1
        src, dst = await _count(source), await _count(dest)
        print(f"copied {stats['copied']}, already there {stats['skipped']}, conflicts {stats['conflicts']}")
        bad = {r: (src[r], dst.get(r, 0)) for r in src if dst.get(r, 0) < src[r]}
        for r, (a, b) in sorted(bad.items()):
            print(f"  {r}: {a} in the source, {b} in the destination")
        if bad or stats["conflicts"]:
            print("verification FAILED")
            return 1
        print(f"verified: {sum(src.values())} objects in {len(src)} resources present in the destination")
        # The old store's resourceVersions mean nothing here: history before now is gone, so a
        # client that resumes with one is told to relist.
        await dest.compact(await dest.current_revision())
        return 0
    finally:
        await source.close()
        await dest.close()


def run_migrate(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
