"""The function execution log: every run, in a call or from the API, in one table.

Rows written here share ``function_executions`` with ``FunctionRepository.log_execution``
(API test runs), so ``GET /api/v1/functions/{name}/executions`` shows both. In-call rows
carry ``call_id`` and ``turn_idx`` and the actor ``agent:<name>``. Arguments and results
arrive already redacted (``voxd.tools.execlog``).
"""

from __future__ import annotations

import json
import time
from typing import Any

from voxd.store import scrub
from voxd.store.base import SqlStore
from voxd.store.records import Execution
from voxd.store.sql import Row

__all__ = ["Execution", "ExecutionLogRepository"]


def _row(r: Row) -> dict[str, Any]:
    return {
        "id": r["id"], "name": r["name"], "arguments": json.loads(r["arguments"]),
        "result": json.loads(r["result"]) if r["result"] is not None else None,
        "error": r["error"], "duration_ms": r["duration_ms"], "actor": r["actor"], "at": r["at"],
        "call_id": r["call_id"], "turn_idx": r["turn_idx"],
    }


class ExecutionLogRepository:
    def __init__(self, db: SqlStore) -> None:
        self._db = db

    async def add(self, rows: list[Execution]) -> None:
        if not rows:
            return
        red = self._db.pii()
        rows = [scrub.execution(red, e) for e in rows]
        async with self._db.transaction() as conn:
            await conn.executemany(
                "INSERT INTO function_executions (name, arguments, result, error, duration_ms, actor, at, "
                "call_id, turn_idx, org) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (e.name, json.dumps(e.arguments, default=str),
                     None if e.error else json.dumps(e.result, default=str), e.error, e.duration_ms,
                     e.actor, e.at or time.time(), e.call_id, e.turn_idx, self._db.org)
                    for e in rows
                ],
            )

    async def for_call(self, call_id: str) -> list[dict[str, Any]]:
        rows = await self._db.fetchall(
            "SELECT * FROM function_executions WHERE org = ? AND call_id = ? ORDER BY id", (self._db.org, call_id)
        )
        return [_row(r) for r in rows]

    async def recent(self, name: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        limit = max(1, min(int(limit), 500))
        if name is None:
            rows = await self._db.fetchall("SELECT * FROM function_executions WHERE org = ? ORDER BY id DESC LIMIT ?",
                                         (self._db.org, limit))
        else:
            rows = await self._db.fetchall(
                "SELECT * FROM function_executions WHERE org = ? AND name = ? ORDER BY id DESC LIMIT ?",
                (self._db.org, name, limit)
            )
        return [_row(r) for r in rows]

    async def prune(self, before: float, limit: int | None = None) -> int:
        """Drop rows older than ``before`` (unix seconds), the oldest ``limit`` of them when
        given; returns how many."""
        async with self._db.transaction() as conn:
            if limit is None:
                return await conn.execute("DELETE FROM function_executions WHERE org = ? AND at < ?",
                                          (self._db.org, before))
            return await conn.execute(
                "DELETE FROM function_executions WHERE id IN (SELECT id FROM function_executions "
                "WHERE org = ? AND at < ? ORDER BY id LIMIT ?)", (self._db.org, before, max(1, int(limit))))
