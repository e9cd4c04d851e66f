"""The SQLite database: one aiosqlite connection, WAL, migrations at open.

A ``Database`` is bound to one organisation (``org``; ``default`` unless opened through
:meth:`Database.for_org`): every repository it hands out reads and writes that
organisation's rows only, the predicate being in the repository's SQL, so a handler cannot
forget it. ``for_org`` shares the connection and the write lock.

Repositories hold the SQL; this class only owns the connection, serialises write
transactions, reports the schema version and hands out its repositories: it is the
SQLite :class:`voxd.store.repos.Store`; the repositories and the migration runner are
shared with the PostgreSQL backend (``voxd.store.base``, ``voxd.store.pg``).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from voxd.store.base import DEFAULT_ORG, MigrationError, SqlStore
from voxd.store.migrations import MIGRATIONS, Migration
from voxd.store.sql import Params

__all__ = ["BUSY_TIMEOUT_MS", "DEFAULT_ORG", "Database", "MigrationError", "SqliteTxn", "on_thread"]

BUSY_TIMEOUT_MS = 5000

T = TypeVar("T")


class Database(SqlStore):
    dialect = "sqlite"
    integrity_errors = (sqlite3.IntegrityError,)

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._write_lock = asyncio.Lock()
        self.org = DEFAULT_ORG

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        migrations: Sequence[Migration] = MIGRATIONS,
        target_version: int | None = None,
    ) -> Database:
        """Open (creating if needed) and migrate up to ``target_version`` (default: latest)."""
        p = Path(path)
        if str(p) != ":memory:":
            p.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(str(p), isolation_level=None)
        conn.row_factory = aiosqlite.Row
        db = cls(conn, p)
        try:
            await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA synchronous = NORMAL")
            await conn.execute("PRAGMA foreign_keys = ON")
            await db._migrate(migrations, target_version)
        except BaseException:
            await conn.close()
            raise
        return db

    async def close(self) -> None:
        await self._conn.close()

    def files(self) -> tuple[Path, ...]:
        if str(self.path) == ":memory:":
            return ()
        return (self.path, Path(str(self.path) + "-wal"))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteTxn]:
        """A write transaction (BEGIN IMMEDIATE); one at a time on this connection."""
        async with self._write_lock:
            try:
                await self._through("BEGIN IMMEDIATE")
                yield SqliteTxn(self._conn)
            except BaseException:
                if self._conn.in_transaction:
                    await self._through("ROLLBACK")
                raise
            await self._through("COMMIT")

    async def _through(self, sql: str) -> None:
        """Run ``sql`` to its end even when the awaiting task is cancelled meanwhile (the
        cancellation is raised after it): a BEGIN or COMMIT whose outcome is unknown would
        leave the connection inside a transaction for the next writer to trip over."""
        step = asyncio.ensure_future(self._conn.execute(sql))
        try:
            await asyncio.shield(step)
        except asyncio.CancelledError:
            await step
            raise

    # Reads run start to finish in one hop to the connection's thread. A cursor stepped
    # across awaits (execute, then fetch) lets another task's write run on this same
    # connection in between, and SQLite leaves the rest of that SELECT undefined: seen
    # here as a GROUP BY returning a NULL group and rows counted twice.
    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Row | None:
        return await SqliteTxn(self._conn).fetchone(sql, params)

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        return await SqliteTxn(self._conn).fetchall(sql, params)


class SqliteTxn:
    """A write transaction on the SQLite connection (``voxd.store.sql.Txn``)."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        args = tuple(params)
        return await on_thread(self.conn, lambda raw: raw.execute(sql, args).rowcount)

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        await self.many([(sql, list(rows))])

    async def many(self, steps: Sequence[tuple[str, Sequence[Params]]]) -> None:
        def run(raw: sqlite3.Connection) -> None:
            for sql, rows in steps:
                if rows:
                    raw.executemany(sql, rows)

        await on_thread(self.conn, run)

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Row | None:
        args = tuple(params)
        rows = await on_thread(self.conn, lambda raw: _select(raw, sql, args, 1))
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        args = tuple(params)
        return await on_thread(self.conn, lambda raw: _select(raw, sql, args, None))

    async def lock(self, key: str) -> None:
        """Nothing to do: BEGIN IMMEDIATE made this the only writer."""


async def on_thread(conn: aiosqlite.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run `fn` on the connection's own thread in one hop: several statements for the
    price of one loop round trip, and nothing from another task in between (aiosqlite
    has no public call for it). Inside a transaction, the caller holds it."""
    raw: sqlite3.Connection = conn._conn
    result: T = await conn._execute(fn, raw)  # type: ignore[no-untyped-call]
    return result


def _select(raw: sqlite3.Connection, sql: str, args: tuple[Any, ...], limit: int | None) -> list[aiosqlite.Row]:
    cur = raw.execute(sql, args)
    try:
        return list(cur.fetchmany(limit) if limit else cur.fetchall())
    finally:
        cur.close()
