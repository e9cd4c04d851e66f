"""Refresh tokens of signed-in users: stored hashed, rotated on every use, in families.

Signing in starts a family; ``rotate`` trades a live token for a new one of the same
family and marks the old one rotated. Presenting a rotated (or revoked) token again is
reuse: someone holds a stolen copy, so the whole family is revoked and every token of it
stops working, the legitimate one too.
"""

from __future__ import annotations

import secrets
import time
import uuid

from voxd.store.base import SqlStore
from voxd.store.records import Refreshed, RefreshRefused
from voxd.store.users import token_hash

REFRESH_TTL_S = 30 * 86400.0




def _new_raw() -> str:
    return "vx_refresh_" + secrets.token_urlsafe(32)


class SessionRepository:
    def __init__(self, db: SqlStore) -> None:
        self._db = db

    async def start(self, user_id: str, org: str, ttl_s: float = REFRESH_TTL_S) -> Refreshed:
        raw, family, now = _new_raw(), "fam_" + uuid.uuid4().hex, time.time()
        async with self._db.transaction() as conn:
            await conn.execute("INSERT INTO refresh_tokens (hash, family, user_id, org, created_at, expires_at) "
                               "VALUES (?, ?, ?, ?, ?, ?)", (token_hash(raw), family, user_id, org, now, now + ttl_s))
        return Refreshed(raw, family, user_id, org)

    async def rotate(self, raw: str, ttl_s: float = REFRESH_TTL_S, now: float | None = None) -> Refreshed:
        now = time.time() if now is None else now
        new = _new_raw()
        async with self._db.transaction() as conn:
            await conn.lock("refresh_tokens:" + token_hash(raw))  # one rotation of a token, cluster-wide
            row = await conn.fetchone("SELECT * FROM refresh_tokens WHERE hash = ?", (token_hash(raw),))
            if row is None:
                raise RefreshRefused("unknown")
            if row["rotated_at"] is not None or row["revoked_at"] is not None:
                await conn.execute("UPDATE refresh_tokens SET revoked_at = ? WHERE family = ? AND revoked_at IS NULL",
                                   (now, row["family"]))
                reason = "reused" if row["revoked_at"] is None else "revoked"
            elif row["expires_at"] <= now:
                reason = "expired"
            else:
                reason = ""
                await conn.execute("UPDATE refresh_tokens SET rotated_at = ? WHERE hash = ?", (now, row["hash"]))
                await conn.execute(
                    "INSERT INTO refresh_tokens (hash, family, user_id, org, created_at, expires_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)", (token_hash(new), row["family"], row["user_id"], row["org"], now,
                                                  now + ttl_s))
        if reason:  # raised after the commit: a reuse must revoke the family for good
            raise RefreshRefused(reason)
        return Refreshed(new, row["family"], row["user_id"], row["org"])

    async def revoke_family_of(self, raw: str) -> str | None:
        """Sign out: revoke the family ``raw`` belongs to; its family id, or None if unknown."""
        row = await self._db.fetchone("SELECT family FROM refresh_tokens WHERE hash = ?", (token_hash(raw),))
        if row is None:
            return None
        async with self._db.transaction() as conn:
            await conn.execute("UPDATE refresh_tokens SET revoked_at = ? WHERE family = ? AND revoked_at IS NULL",
                               (time.time(), row["family"]))
        return str(row["family"])

    async def revoke_family(self, family: str) -> None:
        async with self._db.transaction() as conn:
            await conn.execute("UPDATE refresh_tokens SET revoked_at = ? WHERE family = ? AND revoked_at IS NULL",
                               (time.time(), family))

    async def family_of(self, raw: str, now: float | None = None) -> str | None:
        """The family of a live refresh token (not rotated, revoked or expired), else None."""
        now = time.time() if now is None else now
        row = await self._db.fetchone("SELECT family FROM refresh_tokens WHERE hash = ? AND rotated_at IS NULL "
                                      "AND revoked_at IS NULL AND expires_at > ?", (token_hash(raw), now))
        return None if row is None else str(row["family"])

    async def family_live(self, family: str) -> bool:
        row = await self._db.fetchone("SELECT COUNT(*) AS n FROM refresh_tokens WHERE family = ? AND revoked_at IS NULL",
                                      (family,))
        return bool(row and row["n"])
