"""voxd's own calendar: events booked by agents when no CalDAV server is configured."""

from __future__ import annotations

import time
from typing import Any

from voxd.store.base import SqlStore

_COLUMNS = ("uid", "agent", "call_id", "summary", "description", "location", "starts_at", "ends_at", "attendee")


class CalendarRepository:
    def __init__(self, db: SqlStore) -> None:
        self._db = db

    async def add(self, event: dict[str, Any]) -> None:
        """``event`` has the keys in ``_COLUMNS``; times are ISO 8601 with an offset."""
        async with self._db.transaction() as conn:
            await conn.execute(
                f"INSERT INTO calendar_events ({', '.join(_COLUMNS)}, created_at, org) "
                f"VALUES ({', '.join('?' for _ in _COLUMNS)}, ?, ?)",
                (*(event.get(c) for c in _COLUMNS), time.time(), self._db.org),
            )

    async def list(self, limit: int = 5000) -> list[dict[str, Any]]:
        rows = await self._db.fetchall(
            f"SELECT {', '.join(_COLUMNS)}, created_at FROM calendar_events WHERE org = ? ORDER BY starts_at LIMIT ?",
            (self._db.org, limit)
        )
        return [dict(r) for r in rows]
