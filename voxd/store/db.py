"""The SQLite database: one aiosqlite connection, WAL, migrations at open.

A ``Database`` is bound to one organisation (``org``; ``default`` unless opened through
:meth:`Database.for_org`): every repository it hands out reads and writes that
organisation's rows only, the predicate being in the repository's SQL, so a handler cannot
forget it. ``for_org`` shares the connection and the write lock.

Repositories hold the SQL; this class only owns the connection, serialises write
transactions, reports the schema version and hands out its repositories: it is the
SQLite :class:`voxd.store.repos.Store`. A server database replaces it behind the same
repository Protocols (``voxd.store.repos``).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aiosqlite

from voxd.store.migrations import MIGRATIONS, Migration

if TYPE_CHECKING:
    from voxd.core.sealing import Sealer
    from voxd.store.repos import (
        AgentChangeRepo,
        AnalysisRepo,
        ApiKeyRepo,
        AuditRepo,
        CalendarRepo,
        CallRepo,
        ConversationRepo,
        ExecutionLogRepo,
        FunctionRepo,
        OrgRepo,
        SessionRepo,
        TotpRepo,
        UserRepo,
        WebhookRepo,
    )

log = logging.getLogger(__name__)

DEFAULT_ORG = "default"

BUSY_TIMEOUT_MS = 5000

T = TypeVar("T")


class MigrationError(RuntimeError):
    """The database is newer than this code, or a migration failed."""


class Database:
    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._write_lock = asyncio.Lock()
        self.org = DEFAULT_ORG

    def for_org(self, org: str) -> Database:
        """The same database bound to ``org``: its repositories see that organisation only."""
        view = copy.copy(self)
        view.org = org
        return view

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

    # -- the repositories (voxd.store.repos.Store)
    def calls(self) -> CallRepo:
        from voxd.store.calls import CallRepository

        return CallRepository(self)

    def analysis(self) -> AnalysisRepo:
        from voxd.store.analysis import AnalysisRepository

        return AnalysisRepository(self)

    def api_keys(self, pepper: str = "") -> ApiKeyRepo:
        from voxd.store.keys import ApiKeyRepository

        return ApiKeyRepository(self, pepper=pepper)

    def conversations(self) -> ConversationRepo:
        from voxd.store.conversations import ConversationRepository

        return ConversationRepository(self)

    def functions(self) -> FunctionRepo:
        from voxd.store.functions import FunctionRepository

        return FunctionRepository(self)

    def executions(self) -> ExecutionLogRepo:
        from voxd.store.functions_log import ExecutionLogRepository

        return ExecutionLogRepository(self)

    def agent_changes(self) -> AgentChangeRepo:
        from voxd.store.agent_changes import AgentChangeRepository

        return AgentChangeRepository(self)

    def calendar(self) -> CalendarRepo:
        from voxd.store.calendar import CalendarRepository

        return CalendarRepository(self)

    def webhooks(self, sealer: Sealer | None = None) -> WebhookRepo:
        from voxd.store.webhooks import WebhookStore

        return WebhookStore(self, sealer)

    def totp(self, sealer: Sealer) -> TotpRepo:
        from voxd.store.second_factor import TotpRepository

        return TotpRepository(self, sealer)

    def orgs(self) -> OrgRepo:
        from voxd.store.orgs import OrgRepository

        return OrgRepository(self)

    def users(self) -> UserRepo:
        from voxd.store.users import UserRepository

        return UserRepository(self)

    def sessions(self) -> SessionRepo:
        from voxd.store.sessions import SessionRepository

        return SessionRepository(self)

    def audit(self) -> AuditRepo:
        from voxd.store.audit import AuditRepository

        return AuditRepository(self)

    async def writable(self) -> bool:
        try:
            async with self.transaction() as conn:
                await conn.execute("CREATE TEMP TABLE IF NOT EXISTS _voxd_probe (x INTEGER)")
                await conn.execute("INSERT INTO _voxd_probe VALUES (1)")
                await conn.execute("DELETE FROM _voxd_probe")
            return True
        except Exception:
            return False

    async def schema_version(self) -> int:
        row = await self.fetchone("SELECT MAX(version) AS v FROM schema_version")
        return int(row["v"]) if row and row["v"] is not None else 0

    async def _migrate(self, migrations: Sequence[Migration], target: int | None) -> None:
        await self._conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        current = await self.schema_version()
        latest = migrations[-1].version if migrations else 0
        if current > latest:
            raise MigrationError(
                f"database {self.path} is at schema version {current}, this voxd knows {latest}"
            )
        goal = latest if target is None else target
        for m in migrations:
            if m.version <= current or m.version > goal:
                continue
            log.info("store: applying migration %d (%s)", m.version, m.name)
            async with self.transaction() as conn:
                for stmt in m.statements:
                    await conn.execute(stmt)
                await conn.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                    (m.version, m.name, time.time()),
                )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction (BEGIN IMMEDIATE); one at a time on this connection."""
        async with self._write_lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")

    # Reads run start to finish in one hop to the connection's thread. A cursor stepped
    # across awaits (execute, then fetch) lets another task's write run on this same
    # connection in between, and SQLite leaves the rest of that SELECT undefined: seen
    # here as a GROUP BY returning a NULL group and rows counted twice.
    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Row | None:
        args = tuple(params)
        rows = await on_thread(self._conn, lambda raw: _select(raw, sql, args, 1))
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        args = tuple(params)
        return await on_thread(self._conn, lambda raw: _select(raw, sql, args, None))


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
