"""API keys and their usage.

A key looks like ``vx_live_<32 base62><6 base62 checksum>``: secret scanners can
recognise it and a typo is caught before any database work. Only a SHA-256 of the
key (an HMAC-SHA256 keyed with the server pepper when one is configured) is stored;
the raw key is returned once, by :meth:`ApiKeyRepository.create`.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import json
import os
import secrets
import time
import uuid
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiosqlite

from voxd.store.db import Database

KEY_PREFIX = "vx_live_"
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
SECRET_LEN = 32
CHECKSUM_LEN = 6
KEY_LEN = len(KEY_PREFIX) + SECRET_LEN + CHECKSUM_LEN
DISPLAY_LEN = len(KEY_PREFIX) + 8  # "vx_live_" and the first 8 secret characters
# Upper bound on how long a cached key is trusted, should two writes share an mtime tick.
CACHE_TTL_S = 2.0


def _base62(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(BASE62[r])
    return "".join(reversed(out))


def _checksum(secret: str) -> str:
    return _base62(zlib.crc32(secret.encode()), CHECKSUM_LEN)


def generate_key() -> str:
    secret = "".join(secrets.choice(BASE62) for _ in range(SECRET_LEN))
    return KEY_PREFIX + secret + _checksum(secret)


def well_formed(raw: str) -> bool:
    """Shape and checksum only; says nothing about whether the key exists."""
    if len(raw) != KEY_LEN or not raw.startswith(KEY_PREFIX):
        return False
    body = raw[len(KEY_PREFIX):]
    if any(c not in BASE62 for c in body):
        return False
    secret, check = body[:SECRET_LEN], body[SECRET_LEN:]
    return hmac.compare_digest(_checksum(secret), check)


def hash_key(raw: str, pepper: str = "") -> str:
    if pepper:
        return hmac.new(pepper.encode(), raw.encode(), hashlib.sha256).hexdigest()
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_by: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    last_used_at: float | None
    rate_limit_per_minute: int | None
    quota_per_day: int | None
    quota_per_month: int | None

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or time.time())

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "prefix": self.prefix, "scopes": list(self.scopes),
            "created_by": self.created_by, "created_at": self.created_at,
            "expires_at": self.expires_at, "revoked_at": self.revoked_at,
            "last_used_at": self.last_used_at,
            "rate_limit_per_minute": self.rate_limit_per_minute,
            "quota_per_day": self.quota_per_day, "quota_per_month": self.quota_per_month,
        }


_COLUMNS = (
    "id, name, prefix, scopes, created_by, created_at, expires_at, revoked_at, last_used_at, "
    "rate_limit_per_minute, quota_per_day, quota_per_month"
)


def _key(row: aiosqlite.Row) -> ApiKey:
    return ApiKey(
        id=row["id"], name=row["name"], prefix=row["prefix"],
        scopes=tuple(json.loads(row["scopes"])), created_by=row["created_by"],
        created_at=row["created_at"], expires_at=row["expires_at"],
        revoked_at=row["revoked_at"], last_used_at=row["last_used_at"],
        rate_limit_per_minute=row["rate_limit_per_minute"],
        quota_per_day=row["quota_per_day"], quota_per_month=row["quota_per_month"],
    )


def utc_day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


class ApiKeyRepository:
    """Keys by hash. ``lookup`` keeps found keys in memory while the database files are
    unchanged (size and mtime of the file and its WAL) and for at most ``CACHE_TTL_S``, so
    a request usually costs no query, yet a revocation by any process (the CLI too) is
    seen by the next request."""

    def __init__(self, db: Database, pepper: str = "") -> None:
        self._db = db
        self._pepper = pepper
        self._cache: dict[str, tuple[ApiKey, float]] = {}
        self._cache_stamp: tuple[int, ...] | None = None

    def _stamp(self) -> tuple[int, ...] | None:
        path = str(self._db.path)
        if path == ":memory:":
            return None
        out: list[int] = []
        for p in (path, path + "-wal"):
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
            quota_per_month=quota_per_month,
        )
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT INTO api_keys (id, name, prefix, hash, scopes, created_by, created_at, "
                "expires_at, rate_limit_per_minute, quota_per_day, quota_per_month) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key.id, key.name, key.prefix, hash_key(raw, self._pepper),
                    json.dumps(list(key.scopes)), key.created_by, key.created_at,
                    key.expires_at, key.rate_limit_per_minute, key.quota_per_day,
                    key.quota_per_month,
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
        row = await self._db.fetchone(f"SELECT {_COLUMNS} FROM api_keys WHERE id = ?", (key_id,))
        return _key(row) if row else None

    async def list(self) -> list[ApiKey]:
        rows = await self._db.fetchall(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, id")
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
                await conn.execute(f"UPDATE api_keys SET {sets} WHERE id = ?", (*values, key_id))
            self._forget()
        return await self.get(key_id)

    async def revoke(self, key_id: str) -> ApiKey | None:
        async with self._db.transaction() as conn:
            await conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (time.time(), key_id),
            )
        self._forget()
        return await self.get(key_id)

    async def record_use(self, key_id: str, endpoint: str, now: float | None = None) -> None:
        ts = time.time() if now is None else now
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT INTO key_usage (key_id, day, endpoint, count) VALUES (?, ?, ?, 1) "
                "ON CONFLICT (key_id, day, endpoint) DO UPDATE SET count = count + 1",
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
                "ON CONFLICT (key_id, day, endpoint) DO UPDATE SET count = count + excluded.count",
                [(k, d, e, n) for (k, d, e), n in counts.items()],
            )
            await conn.executemany(
                "UPDATE api_keys SET last_used_at = MAX(COALESCE(last_used_at, 0), ?) "
                "WHERE id = ?",
                [(ts, k) for k, ts in last_used.items()],
            )

    async def usage_totals(self, key_id: str, now: float | None = None) -> tuple[int, int]:
        """Requests so far today and this month (UTC)."""
        day = utc_day(time.time() if now is None else now)
        row = await self._db.fetchone(
            "SELECT COALESCE(SUM(CASE WHEN day = ? THEN count END), 0) AS d, "
            "COALESCE(SUM(count), 0) AS m FROM key_usage "
            "WHERE key_id = ? AND day >= ? AND day <= ?",
            (day, key_id, day[:8] + "01", day),
        )
        return (int(row["d"]), int(row["m"])) if row else (0, 0)

    async def usage(
        self, key_id: str, since_day: str | None = None, until_day: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        sql = "SELECT day, endpoint, count FROM key_usage WHERE key_id = ?"
        params: list[Any] = [key_id]
        if since_day:
            sql += " AND day >= ?"
            params.append(since_day)
        if until_day:
            sql += " AND day <= ?"
            params.append(until_day)
        rows = await self._db.fetchall(sql + " ORDER BY day, endpoint", params)
        return [{"day": r["day"], "endpoint": r["endpoint"], "count": r["count"]} for r in rows]
