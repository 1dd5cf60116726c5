"""The start/stop shape the control plane's in-process controllers share
(leader election starts and stops them as a unit)."""

from __future__ import annotations

import asyncio
import contextlib


class Controller:
    """Runs `_run()` as a background task between start() and stop()."""

    def __init__(self) -> None:
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        self._task = None

    async def _run(self) -> None:
        raise NotImplementedError
