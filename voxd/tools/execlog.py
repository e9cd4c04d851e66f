"""Feeds the execution log from call events, with secrets redacted.

``ExecutionLogger`` is a CallManager listener: ``manager.listeners.append(logger)``.
Listeners are synchronous, so rows are queued and written by one task the logger
owns; ``flush()`` waits for the queue, ``close()`` flushes and stops it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from voxd.core.redact import Redactor, default_redactor
from voxd.store.repos import Execution, ExecutionLogRepo

log = logging.getLogger(__name__)


class _ToolRecord(Protocol):
    name: str
    arguments: dict[str, Any]
    result: Any
    error: str | None
    started_at: float
    duration_ms: float


class ExecutionLogger:
    def __init__(self, repo: ExecutionLogRepo, redactor: Redactor | None = None,
                 repo_for: Callable[[str], ExecutionLogRepo] | None = None) -> None:
        self.repo = repo  # the default organisation's log
        self.repo_for = repo_for  # another organisation's (a call on its agent); None: all in ``repo``
        self.redact = redactor or default_redactor
        self._queue: asyncio.Queue[tuple[str, Execution] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        # called with each redacted row as it is queued (e.g. the function.executed webhook)
        self.subscribers: list[Callable[[Execution], None]] = []

    def __call__(self, event: Any) -> None:
        """A call event; only ``ToolExecuted`` (an event with ``.tool``) is logged."""
        tool: _ToolRecord | None = getattr(event, "tool", None)
        record = getattr(event, "record", None)
        if tool is None or record is None:
            return
        turns = getattr(record, "turns", None) or []
        # the session appends the bot turn when the reply starts, so a tool belongs to the last one
        turn_idx = getattr(turns[-1], "index", len(turns) - 1) if turns else None
        self.add(Execution(
            name=tool.name,
            arguments=self.redact(dict(tool.arguments)),
            result=self.redact(tool.result),
            error=self.redact.text(tool.error) if tool.error else None,
            duration_ms=float(tool.duration_ms),
            actor=f"agent:{getattr(record, 'agent', '')}",
            call_id=getattr(record, "id", None),
            turn_idx=turn_idx,
            at=tool.started_at or 0.0,
        ), org=getattr(record, "org", "default"))

    def add(self, row: Execution, org: str = "default") -> None:
        """Queue ``row`` for the log of ``org`` (the organisation of the call that ran it)."""
        self._queue.put_nowait((org, row))
        for fn in self.subscribers:
            try:
                fn(row)
            except Exception:
                log.exception("function execution subscriber failed")
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._writer(), name="function-log")

    async def _writer(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            by_org: dict[str, list[Execution]] = {}
            for item in batch:
                if item is not None:
                    by_org.setdefault(item[0], []).append(item[1])
            for org, rows in by_org.items():
                repo = self.repo if org == "default" or self.repo_for is None else self.repo_for(org)
                try:
                    await repo.add(rows)
                except Exception:
                    log.exception("could not write %d function executions", len(rows))
            for _ in batch:
                self._queue.task_done()
            if None in batch:
                return

    async def flush(self) -> None:
        await self._queue.join()

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._queue.put_nowait(None)
            await self._task
        self._task = None
