"""A call's tracked work: every task the session starts (Silero confirmation, Smart Turn,
STT finalisation, replies, tools that outlive a reply) is counted here, so that closing
the call cancels all of it and the virtual-clock harness can wait until none is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Coroutine, Iterator
from typing import Any

from voxd.logs import call_id_var

log = logging.getLogger("voxd.call")


class CallWork:
    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self._tasks: set[asyncio.Future[Any]] = set()
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def busy(self) -> int:
        return self._busy

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        ctx = contextvars.copy_context()
        ctx.run(call_id_var.set, self.call_id)  # every log line from this call's work names it
        task = asyncio.get_running_loop().create_task(coro, context=ctx)
        self._track(task)
        return task

    def keep(self, fut: asyncio.Future[Any]) -> None:
        """Track work that outlives its reply (a non-interruptible tool)."""
        self._track(fut)

    def forget(self, task: asyncio.Future[Any] | None) -> None:
        """Stop tracking a task that is about to close the call itself (so close() does not
        cancel and await the task it runs in)."""
        if task is not None and task in self._tasks:
            self._tasks.discard(task)
            self._done_one()

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Inside this block the current task waits for the media clock, which is not work."""
        self._done_one()
        try:
            yield
        finally:
            self._busy += 1
            self._idle.clear()

    async def cancel_all(self) -> None:
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t

    async def wait_idle(self) -> None:
        while self._busy > 0:
            self._idle.clear()
            await self._idle.wait()

    def _track(self, fut: asyncio.Future[Any]) -> None:
        self._tasks.add(fut)
        self._busy += 1
        self._idle.clear()
        fut.add_done_callback(self._finished)

    def _finished(self, fut: asyncio.Future[Any]) -> None:
        if fut in self._tasks:
            self._tasks.discard(fut)
            self._done_one()
        if not fut.cancelled() and fut.exception() is not None:
            log.error("call task failed", exc_info=fut.exception())

    def _done_one(self) -> None:
        self._busy -= 1
        if self._busy <= 0:
            self._idle.set()
