"""API keys and their usage.

A key looks like ``vx_live_<32 base62><6 base62 checksum>``: secret scanners can
recognise it and a typo is caught before any database work. Only a SHA-256 of the
key (an HMAC-SHA256 keyed with the server pepper when one is configured) is stored;
the raw key is returned once, by :meth:`ApiKeyRepository.create`.

A key belongs to the organisation of the repository that created it; every read and
write by id is scoped to that organisation. Only ``lookup`` (authentication, by hash)
spans organisations: the key it finds carries its ``org``.
"""

from __future__ import annotations

import builtins
import hmac
import json
import os
import time
import uuid
from typing import Any

from voxd.store.base import SqlStore
from voxd.store.records import (
    BASE62,
    CHECKSUM_LEN,
    DISPLAY_LEN,
    KEY_LEN,
    KEY_PREFIX,
    SECRET_LEN,
    ApiKey,
    generate_key,
    hash_key,
    utc_day,
    well_formed,
)
from voxd.store.sql import Row

__all__ = ["BASE62", "CHECKSUM_LEN", "DISPLAY_LEN", "KEY_LEN", "KEY_PREFIX", "SECRET_LEN", "ApiKey",
           "ApiKeyRepository", "generate_key", "hash_key", "utc_day", "well_formed"]

# Upper bound on how long a cached key is trusted, should two writes share an mtime tick.
CACHE_TTL_S = 2.0


_COLUMNS = (
    "id, name, prefix, scopes, created_by, created_at, expires_at, revoked_at, last_used_at, "
    "rate_limit_per_minute, quota_per_day, quota_per_month, org"
)


def _key(row: Row) -> ApiKey:
    return ApiKey(
        id=row["id"], name=row["name"], prefix=row["prefix"],
        scopes=tuple(json.loads(row["scopes"])), created_by=row["created_by"],
        created_at=row["created_at"], expires_at=row["expires_at"],
        revoked_at=row["revoked_at"], last_used_at=row["last_used_at"],
        rate_limit_per_minute=row["rate_limit_per_minute"],
        quota_per_day=row["quota_per_day"], quota_per_month=row["quota_per_month"], org=row["org"],
    )


