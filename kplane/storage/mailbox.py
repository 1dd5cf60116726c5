"""The per-watcher queue both backends fan events out through.

A store pushes events (and progress notifications) into each watcher's
mailbox from its event loop; the watcher's iterator pops them. A writer must
never block on a slow watcher and no event may be dropped silently: when a
mailbox passes its limit it is emptied and marked RESYNC, and the watcher
re-reads what it missed from the store's history (or reports the history as
compacted). Consecutive progress notifications collapse into the newest.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from kplane.storage.interface import Progress

# Markers (compared by identity).
RESYNC = object()  # the mailbox overflowed and was emptied: replay from history
CLOSED = object()  # the store closed: end the iterator


class Mailbox:
    """Unbounded-looking, bounded-in-memory queue of one watcher (event-loop thread only)."""

    __slots__ = ("items", "keep", "limit", "prefix", "progress", "waiter")

    def __init__(self, prefix: str, progress: bool, limit: int, keep: tuple[type, ...] = ()):
        self.prefix = prefix
        self.progress = progress  # whether the watcher asked for progress notifications
        self.limit = limit
        self.keep = keep  # item types an overflow must not discard (e.g. etcd's lost-history marker)
        self.items: deque[Any] = deque()
        self.waiter: asyncio.Future[None] | None = None

    def push(self, item: Any) -> None:
        if len(self.items) >= self.limit and item is not CLOSED and not isinstance(item, self.keep):
            self.items.clear()
            self.items.append(RESYNC)
        if isinstance(item, Progress) and self.items and isinstance(self.items[-1], Progress):
            self.items[-1] = item  # only the newest progress matters
        else:
            self.items.append(item)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def pop(self) -> Any:
        while not self.items:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        return self.items.popleft()
