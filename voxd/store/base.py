"""What both store backends share: handing out the repositories and running migrations.

A backend (``voxd.store.db.Database`` for SQLite, ``voxd.store.pg.PgDatabase``) owns its
connection(s) and implements :meth:`transaction`, :meth:`fetchone` and :meth:`fetchall`;
the repositories, written once against :class:`voxd.store.sql.Txn`, serve both.
"""

from __future__ import annotations

import copy
import logging
import socket
import time
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxd.core.pii import PiiRedactor, Redaction
from voxd.store.migrations import Migration
from voxd.store.sql import Txn

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
        OidcRepo,
        OrgRepo,
        SessionRepo,
        TotpRepo,
        UserRepo,
        WebhookRepo,
    )

log = logging.getLogger(__name__)

DEFAULT_ORG = "default"
MIGRATE_LOCK = "voxd:migrate"


class MigrationError(RuntimeError):
    """The database is newer than this code, or a migration failed."""


class SqlStore:
    """A :class:`voxd.store.repos.Store` over SQL; subclasses bring the connection."""

    dialect: str = ""  # "sqlite" | "postgresql"
    path: Path
    org: str = DEFAULT_ORG
    # what a unique or foreign-key violation raises on this backend
    integrity_errors: tuple[type[Exception], ...] = ()
    # several nodes work on this database at once (PostgreSQL); a SQLite file is one node's
    shared: bool = False
    # appended to a SELECT whose rows a transaction takes for itself (the webhook claim)
    skip_locked: str = ""
    # who claims webhook deliveries (``cluster.node_id``): a restarted node gives its claims back
    node_id: str = socket.gethostname()
    # personal data taken out of transcripts, metadata, analysis, webhook payloads and function
    # logs as they are written (the composition root sets the configured policy); on by default
    redaction: Redaction = Redaction()

    def pii(self) -> PiiRedactor | None:
        """This organisation's redactor, None where redaction is off."""
        return self.redaction.for_org(self.org)

    def for_org(self, org: str) -> SqlStore:
        """The same database bound to ``org``: its repositories see that organisation only."""
        view = copy.copy(self)
        view.org = org
        return view

    def files(self) -> tuple[Path, ...]:
        """Local files whose size and mtime change with every write (a cache's stamp);
        empty for a server database."""
        return ()

    # -- to be provided by the backend
    def transaction(self) -> AbstractAsyncContextManager[Txn]:
        raise NotImplementedError

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Any:
        raise NotImplementedError

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        raise NotImplementedError

    def ddl(self, m: Migration) -> Sequence[str]:
        """The statements of ``m`` in this backend's dialect."""
        return m.statements

    async def close(self) -> None:
        raise NotImplementedError

    # -- the repositories (voxd.store.repos.Store)
    def oidc(self, sealer: Sealer) -> OidcRepo:
        from voxd.store.oidc import OidcRepository

        return OidcRepository(self, sealer)

    def analysis(self) -> AnalysisRepo:
        from voxd.store.analysis import AnalysisRepository

        return AnalysisRepository(self)

    def calls(self) -> CallRepo:
        from voxd.store.calls import CallRepository

        return CallRepository(self)

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
            async with self.transaction() as txn:
                await txn.execute("CREATE TEMP TABLE IF NOT EXISTS _voxd_probe (x INTEGER)")
                await txn.execute("INSERT INTO _voxd_probe VALUES (1)")
                await txn.execute("DELETE FROM _voxd_probe")
            return True
        except Exception:
            return False

    async def schema_version(self) -> int:
        row = await self.fetchone("SELECT MAX(version) AS v FROM schema_version")
        return int(row["v"]) if row and row["v"] is not None else 0

    async def _migrate(self, migrations: Sequence[Migration], target: int | None) -> None:
        """Apply what is missing, one transaction per migration; several processes
        starting at once (nodes of a cluster) apply each migration once."""
        async with self.transaction() as txn:
            await txn.lock(MIGRATE_LOCK)
            await txn.execute(self.ddl(Migration(0, "", (
                "CREATE TABLE IF NOT EXISTS schema_version ("
                "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)",)))[0])
        latest = migrations[-1].version if migrations else 0
        goal = latest if target is None else target
        for m in migrations:
            if m.version > goal:
                break
            async with self.transaction() as txn:
                await txn.lock(MIGRATE_LOCK)
                row = await txn.fetchone("SELECT MAX(version) AS v FROM schema_version")
                current = int(row["v"]) if row and row["v"] is not None else 0
                if current > latest:
                    raise MigrationError(
                        f"database {self.path} is at schema version {current}, this voxd knows {latest}")
                if m.version <= current:
                    continue
                log.info("store: applying migration %d (%s)", m.version, m.name)
                for stmt in self.ddl(m):
                    await txn.execute(stmt)
                await txn.execute("INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                                  (m.version, m.name, time.time()))
        current = await self.schema_version()
        if current > latest:
            raise MigrationError(f"database {self.path} is at schema version {current}, this voxd knows {latest}")
