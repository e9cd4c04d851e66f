"""The agent change log: who changed which agent, to which version, when."""

from __future__ import annotations

import time
from typing import Any

from voxd.store.base import SqlStore


class AgentChangeRepository:
    """Who changed which agent, to which version, when."""

    def __init__(self, db: SqlStore) -> None:
        self._db = db

    async def record(self, agent: str, version: str, action: str, actor: str) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT INTO agent_changes (agent, version, action, actor, at, org) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (agent, version, action, actor, time.time(), self._db.org),
            )

    async def list(self, agent: str, limit: int = 50) -> list[dict[str, Any]]:
        rows = await self._db.fetchall(
            "SELECT agent, version, action, actor, at FROM agent_changes WHERE org = ? AND agent = ? "
            "ORDER BY id DESC LIMIT ?",
            (self._db.org, agent, limit),
        )
        return [dict(r) for r in rows]
