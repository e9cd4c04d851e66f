"""One 20 ms media clock for every call in the process.

Each registered call gets `tick()` once per period. A single timer for all calls
costs far less than a timer per call, and keeps outbound audio on a steady
cadence: if the loop falls behind, missed ticks are skipped rather than bursted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger("voxd.media")

PERIOD_S = 0.02


class MediaClock:
    def __init__(self, period_s: float = PERIOD_S) -> None:
        self.period_s = period_s
        self._calls: dict[int, Callable[[], None]] = {}
        self._first: dict[int, Callable[[], None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._next_id = 0
        self.late_ticks = 0
        self.max_lag_s = 0.0

    def register(self, tick: Callable[[], None], first: Callable[[], None] | None = None) -> int:
        """`tick` runs once per period; `first` (optional) runs before any call's `tick`
        in the same period: transports put their packet sends there, so the slow part of
        other calls' ticks never delays them."""
        self._next_id += 1
        self._calls[self._next_id] = tick
        if first is not None:
            self._first[self._next_id] = first
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="media-clock")
        return self._next_id

    def unregister(self, handle: int) -> None:
        self._calls.pop(handle, None)
        self._first.pop(handle, None)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while self._calls:
            deadline += self.period_s
            for handle, first in list(self._first.items()):
                try:
                    first()
                except Exception:
                    log.exception("media send tick failed; dropping that call's clock")
                    self._calls.pop(handle, None)
                    self._first.pop(handle, None)
            for handle, tick in list(self._calls.items()):
                try:
                    tick()
                except Exception:
                    log.exception("media tick failed; dropping that call's clock")
                    self._calls.pop(handle, None)
                    self._first.pop(handle, None)
            delay = deadline - loop.time()
            if delay < 0:
                lag = -delay
                self.max_lag_s = max(self.max_lag_s, lag)
                if lag > self.period_s:  # skip whole missed periods instead of bursting
                    self.late_ticks += int(lag / self.period_s)
                    deadline = loop.time()
                delay = 0.0
            await asyncio.sleep(delay)
