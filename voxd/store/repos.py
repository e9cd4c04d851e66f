"""What callers may ask of the store, as Protocols: the only store types outside ``voxd/store``.

The API, the call manager, webhooks, the tool library and the daemon depend on these,
never on the SQLite classes. ``voxd.store.db.Database`` is one :class:`Store`; a server
database (``voxd.store.pg.PgDatabase``, PostgreSQL) is another: the same repository classes
over another connection; ``voxd.store.open_store`` picks one from ``store.url`` for the
composition root (``voxd/app.py``), with no caller edited. The record types (``CallRecord``, ``ApiKey``, ``Endpoint``, ``Message``, ...) are
plain dataclasses (``voxd.store.records``) any implementation returns.

Organisations: a store is bound to one organisation (``Store.org``, ``default`` as opened)
and ``Store.for_org(org)`` gives the same store bound to another. Every repository it hands
out scopes every read and write to that organisation inside its own queries, so no caller
can forget the filter; what spans organisations says so (``ApiKeyRepo.lookup``, the webhook
worker's side, ``UserRepo``, ``AuditRepo.verify``).

A write that must commit with another repository's write (a call record and the webhook
outbox rows of its event) is a :data:`TxnWrite`: the first repository opens the
transaction and hands its opaque :class:`Transaction` to the second, which belongs to the
same store.
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from voxd.core.calllog import CallRecord
from voxd.core.pii import PiiRedactor, Redaction
from voxd.core.sealing import Sealer
from voxd.store.records import (
    FAILED,
    PENDING,
    SUCCEEDED,
    AnalysisJob,
    ApiKey,
    AttemptResult,
    DueDelivery,
    Endpoint,
    Execution,
    Message,
    OidcLogin,
    OidcProvider,
    Outcome,
    Refreshed,
    RefreshRefused,
    Tampered,
    User,
    UserExists,
    normal_email,
    utc_day,
    well_formed,
)

__all__ = [
    "FAILED",
    "PENDING",
    "SUCCEEDED",
    "AgentChangeRepo",
    "AnalysisJob",
    "AnalysisRepo",
    "ApiKey",
    "ApiKeyRepo",
    "AttemptResult",
    "AuditRepo",
    "CalendarRepo",
    "CallRepo",
    "DueDelivery",
    "Endpoint",
    "Execution",
    "ExecutionLogRepo",
    "FunctionRepo",
    "InvalidCursor",
    "Message",
    "OidcLogin",
    "OidcProvider",
    "OidcRepo",
    "OrgRepo",
    "Outcome",
    "RefreshRefused",
    "Refreshed",
    "SessionRepo",
    "Store",
    "Tampered",
    "TotpRepo",
    "Transaction",
    "TxnWrite",
    "User",
    "UserExists",
    "UserRepo",
    "WebhookRepo",
    "normal_email",
    "utc_day",
    "well_formed",
]


class InvalidCursor(ValueError):
    """A pagination cursor that this repository did not hand out."""


class Transaction(Protocol):
    """An open write transaction of one store: opaque to everyone but that store's
    repositories (a ``voxd.store.sql.Txn`` of the SQLite or the PostgreSQL backend)."""


TxnWrite = Callable[[Transaction], Awaitable[object]]


@runtime_checkable
class CallRepo(Protocol):
    async def save(self, record: CallRecord, also: Sequence[TxnWrite] = ()) -> None:
        """Upsert the call with its turns, tool calls and digits (idempotent); ``also``
        runs in the same transaction, so both commit or neither does."""
        ...

    async def get(self, call_id: str) -> dict[str, Any] | None:
        """The call as ``CallRecord.to_dict()`` shapes it (plus ``analysis``, None until the
        post-call analysis has run), or None."""
        ...

    async def set_recording(self, call_id: str, info: dict[str, Any]) -> bool:
        """Replace ``metadata.recording`` of a stored call; False when there is no such call."""
        ...

    async def list(
        self, agent: str | None = None, status: str | None = None, since: float | None = None,
        until: float | None = None, limit: int = 50, cursor: str | None = None, *,
        outcome: str | None = None, sentiment_lt: float | None = None, sentiment_gt: float | None = None,
        mos_lt: float | None = None,
    ) -> tuple[builtins.list[dict[str, Any]], str | None]:
        """Newest first, without turns: the page and the next page's cursor; a cursor not
        handed out by this repository raises InvalidCursor. ``outcome``, ``sentiment_*``
        and ``mos_lt`` filter on the analysis (calls not analysed yet never match)."""
        ...

    async def totals(self, since: float) -> dict[str, float]:
        """Calls started at or after ``since``: ``count``, ``answered`` and connected ``seconds``."""
        ...

    async def erase(self, call_id: str, *, now: float | None = None) -> dict[str, Any] | None:
        """Erase the call's transcript, analysis, function log and details, keeping a tombstone
        (id, agent, direction, status, times, ``erased_at``, ``org``), which it returns; None
        when it is not this organisation's call."""
        ...

    async def purge_transcripts(self, before: float, limit: int) -> int:
        """Transcript retention: turns, tool calls and digits of up to ``limit`` calls ended
        before ``before``; how many calls."""
        ...

    async def recordings_before(self, before: float, limit: int) -> builtins.list[str]:
        """Calls ended before ``before`` whose recording is not deleted yet (recording retention)."""
        ...


