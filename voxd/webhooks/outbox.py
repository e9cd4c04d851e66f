"""The durable outbox: events become SQLite rows before anything is sent.

Call and agent listeners are synchronous, so ``publish`` queues messages in memory and a
writer task commits them in batches (one transaction per batch, each message fanned out to
its deliveries in that same transaction), then wakes the delivery worker. Code that owns a
write transaction can instead call ``add_in(conn, ...)`` so the event commits with the state
change that caused it, and ``notify()`` after the commit.

A message belongs to an organisation (``org``; the store's own when not given) and fans
out to that organisation's endpoints only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from voxd.store.repos import Message, Transaction, WebhookRepo

log = logging.getLogger("voxd.webhooks")

BATCH = 500


class Outbox:
    def __init__(self, store: WebhookRepo, on_written: Callable[[], None] | None = None,
                 store_for: Callable[[str], WebhookRepo] | None = None) -> None:
        self.store = store
        self.on_written = on_written
        self._store_for = store_for  # another organisation's endpoints and messages
        self._queue: list[tuple[str | None, Message]] = []
        self._more = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.latencies_ms: list[float] = []  # publish -> committed, for the benchmark
        self.track_latency = False

    # -- writing
    def repo(self, org: str | None) -> WebhookRepo:
        """The store of ``org``'s messages (None: this outbox's own)."""
        if org is None or self._store_for is None:
            return self.store
        return self._store_for(org)

    def publish(self, messages: list[Message], org: str | None = None) -> None:
        """From synchronous code: queue now, committed by the writer task shortly."""
        if not messages:
            return
        self._queue.extend((org, m) for m in messages)
        self._idle.clear()
        self._more.set()

    async def add(self, messages: list[Message]) -> int:
        """Commit now (own transaction); returns the deliveries created."""
        n = await self.store.add_messages(messages)
        self._committed(messages)
        return n

    async def add_in(self, conn: Transaction, messages: list[Message], org: str | None = None) -> int:
        """Inside the caller's transaction; call ``notify()`` once it has committed."""
        return await self.repo(org).add_messages_in(conn, messages)

    def notify(self) -> None:
        if self.on_written is not None:
            self.on_written()

    def committed(self, messages: list[Message]) -> None:
        """Messages added with ``add_in`` were committed: count them and wake the sender."""
        self._committed(messages)

    def _committed(self, messages: list[Message]) -> None:
        self.written += len(messages)
        if self.track_latency:
            now = time.time()
            self.latencies_ms += [(now - m.created_at) * 1000 for m in messages]
        self.notify()

    # -- the writer task
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="webhooks-outbox")

    async def flush(self) -> None:
        """Wait until everything published so far is committed."""
        if self._task is None:
            while self._queue:
                await self._write_batch()
            return
        await self._idle.wait()

    async def stop(self) -> None:
        if self._task is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.flush(), 10.0)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._queue:  # what the task did not get to
            if not await self._write_batch():
                log.error("webhooks: %d events could not be written to the outbox", len(self._queue))
                break

    async def _run(self) -> None:
        while True:
            await self._more.wait()
            self._more.clear()
            while self._queue:
                if not await self._write_batch():
                    await asyncio.sleep(0.5)
            self._idle.set()

    async def _write_batch(self) -> bool:
        org = self._queue[0][0]  # one organisation per batch, in order
        batch: list[Message] = []
        for owner, m in self._queue[:BATCH]:
            if owner != org:
                break
            batch.append(m)
        try:
            await self.repo(org).add_messages(batch)
        except Exception:
            log.exception("webhooks: could not write %d events to the outbox; retrying", len(batch))
            return False
        del self._queue[: len(batch)]
        self._committed(batch)
        return True
