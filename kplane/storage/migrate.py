"""`kplane migrate --from sqlite:DIR --to etcd:URL[,URL...]`: copy every object to etcd.

The source is read at one revision (a consistent snapshot, paged). Each key is created in
etcd only if absent, so an interrupted run is resumed by running it again: keys already
copied with the same value are skipped, keys that exist with a different value are
reported and left alone (never overwritten). At the end the number of keys per resource
prefix is compared between source and destination. resourceVersions change (they are
etcd's revisions); uids, names and contents do not. Stop kplane before migrating.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from kplane.storage.interface import KeyExistsError, Store

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


async def _count(store: Store, revision: int = 0) -> Counter[str]:
    counts: Counter[str] = Counter()
    last = None
    while True:
        page = await store.list(_ROOT, revision=revision, start_after=last, limit=_PAGE)
        revision = page.revision
        counts.update(_resource(kv.key) for kv in page.items)
        if not page.more:
            return counts
        last = page.items[-1].key


async def migrate(source: Store, dest: Store, out: Any = sys.stderr) -> dict[str, int]:
    """Copy every key under /registry/; returns counts of copied, skipped and conflicting keys."""
    total = sum((await _count(source)).values())
    rev = await source.current_revision()
    stats = {"copied": 0, "skipped": 0, "conflicts": 0}
    last = None
    done = 0
    while True:
        page = await source.list(_ROOT, revision=rev, start_after=last, limit=_PAGE)
        for kv in page.items:
            try:
                await dest.create(kv.key, kv.value)
                stats["copied"] += 1
            except KeyExistsError:
                existing = await dest.get(kv.key)
                if existing is not None and existing.value == kv.value:
                    stats["skipped"] += 1
                else:
                    stats["conflicts"] += 1
                    print(f"\nkplane migrate: {kv.key} exists in the destination with other content; "
                          "left as is", file=out)
            done += 1
            if done % 50 == 0 or done == total:
                width = 30
                filled = width * done // max(total, 1)
                bar = "#" * filled + "." * (width - filled)
                print(f"\r[{bar}] {done}/{total}", end="", file=out, flush=True)
        if not page.more:
            break
        last = page.items[-1].key
    print(file=out)
    return stats


async def _run(args: argparse.Namespace) -> int:
    source = await _open(args.source, args)
    dest = await _open(args.dest, args)
    try:
        stats = await migrate(source, dest)
        src, dst = await _count(source), await _count(dest)
        print(f"copied {stats['copied']}, already there {stats['skipped']}, conflicts {stats['conflicts']}")
        bad = {r: (src[r], dst.get(r, 0)) for r in src if dst.get(r, 0) < src[r]}
        for r, (a, b) in sorted(bad.items()):
            print(f"  {r}: {a} in the source, {b} in the destination")
        if bad or stats["conflicts"]:
            print("verification FAILED")
            return 1
        print(f"verified: {sum(src.values())} objects in {len(src)} resources present in the destination")
        return 0
    finally:
        await source.close()
        await dest.close()


def run_migrate(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
