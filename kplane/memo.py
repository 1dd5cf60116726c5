"""Bounded memos for hot paths that every layer may use (this module imports nothing from kplane)."""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def remember(memo: dict[K, V], key: K, value: V, limit: int = 1024) -> V:
    """memo[key] = value, emptying the memo first when it already holds `limit` entries: what it
    keeps is bounded, and what is still in use is filled in again at once."""
    if len(memo) >= limit:
        memo.clear()
    memo[key] = value
    return value
