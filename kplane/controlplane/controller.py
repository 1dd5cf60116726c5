"""The start/stop shape the control plane's in-process controllers share
(leader election starts and stops them as a unit)."""

from __future__ import annotations

import asyncio

from kplane.aio import cancel_and_wait


class Controller:
    """Runs `_run()` as a background task between start() and stop()."""

    def __init__(self) -> None:
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is None:
            return
        await cancel_and_wait([self._task])
        self._task = None

    async def _run(self) -> None:
        raise NotImplementedError