class ApiKeyRepository:
    """Keys by hash. ``lookup`` keeps found keys in memory while the database files are
    unchanged (size and mtime of the file and its WAL) and for at most ``CACHE_TTL_S``, so
    a request usually costs no query, yet a revocation by any process (the CLI too) is
    seen by the next request."""

    def __init__(self, db: SqlStore, pepper: str = "") -> None:
        self._db = db
        self._pepper = pepper
        self._cache: dict[str, tuple[ApiKey, float]] = {}
        self._cache_stamp: tuple[int, ...] | None = None

    def _stamp(self) -> tuple[int, ...] | None:
        files = self._db.files()
        if not files:  # a server database (or :memory:): every lookup asks it
            return None
        out: list[int] = []
        for p in files:
            try:
                st = os.stat(p)
            except FileNotFoundError:
                out += [-1, -1]
                continue
            out += [st.st_size, st.st_mtime_ns]
        return tuple(out)

    def _forget(self) -> None:
        self._cache.clear()
        self._cache_stamp = None

    async def create(
        self,
        name: str,
        scopes: list[str] | tuple[str, ...],
        *,
        created_by: str,
        expires_at: float | None = None,
        rate_limit_per_minute: int | None = None,
        quota_per_day: int | None = None,
        quota_per_month: int | None = None,
    ) -> tuple[str, ApiKey]:
        """Returns the raw key (show it once, never store or log it) and the stored record."""
        raw = generate_key()
        key = ApiKey(
            id="key_" + uuid.uuid4().hex[:16], name=name, prefix=raw[:DISPLAY_LEN],
            scopes=tuple(sorted(set(scopes))), created_by=created_by, created_at=time.time(),
            expires_at=expires_at, revoked_at=None, last_used_at=None,
            rate_limit_per_minute=rate_limit_per_minute, quota_per_day=quota_per_day,
            quota_per_month=quota_per_month, org=self._db.org,
        )
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT INTO api_keys (id, name, prefix, hash, scopes, created_by, created_at, "
                "expires_at, rate_limit_per_minute, quota_per_day, quota_per_month, org) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key.id, key.name, key.prefix, hash_key(raw, self._pepper),
                    json.dumps(list(key.scopes)), key.created_by, key.created_at,
                    key.expires_at, key.rate_limit_per_minute, key.quota_per_day,
                    key.quota_per_month, key.org,
                ),
            )
        return raw, key

    async def lookup(self, raw: str) -> ApiKey | None:
        """The key whose hash matches ``raw`` (expired or revoked ones included), or None."""
        if not well_formed(raw):
            return None
        digest = hash_key(raw, self._pepper)
        stamp = self._stamp()
        if stamp is None or stamp != self._cache_stamp:
            self._cache.clear()
            self._cache_stamp = stamp
        cached = self._cache.get(digest)
        if cached is not None and time.monotonic() - cached[1] < CACHE_TTL_S:
            return cached[0]
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS}, hash FROM api_keys WHERE hash = ?", (digest,)
        )
        if row is None or not hmac.compare_digest(row["hash"], digest):
            return None
        key = _key(row)
        if stamp is not None and stamp == self._stamp():
            self._cache[digest] = (key, time.monotonic())
        return key

    async def get(self, key_id: str) -> ApiKey | None:
        row = await self._db.fetchone(f"SELECT {_COLUMNS} FROM api_keys WHERE id = ? AND org = ?",
                                       (key_id, self._db.org))
        return _key(row) if row else None

    async def list(self) -> list[ApiKey]:
        rows = await self._db.fetchall(f"SELECT {_COLUMNS} FROM api_keys WHERE org = ? ORDER BY created_at, id",
                                      (self._db.org,))
        return [_key(r) for r in rows]

    async def update(self, key_id: str, **fields: Any) -> ApiKey | None:
        allowed = {"name", "scopes", "expires_at", "rate_limit_per_minute", "quota_per_day",
                   "quota_per_month"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        if fields:
            values = [
                json.dumps(sorted(set(v))) if k == "scopes" else v for k, v in fields.items()
            ]
            sets = ", ".join(f"{k} = ?" for k in fields)
            async with self._db.transaction() as conn:
                await conn.execute(f"UPDATE api_keys SET {sets} WHERE id = ? AND org = ?",
                                   (*values, key_id, self._db.org))
            self._forget()
        return await self.get(key_id)

    async def revoke(self, key_id: str) -> ApiKey | None:
        async with self._db.transaction() as conn:
            await conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND org = ? AND revoked_at IS NULL",
                (time.time(), key_id, self._db.org),
            )
        self._forget()
        return await self.get(key_id)

    async def record_use(self, key_id: str, endpoint: str, now: float | None = None) -> None:
        ts = time.time() if now is None else now
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT INTO key_usage (key_id, day, endpoint, count) VALUES (?, ?, ?, 1) "
                "ON CONFLICT (key_id, day, endpoint) DO UPDATE SET count = key_usage.count + 1",
                (key_id, utc_day(ts), endpoint),
            )
            await conn.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (ts, key_id))

    async def record_uses(
        self, counts: dict[tuple[str, str, str], int], last_used: dict[str, float]
    ) -> None:
        """Add many ``(key_id, day, endpoint) -> count`` at once, in one transaction."""
        if not counts and not last_used:
            return
        async with self._db.transaction() as conn:
            await conn.executemany(
                "INSERT INTO key_usage (key_id, day, endpoint, count) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (key_id, day, endpoint) DO UPDATE SET count = key_usage.count + excluded.count",
                [(k, d, e, n) for (k, d, e), n in counts.items()],
            )
            await conn.executemany(
                "UPDATE api_keys SET last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < ? "
                "THEN ? ELSE last_used_at END WHERE id = ?",
                [(ts, ts, k) for k, ts in last_used.items()],
            )

    async def usage_totals(self, key_id: str, now: float | None = None) -> tuple[int, int]:
        """Requests so far today and this month (UTC)."""
        day = utc_day(time.time() if now is None else now)
        row = await self._db.fetchone(
            "SELECT COALESCE(SUM(CASE WHEN day = ? THEN count END), 0) AS d, "
            "COALESCE(SUM(count), 0) AS m FROM key_usage "
            "WHERE key_id = ? AND day >= ? AND day <= ? "
            "AND key_id IN (SELECT id FROM api_keys WHERE org = ?)",
            (day, key_id, day[:8] + "01", day, self._db.org),
        )
        return (int(row["d"]), int(row["m"])) if row else (0, 0)

    async def org_usage_totals(self, now: float | None = None) -> tuple[int, int]:
        day = utc_day(time.time() if now is None else now)
        row = await self._db.fetchone(
            "SELECT COALESCE(SUM(CASE WHEN day = ? THEN count END), 0) AS d, "
            "COALESCE(SUM(count), 0) AS m FROM key_usage "
            "WHERE day >= ? AND day <= ? AND key_id IN (SELECT id FROM api_keys WHERE org = ?)",
            (day, day[:8] + "01", day, self._db.org),
        )
        return (int(row["d"]), int(row["m"])) if row else (0, 0)

    async def usage(
        self, key_id: str, since_day: str | None = None, until_day: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        sql = ("SELECT day, endpoint, count FROM key_usage WHERE key_id = ? "
               "AND key_id IN (SELECT id FROM api_keys WHERE org = ?)")
        params: list[Any] = [key_id, self._db.org]
        if since_day:
            sql += " AND day >= ?"
            params.append(since_day)
        if until_day:
            sql += " AND day <= ?"
            params.append(until_day)
        rows = await self._db.fetchall(sql + " ORDER BY day, endpoint", params)
        return [{"day": r["day"], "endpoint": r["endpoint"], "count": r["count"]} for r in rows]
