"""The PostgreSQL store: the same repositories as SQLite's over a psycopg 3 connection pool.

Several voxd nodes share one PostgreSQL database (``store: {url: postgresql://...}``):
every write is a transaction on a pooled connection, reads run in autocommit, and what
must be serial across nodes takes an advisory lock for its transaction (``Txn.lock``:
migrations, the audit chain, a token's rotation). Webhook deliveries are claimed with
``FOR UPDATE SKIP LOCKED`` (``WebhookStore.claim``).

Repositories write SQLite-and-PostgreSQL SQL with ``?`` placeholders
(``voxd.store.sql``); rows come back as :class:`voxd.store.sql.PgRow`, which reads like
``sqlite3.Row``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg_pool import AsyncConnectionPool

from voxd.store.base import SqlStore
from voxd.store.migrations import MIGRATIONS, Migration
from voxd.store.sql import Params, PgRow, pg_ddl, pg_params, pg_row

__all__ = ["PgDatabase", "PgTxn", "redact_url"]

log = logging.getLogger(__name__)


def redact_url(url: str) -> str:
    """``url`` without its password, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _rows(cursor: Any) -> Callable[[Sequence[Any]], PgRow]:
    names = {c.name: i for i, c in enumerate(cursor.description or ())}
    return lambda values: pg_row(names, values)


class PgTxn:
    """A write transaction on one pooled connection (``voxd.store.sql.Txn``)."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        cur = await self.conn.execute(pg_params(sql), tuple(params))
        return max(cur.rowcount, 0)

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        batch = list(rows)
        if batch:
            async with self.conn.cursor() as cur:
                await cur.executemany(pg_params(sql), batch)

    async def many(self, steps: Sequence[tuple[str, Sequence[Params]]]) -> None:
        for sql, rows in steps:
            await self.executemany(sql, rows)

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> PgRow | None:
        cur = await self.conn.execute(pg_params(sql), tuple(params))
        row: PgRow | None = await cur.fetchone()
        return row

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[PgRow]:
        cur = await self.conn.execute(pg_params(sql), tuple(params))
        rows: list[PgRow] = await cur.fetchall()
        return rows

    async def lock(self, key: str) -> None:
        await self.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))


class PgDatabase(SqlStore):
    dialect = "postgresql"
    integrity_errors = (psycopg.IntegrityError,)
    skip_locked = " FOR UPDATE SKIP LOCKED"
    shared = True

    def __init__(self, pool: AsyncConnectionPool[Any], url: str, path: Path) -> None:
        self._pool = pool
        self.url = url
        self.path = path

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        state_dir: str | Path = ".",
        migrations: Sequence[Migration] = MIGRATIONS,
        target_version: int | None = None,
        min_size: int = 1,
        max_size: int = 8,
        timeout_s: float = 10.0,
    ) -> PgDatabase:
        """Connect (``postgresql://user:password@host:port/db``) and migrate. ``state_dir``
        holds what stays node-local (the webhook secrets' key file: give every node the same)."""
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            url, min_size=min_size, max_size=max_size, open=False, timeout=timeout_s,
            kwargs={"autocommit": True, "row_factory": _rows}, name="voxd-store")
        try:
            await pool.open(wait=True, timeout=timeout_s)
        except Exception as e:
            await pool.close()
            raise ConnectionError(f"store: cannot reach PostgreSQL at {redact_url(url)}: {e}") from None
        db = cls(pool, url, Path(state_dir) / "voxd.pg")
        try:
            await db._migrate(migrations, target_version)
        except BaseException:
            await pool.close()
            raise
        log.info("store: PostgreSQL %s at schema version %d", redact_url(url), await db.schema_version())
        return db

    async def close(self) -> None:
        await self._pool.close()

    def ddl(self, m: Migration) -> Sequence[str]:
        return m.pg if m.pg is not None else tuple(pg_ddl(s) for s in m.statements)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PgTxn]:
        async with self._pool.connection() as conn, conn.transaction():
            yield PgTxn(conn)

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> PgRow | None:
        async with self._pool.connection() as conn:
            return await PgTxn(conn).fetchone(sql, params)

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[PgRow]:
        async with self._pool.connection() as conn:
            return await PgTxn(conn).fetchall(sql, params)
