"""Custom functions as stored (schemas only; running them is `voxd.tools`)."""

from __future__ import annotations

import builtins
import json
import time
from typing import Any

from voxd.store.base import SqlStore
from voxd.store.sql import Row


def _function(row: Row) -> dict[str, Any]:
    return {
        "name": row["name"],
        "description": row["description"],
        "parameters": json.loads(row["parameters"]),
        "http": json.loads(row["http"]),
        "created_by": row["created_by"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


class FunctionRepository:
    """Custom functions: name, description, JSON-schema parameters and an HTTP spec."""

    def __init__(self, db: SqlStore) -> None:
        self._db = db

    async def put(
        self,
        name: str,
        description: str,
        parameters: dict[str, Any],
        http: dict[str, Any],
        actor: str,
    ) -> dict[str, Any]:
        now = time.time()
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT INTO functions (org, name, description, parameters, http, created_by, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (org, name) DO UPDATE SET description = excluded.description, "
                "parameters = excluded.parameters, http = excluded.http, "
                "updated_at = excluded.updated_at",
                (self._db.org, name, description, json.dumps(parameters), json.dumps(http), actor, now, now),
            )
        got = await self.get(name)
        assert got is not None
        return got

    async def get(self, name: str) -> dict[str, Any] | None:
        row = await self._db.fetchone("SELECT * FROM functions WHERE org = ? AND name = ?",
                                       (self._db.org, name))
        return _function(row) if row else None

    async def list(self) -> list[dict[str, Any]]:
        return [_function(r) for r in await self._db.fetchall(
            "SELECT * FROM functions WHERE org = ? ORDER BY name", (self._db.org,)
        )]

    async def delete(self, name: str) -> bool:
        async with self._db.transaction() as conn:
            return await conn.execute("DELETE FROM functions WHERE org = ? AND name = ?", (self._db.org, name)) > 0

    async def log_execution(
        self,
        name: str,
        arguments: dict[str, Any],
        result: Any,
        error: str | None,
        duration_ms: float,
        actor: str,
    ) -> dict[str, Any]:
        at = time.time()
        async with self._db.transaction() as conn:
            row = await conn.fetchone(
                "INSERT INTO function_executions (name, arguments, result, error, duration_ms, "
                "actor, at, org) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (name, json.dumps(arguments, default=str),
                 None if error else json.dumps(result, default=str),
                 error, duration_ms, actor, at, self._db.org),
            )
            exec_id = row["id"]
        return {"id": exec_id, "name": name, "arguments": arguments,
                "result": None if error else result, "error": error,
                "duration_ms": duration_ms, "actor": actor, "at": at}

    async def executions(self, name: str, limit: int = 50) -> builtins.list[dict[str, Any]]:
        rows = await self._db.fetchall(
            "SELECT * FROM function_executions WHERE org = ? AND name = ? ORDER BY id DESC LIMIT ?",
            (self._db.org, name, limit),
        )
        return [
            {
                "id": r["id"], "name": r["name"], "arguments": json.loads(r["arguments"]),
                "result": json.loads(r["result"]) if r["result"] is not None else None,
                "error": r["error"], "duration_ms": r["duration_ms"], "actor": r["actor"],
                "at": r["at"],
            }
            for r in rows
        ]
