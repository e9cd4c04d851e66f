"""Organisations: the tenants every other row belongs to (``id`` is the slug, ``default``
holds everything that existed before migration 8)."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from voxd.store.base import SqlStore

ORG_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
# what an organisation may use; a limit left out (or None) is no limit
ORG_LIMITS = ("api_requests_per_minute", "calls_concurrent", "calls_per_day")
MAX_LIMIT = 10**9
# how long an organisation keeps each kind of data, in days; one left out is kept for ever
RETENTION = ("transcripts_days", "recordings_days", "function_logs_days", "audit_days")
MAX_RETENTION_DAYS = 36_500


class OrgExists(ValueError):
    """An organisation of that name exists already."""


class OrgRepository:
    def __init__(self, db: SqlStore) -> None:
        self._db = db

    async def create(self, org_id: str) -> dict[str, Any]:
        if not ORG_ID_RE.match(org_id):
            raise ValueError("an organisation name is 1-63 lowercase letters, digits and '-'")
        now = time.time()
        try:
            async with self._db.transaction() as conn:
                await conn.execute("INSERT INTO orgs (id, created_at) VALUES (?, ?)", (org_id, now))
        except self._db.integrity_errors as e:
            raise OrgExists(f"organisation {org_id!r} exists already") from e
        return {"id": org_id, "created_at": now, "limits": {}}

    async def get(self, org_id: str) -> dict[str, Any] | None:
        row = await self._db.fetchone("SELECT id, created_at, limits FROM orgs WHERE id = ?", (org_id,))
        return _org(row) if row else None

    async def list(self) -> list[dict[str, Any]]:
        return [_org(r) for r in await self._db.fetchall("SELECT id, created_at, limits FROM orgs ORDER BY id")]

    async def set_limits(self, org_id: str, limits: dict[str, int | None]) -> dict[str, Any]:
        """Merge ``limits`` into the organisation's (None removes one); the organisation after.
        ValueError for an unknown limit or a value out of range; LookupError for no such org."""
        for name, value in limits.items():
            if name not in ORG_LIMITS:
                raise ValueError(f"unknown limit {name!r}; known: {', '.join(ORG_LIMITS)}")
            low = 1 if name == "api_requests_per_minute" else 0  # no calls at all is a limit; no API is not
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not low <= value <= MAX_LIMIT):
                raise ValueError(f"{name} must be a whole number from {low} to {MAX_LIMIT}")
        async with self._db.transaction() as conn:
            row = await conn.fetchone("SELECT limits FROM orgs WHERE id = ?", (org_id,))
            if row is None:
                raise LookupError(f"no organisation {org_id!r}")
            merged = {**json.loads(row["limits"]), **limits}
            merged = {k: v for k, v in merged.items() if v is not None}
            await conn.execute("UPDATE orgs SET limits = ? WHERE id = ?", (json.dumps(merged, sort_keys=True), org_id))
        got = await self.get(org_id)
        assert got is not None
        return got

    async def retention(self, org_id: str) -> dict[str, int] | None:
        """The organisation's retention (days per kind; none given: keep), or None for no such org."""
        row = await self._db.fetchone("SELECT retention FROM orgs WHERE id = ?", (org_id,))
        return None if row is None else dict(json.loads(row["retention"] or "{}"))

    async def all_retention(self) -> dict[str, dict[str, int]]:
        """Every organisation that purges something: its retention."""
        rows = await self._db.fetchall("SELECT id, retention FROM orgs WHERE retention <> '{}' ORDER BY id")
        return {r["id"]: json.loads(r["retention"]) for r in rows if json.loads(r["retention"])}

    async def set_retention(self, org_id: str, days: dict[str, int | None]) -> dict[str, int]:
        """Merge ``days`` into the organisation's retention (None: keep that kind for ever);
        the retention after. ValueError for an unknown kind or a value out of range."""
        for name, value in days.items():
            if name not in RETENTION:
                raise ValueError(f"unknown retention {name!r}; known: {', '.join(RETENTION)}")
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not 1 <= value <= MAX_RETENTION_DAYS):
                raise ValueError(f"{name} must be a whole number of days from 1 to {MAX_RETENTION_DAYS}")
        async with self._db.transaction() as conn:
            row = await conn.fetchone("SELECT retention FROM orgs WHERE id = ?", (org_id,))
            if row is None:
                raise LookupError(f"no organisation {org_id!r}")
            merged = {k: v for k, v in {**json.loads(row["retention"]), **days}.items() if v is not None}
            await conn.execute("UPDATE orgs SET retention = ? WHERE id = ?",
                               (json.dumps(merged, sort_keys=True), org_id))
        return merged


def _org(row: Any) -> dict[str, Any]:
    return {"id": row["id"], "created_at": row["created_at"], "limits": json.loads(row["limits"] or "{}")}