@runtime_checkable
class AnalysisRepo(Protocol):
    """Durable post-call analysis jobs and the analysis stored on the call. The worker's
    side (``due``, ``next_due_at``, ``get_job``, ``failed_attempt``, ``complete``,
    ``counts``) spans organisations: each job carries its call's."""

    async def enqueue_in(self, conn: Transaction, call_id: str, at: float | None = None) -> None:
        """Owe the call an analysis inside another repository's open transaction."""
        ...

    async def enqueue(self, call_id: str, *, again: bool = False) -> bool: ...

    async def due(self, now: float, limit: int = 8) -> builtins.list[AnalysisJob]: ...

    async def next_due_at(self) -> float | None: ...

    async def get_job(self, call_id: str) -> AnalysisJob | None: ...

    async def failed_attempt(self, call_id: str, error: str, next_attempt_at: float | None) -> None: ...

    async def complete(self, job: AnalysisJob, analysis: dict[str, Any], headline: dict[str, Any],
                       also: Sequence[TxnWrite] = ()) -> None:
        """The analysis on the call, the job closed and ``also`` in one transaction."""
        ...

    async def counts(self) -> dict[str, int]: ...


@runtime_checkable
class ConversationRepo(Protocol):
    async def save(self, record: CallRecord, also: Sequence[TxnWrite] = ()) -> None:
        """Upsert a text conversation with all its turns (idempotent); ``also`` runs in the
        same transaction."""
        ...

    async def get(self, conversation_id: str) -> dict[str, Any] | None: ...

    async def purge_turns(self, before: float, limit: int) -> int:
        """Transcript retention: the turns of up to ``limit`` conversations ended before ``before``."""
        ...

    async def list(
        self, *, agent: str | None = None, status: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> tuple[builtins.list[dict[str, Any]], str | None]:
        """Newest first; ``cursor`` is the ``next_cursor`` of the previous page."""
        ...


@runtime_checkable
class ApiKeyRepo(Protocol):
    async def create(
        self, name: str, scopes: builtins.list[str] | tuple[str, ...], *, created_by: str,
        expires_at: float | None = None, rate_limit_per_minute: int | None = None,
        quota_per_day: int | None = None, quota_per_month: int | None = None,
    ) -> tuple[str, ApiKey]:
        """The raw key (shown once, never stored) and the stored record."""
        ...

    async def lookup(self, raw: str) -> ApiKey | None: ...

    async def get(self, key_id: str) -> ApiKey | None: ...

    async def list(self) -> builtins.list[ApiKey]: ...

    async def update(self, key_id: str, **fields: Any) -> ApiKey | None: ...

    async def revoke(self, key_id: str) -> ApiKey | None: ...

    async def record_use(self, key_id: str, endpoint: str, now: float | None = None) -> None: ...

    async def record_uses(self, counts: dict[tuple[str, str, str], int], last_used: dict[str, float]) -> None: ...

    async def usage_totals(self, key_id: str, now: float | None = None) -> tuple[int, int]: ...

    async def org_usage_totals(self, now: float | None = None) -> tuple[int, int]:
        """Requests today and this month (UTC) by every key of the organisation."""
        ...

    async def usage(
        self, key_id: str, since_day: str | None = None, until_day: str | None = None
    ) -> builtins.list[dict[str, Any]]: ...


@runtime_checkable
class FunctionRepo(Protocol):
    async def put(self, name: str, description: str, parameters: dict[str, Any], http: dict[str, Any],
                  actor: str) -> dict[str, Any]: ...

    async def get(self, name: str) -> dict[str, Any] | None: ...

    async def list(self) -> builtins.list[dict[str, Any]]: ...

    async def delete(self, name: str) -> bool: ...

    async def log_execution(self, name: str, arguments: dict[str, Any], result: Any, error: str | None,
                            duration_ms: float, actor: str) -> dict[str, Any]: ...

    async def executions(self, name: str, limit: int = 50) -> builtins.list[dict[str, Any]]: ...


@runtime_checkable
class ExecutionLogRepo(Protocol):
    async def add(self, rows: builtins.list[Execution]) -> None: ...

    async def for_call(self, call_id: str) -> builtins.list[dict[str, Any]]: ...

    async def recent(self, name: str | None = None, limit: int = 50) -> builtins.list[dict[str, Any]]: ...

    async def prune(self, before: float, limit: int | None = None) -> int: ...


@runtime_checkable
class AgentChangeRepo(Protocol):
    async def record(self, agent: str, version: str, action: str, actor: str) -> None: ...

    async def list(self, agent: str, limit: int = 50) -> builtins.list[dict[str, Any]]: ...


@runtime_checkable
class CalendarRepo(Protocol):
    async def add(self, event: dict[str, Any]) -> None: ...

    async def list(self, limit: int = 5000) -> builtins.list[dict[str, Any]]: ...


@runtime_checkable
class WebhookRepo(Protocol):
    """Endpoints, the outbox of messages, deliveries and their attempt log."""

    async def seal_existing(self) -> int: ...

    async def create_endpoint(
        self, *, url: str, secret: str, created_by: str, description: str = "",
        events: builtins.list[str] | None = None, agents: builtins.list[str] | None = None, enabled: bool = True,
        headers: dict[str, str] | None = None, timeout_s: float | None = None,
        retry_schedule: builtins.list[float] | None = None,
    ) -> Endpoint: ...

    async def get_endpoint(self, endpoint_id: str) -> Endpoint | None: ...

    async def list_endpoints(self) -> builtins.list[Endpoint]: ...

    async def update_endpoint(self, endpoint_id: str, **fields: Any) -> Endpoint | None: ...

    async def rotate_secret(self, endpoint_id: str, new_secret: str, overlap_s: float) -> Endpoint | None: ...

    async def delete_endpoint(self, endpoint_id: str) -> bool: ...

    async def add_messages(self, messages: builtins.list[Message]) -> int: ...

    async def add_messages_in(self, conn: Transaction, messages: builtins.list[Message]) -> int:
        """Messages and their fan-out inside another repository's open transaction."""
        ...

    async def add_delivery(self, endpoint_id: str, message: Message, trigger: str, *, status: str = ...) -> str: ...

    async def message(self, message_id: str) -> Message | None: ...

    async def enabled_endpoints(self) -> builtins.list[Endpoint]: ...

    async def due_for(self, endpoint: Endpoint, now: float, limit: int) -> builtins.list[DueDelivery]: ...

    async def claim(self, delivery_ids: builtins.list[str], now: float, lease_s: float = ...) -> builtins.list[str]:
        """Take these deliveries (still due, unclaimed) for one attempt by this node; the
        ones taken. No two nodes take the same delivery at once."""
        ...

    async def release_claims(self) -> int:
        """Give back this node's claims (at start: what a crash cut short is sent again)."""
        ...

    async def next_due_at(self, after: float) -> float | None: ...

    async def record_attempts(self, outcomes: builtins.list[Outcome], failing_after: int = 5) -> builtins.list[str]: ...

    async def due_delivery(self, endpoint_id: str, delivery_id: str) -> DueDelivery | None: ...

    async def list_deliveries(
        self, endpoint_id: str, *, status: str | None = None, limit: int = 50, before: str | None = None,
    ) -> tuple[builtins.list[dict[str, Any]], str | None]: ...

    async def get_delivery(self, endpoint_id: str, delivery_id: str) -> dict[str, Any] | None: ...

    async def attempts(self, delivery_id: str) -> builtins.list[dict[str, Any]]: ...

    async def counts(self) -> dict[str, int]: ...


@runtime_checkable
class OrgRepo(Protocol):
    async def create(self, org_id: str) -> dict[str, Any]:
        """Raises ValueError for a bad name (``OrgExists`` when taken)."""
        ...

    async def get(self, org_id: str) -> dict[str, Any] | None:
        """``{"id", "created_at", "limits": {name: value}}``, or None."""
        ...

    async def list(self) -> builtins.list[dict[str, Any]]: ...

    async def set_limits(self, org_id: str, limits: dict[str, int | None]) -> dict[str, Any]: ...

    async def retention(self, org_id: str) -> dict[str, int] | None: ...

    async def all_retention(self) -> dict[str, dict[str, int]]: ...

    async def set_retention(self, org_id: str, days: dict[str, int | None]) -> dict[str, int]: ...


@runtime_checkable
class UserRepo(Protocol):
    """Users span organisations; a membership gives one a role in one organisation."""

    async def create(self, email: str, password: str | None) -> User: ...

    async def get(self, user_id: str) -> User | None: ...

    async def by_email(self, email: str) -> User | None: ...

    async def set_password(self, user_id: str, password: str) -> None: ...

    async def check_password(self, email: str, password: str, now: float | None = None) -> tuple[User | None, str]: ...

    async def note_failure(self, user_id: str, now: float | None = None) -> None: ...

    async def note_success(self, user_id: str) -> None: ...

    async def set_role(self, user_id: str, org: str, role: str) -> None: ...

    async def role(self, user_id: str, org: str) -> str | None: ...

    async def memberships(self, user_id: str) -> builtins.list[tuple[str, str]]: ...

    async def list(self, org: str | None = None) -> builtins.list[dict[str, Any]]: ...

    async def issue_token(self, kind: str, org: str, email: str, *, role: str | None, created_by: str,
                          ttl_s: float = ...) -> str: ...

    async def consume_token(self, kind: str, raw: str, now: float | None = None) -> dict[str, Any] | None: ...


@runtime_checkable
class TotpRepo(Protocol):
    """A user's TOTP second factor (``voxd.store.second_factor``)."""

    async def enroll(self, user_id: str, email: str) -> str:
        """A new pending secret as an ``otpauth://`` URI; ValueError while one is confirmed."""
        ...

    async def enabled(self, user_id: str) -> bool: ...

    async def check(self, user_id: str, code: str, now: float | None = None, *, confirming: bool = False) -> bool: ...

    async def disable(self, user_id: str) -> bool: ...


@runtime_checkable
class SessionRepo(Protocol):
    async def start(self, user_id: str, org: str, ttl_s: float = ...) -> Refreshed: ...

    async def rotate(self, raw: str, ttl_s: float = ..., now: float | None = None) -> Refreshed:
        """Raises RefreshRefused; a reused token revokes its family first."""
        ...

    async def revoke_family_of(self, raw: str) -> str | None: ...

    async def revoke_family(self, family: str) -> None: ...

    async def family_of(self, raw: str) -> str | None:
        """The family of a live (not rotated, revoked or expired) refresh token, else None."""
        ...

    async def family_live(self, family: str) -> bool: ...


@runtime_checkable
class OidcRepo(Protocol):
    """An organisation's single sign-on provider and its sign-ins under way (``voxd.store.oidc``)."""

    async def get_provider(self) -> OidcProvider | None: ...

    async def put_provider(self, p: OidcProvider) -> OidcProvider: ...

    async def delete_provider(self) -> bool: ...

    async def begin(self, state: str, binding: str, nonce: str, code_verifier: str, redirect_uri: str,
                    ttl_s: float = ..., now: float | None = None) -> None: ...

    async def consume(self, state: str, now: float | None = None) -> tuple[OidcLogin | None, str]:
        """Once: (the sign-in, ""); else (None, unknown | used | expired)."""
        ...


@runtime_checkable
class AuditRepo(Protocol):
    async def append(self, *, actor: str, action: str, target: str, ip: str | None = None,
                     before: Any = None, after: Any = None, org: str | None = None) -> dict[str, Any]: ...

    async def list(self, *, action: str | None = None, actor: str | None = None, target: str | None = None,
                   since: float | None = None, until: float | None = None, limit: int = 50,
                   cursor: str | None = None) -> tuple[builtins.list[dict[str, Any]], str | None]: ...

    async def verify(self) -> Tampered | None: ...

    async def export(self) -> builtins.list[dict[str, Any]]: ...

    async def purge(self, before: float, limit: int = 500, now: float | None = None) -> int:
        """Retention: up to ``limit`` of this organisation's rows older than ``before`` go, their
        links kept so ``verify`` still checks the rest of the chain; how many."""
        ...


@runtime_checkable
class Store(Protocol):
    """One database: hands out its repositories and owns their connection."""

    org: str  # the organisation every repository handed out is bound to
    redaction: Redaction  # what is taken out of rows as they are written (voxd/store/scrub.py)

    def pii(self) -> PiiRedactor | None:
        """This organisation's redactor, None where redaction is off."""
        ...

    def for_org(self, org: str) -> Store:
        """The same database (connection, locks) bound to ``org``."""
        ...

    def orgs(self) -> OrgRepo: ...

    def users(self) -> UserRepo: ...

    def sessions(self) -> SessionRepo: ...

    def audit(self) -> AuditRepo: ...

    @property
    def path(self) -> Path:
        """Where the database lives (``:memory:`` for a throwaway one); the webhook secrets'
        key file is kept beside it."""
        ...

    def calls(self) -> CallRepo: ...

    def analysis(self) -> AnalysisRepo: ...

    def conversations(self) -> ConversationRepo: ...

    def api_keys(self, pepper: str = "") -> ApiKeyRepo:
        """``pepper``: the HMAC key mixed into stored key hashes (the CLI uses the same)."""
        ...

    def functions(self) -> FunctionRepo: ...

    def executions(self) -> ExecutionLogRepo: ...

    def agent_changes(self) -> AgentChangeRepo: ...

    def calendar(self) -> CalendarRepo: ...

    def webhooks(self, sealer: Sealer | None = None) -> WebhookRepo: ...

    def totp(self, sealer: Sealer) -> TotpRepo: ...

    def oidc(self, sealer: Sealer) -> OidcRepo: ...

    async def writable(self) -> bool:
        """Whether a write transaction goes through now (``/readyz``)."""
        ...

    async def close(self) -> None: ...
