"""Small helpers over object metadata."""

from __future__ import annotations

import datetime as _dt
import os
import secrets
import threading
import time
from typing import Any

_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # upstream's utilrand alphabet: no vowels, no 0/1/3


_NOW_CACHE: list[Any] = [None, ""]  # [whole second, its RFC 3339 text]


def now_rfc3339() -> str:
    # Every write stamps one or two of these; formatting once per second saves a strftime each.
    second = int(time.time())
    if second != _NOW_CACHE[0]:
        _NOW_CACHE[1] = _dt.datetime.fromtimestamp(second, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        _NOW_CACHE[0] = second
    return _NOW_CACHE[1]


def now_micro() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_UID_POOL = bytearray()  # random bytes from os.urandom, read 4 KiB at a time
_UID_LOCK = threading.Lock()


def _reset_uid_pool() -> None:
    global _UID_LOCK
    _UID_LOCK = threading.Lock()  # it may have been held by another thread at the fork
    _UID_POOL.clear()  # a forked child must not hand out its parent's UIDs


os.register_at_fork(after_in_child=_reset_uid_pool)


def new_uid() -> str:
    """A random (version 4) UUID as text, as str(uuid.uuid4()) gives.

    os.urandom is a system call that also releases the GIL, so each create could stall
    on the storage thread; one call serves 256 UIDs instead."""
    with _UID_LOCK:  # two threads must never take the same bytes
        if len(_UID_POOL) < 16:
            _UID_POOL.extend(os.urandom(4096))
        b = _UID_POOL[-16:]
        del _UID_POOL[-16:]
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def generate_name(base: str) -> str:
    # Upstream truncates the base so that base + 5 random chars fit 63 chars.
    base = base[: 63 - 5]
    return base + "".join(secrets.choice(_GENERATE_ALPHABET) for _ in range(5))


def meta(obj: dict[str, Any]) -> dict[str, Any]:
    m = obj.get("metadata")
    if not isinstance(m, dict):
        m = {}
        obj["metadata"] = m
    return m


# ObjectMeta's maps and lists are all `omitempty` in Go, so kube-apiserver never writes an empty
# (or null) one back: `labels: {}` from a client is gone once stored. (Not managedFields: an
# empty list there is a request to reset them, which the field manager reads first.)
_EMPTY_OMITTED = ("labels", "annotations", "finalizers", "ownerReferences")


def drop_empty_meta(obj: dict[str, Any]) -> None:
    """Remove metadata's empty or null maps and lists, as Go's omitempty encoding does."""
    m = obj.get("metadata")
    if not isinstance(m, dict):
        return
    for key in _EMPTY_OMITTED:
        if key in m and m[key] in (None, {}, []):
            del m[key]


def parse_time(value: str) -> _dt.datetime | None:
    try:
        return _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
