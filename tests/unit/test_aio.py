"""kplane.aio: a wait_for whose cancellation always arrives, and cancel_and_wait."""

from __future__ import annotations

import asyncio

import pytest

from kplane.aio import cancel_and_wait, wait_for


async def _quick() -> bool:
    await asyncio.sleep(0)
    return True


async def _renew_forever() -> None:
    """The shape of a controller loop (leader election's renewals)."""
    while True:
        await wait_for(_quick(), 1.0)


async def test_wait_for_never_swallows_the_callers_cancellation() -> None:
    # On Python 3.11, asyncio.wait_for drops a cancellation that lands in the loop iteration
    # its inner task finishes in; this loop then outlives cancel() (with asyncio.wait_for in
    # its place: 43 of these 60 tasks kept running).
    for k in range(60):
        task = asyncio.ensure_future(_renew_forever())
        for _ in range(k % 7 + 1):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=2.0)
        assert task in done and task.cancelled()


async def test_wait_for_times_out_and_returns() -> None:
    assert await wait_for(_quick(), 1.0) is True
    assert await wait_for(_quick(), None) is True
    with pytest.raises(TimeoutError):
        await wait_for(asyncio.sleep(10), 0.01)


async def test_cancel_and_wait_ends_every_task_whatever_it_raised() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    async def ignores_nothing() -> None:
        await asyncio.sleep(10)

    failing = asyncio.ensure_future(fails())
    await asyncio.sleep(0)
    sleeping = asyncio.ensure_future(ignores_nothing())
    await cancel_and_wait([failing, None, sleeping])
    assert failing.done() and sleeping.cancelled()


async def test_cancel_and_wait_lets_the_callers_own_cancellation_through() -> None:
    async def slow_to_stop() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            await asyncio.sleep(0.2)  # cleanup that takes a while

    async def stopper(task: asyncio.Task) -> str:
        await cancel_and_wait([task])
        return "finished"

    worker = asyncio.ensure_future(slow_to_stop())
    await asyncio.sleep(0)
    outer = asyncio.ensure_future(stopper(worker))
    await asyncio.sleep(0.05)
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
