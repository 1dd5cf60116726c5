"""asyncio helpers that every layer may use (this module imports nothing from kplane)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")


async def wait_for(aw: Awaitable[T], timeout: float | None) -> T:
    """`asyncio.wait_for`, minus Python 3.11's lost cancellation.

    On 3.11, wait_for() runs `aw` in a task of its own, and when that task finishes in the
    same loop iteration as the caller is cancelled it returns the result and drops the
    CancelledError (CPython gh-86296, fixed in 3.12). A `while True` loop around it then
    never ends and whoever awaits the cancelled task hangs — a controller's stop() on
    shutdown, for one. `asyncio.timeout()` awaits `aw` in the caller's own task, so a
    cancellation always arrives. Raises TimeoutError like wait_for."""
    if timeout is None:
        return await aw
    async with asyncio.timeout(timeout):
        return await aw


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any] | None]) -> None:
    """Cancel each task and wait until it has ended, whatever it raised (a stopping component's
    background work). Unlike `suppress(CancelledError)` around the awaits, a cancellation of
    the caller itself still propagates."""
    pending = [t for t in tasks if t is not None]
    for task in pending:
        task.cancel()
    for task in pending:
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        except Exception:  # noqa: BLE001 - it is stopping; its failure was its own to report
            pass
