"""Organisations: the tenants every other row belongs to (``id`` is the slug, ``default``
holds everything that existed before migration 8)."""

from __future__ import annotations

import re
import sqlite3
import time
from typing import Any

from voxd.store.db import Database

ORG_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class OrgExists(ValueError):
    """An organisation of that name exists already."""


class OrgRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, org_id: str) -> dict[str, Any]:
        if not ORG_ID_RE.match(org_id):
            raise ValueError("an organisation name is 1-63 lowercase letters, digits and '-'")
        now = time.time()
        try:
            async with self._db.transaction() as conn:
                await conn.execute("INSERT INTO orgs (id, created_at) VALUES (?, ?)", (org_id, now))
        except sqlite3.IntegrityError as e:
            raise OrgExists(f"organisation {org_id!r} exists already") from e
        return {"id": org_id, "created_at": now}

    async def get(self, org_id: str) -> dict[str, Any] | None:
        row = await self._db.fetchone("SELECT id, created_at FROM orgs WHERE id = ?", (org_id,))
        return dict(row) if row else None

    async def list(self) -> list[dict[str, Any]]:
        return [dict(r) for r in await self._db.fetchall("SELECT id, created_at FROM orgs ORDER BY id")]
