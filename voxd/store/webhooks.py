"""Webhook endpoints, the outbox of event messages, deliveries and their attempt log.

A *message* is one event (its id is the ``webhook-id`` every retry carries). Writing a
message fans it out, in the same transaction, to one *delivery* per enabled endpoint
whose filters match. A delivery is ``pending`` (with ``next_attempt_at``) until it
``succeeded`` or ``failed``; every HTTP try is an *attempt* row.

Endpoints, messages and the reads of deliveries belong to the organisation the store is
bound to (``Database.org``): a message fans out to that organisation's endpoints only.
The worker side (``enabled_endpoints``, ``due_for``, ``record_attempts``, ``next_due_at``,
``counts``) spans every organisation: it sends what was queued and answers no tenant.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from voxd.core.sealing import Sealer
from voxd.store import scrub
from voxd.store.base import SqlStore
from voxd.store.records import (
    DISABLED,
    FAILED,
    FAILING,
    HEALTHY,
    PENDING,
    SUCCEEDED,
    AttemptResult,
    DueDelivery,
    Endpoint,
    Message,
    Outcome,
    new_delivery_id,
    new_endpoint_id,
)

__all__ = ["DISABLED", "FAILED", "FAILING", "HEALTHY", "PENDING", "SUCCEEDED", "AttemptResult", "DueDelivery",
           "Endpoint", "Message", "Outcome", "WebhookStore", "new_delivery_id", "new_endpoint_id"]

if TYPE_CHECKING:
    from voxd.store.repos import Transaction
    from voxd.store.sql import Row, Txn

# how long a claimed delivery is another node's: longer than any send (timeouts are seconds)
CLAIM_LEASE_S = 120.0

def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


_ENDPOINT_COLS = (
    "id, url, description, events, agents, enabled, secret, previous_secret, previous_secret_until, "
    "headers, timeout_s, retry_schedule, health, consecutive_failures, disabled_reason, created_by, "
    "created_at, updated_at"
)
_UPDATABLE = {"url", "description", "events", "agents", "enabled", "headers", "timeout_s", "retry_schedule"}
_JSON = {"events", "agents", "headers", "retry_schedule"}


class WebhookStore:
    """``sealer`` keeps endpoint secrets encrypted at rest (``voxd.core.sealing``); rows
    written before it existed are read as they are and sealed by ``seal_existing``."""

    def __init__(self, db: SqlStore, sealer: Sealer | None = None) -> None:
        self.db = db
        self.sealer = sealer

    def _seal(self, secret: str, endpoint_id: str) -> str:
        return self.sealer.seal(secret, f"webhook:{endpoint_id}") if self.sealer else secret

    def _endpoint(self, r: Any) -> Endpoint:
        return Endpoint.from_row(r, self.sealer)

    async def seal_existing(self) -> int:
        """Seal every secret still stored in plain text (a database from before sealing).
        Returns how many rows changed."""
        if self.sealer is None:
            return 0
        rows = await self.db.fetchall(
            "SELECT id, secret, previous_secret FROM webhook_endpoints WHERE secret NOT LIKE 'sealed:%' "
            "OR (previous_secret IS NOT NULL AND previous_secret NOT LIKE 'sealed:%')")
        if not rows:
            return 0
        async with self.db.transaction() as conn:
            for r in rows:
                prev = r["previous_secret"]
                await conn.execute(
                    "UPDATE webhook_endpoints SET secret = ?, previous_secret = ? WHERE id = ?",
                    (r["secret"] if Sealer.is_sealed(r["secret"]) else self._seal(r["secret"], r["id"]),
                     prev if prev is None or Sealer.is_sealed(prev) else self._seal(prev, r["id"]), r["id"]))
        return len(rows)

    # ---------------------------------------------------------------- endpoints
    async def create_endpoint(
        self, *, url: str, secret: str, created_by: str, description: str = "",
        events: list[str] | None = None, agents: list[str] | None = None, enabled: bool = True,
        headers: dict[str, str] | None = None, timeout_s: float | None = None,
        retry_schedule: list[float] | None = None,
    ) -> Endpoint:
        now = time.time()
        eid = new_endpoint_id()
        async with self.db.transaction() as conn:
            await conn.execute(
                f"INSERT INTO webhook_endpoints ({_ENDPOINT_COLS}, org) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?, ?, 0, NULL, ?, ?, ?, ?)",
                (eid, url, description, _dumps(events or ["*"]),
                 None if agents is None else _dumps(agents), int(enabled), self._seal(secret, eid),
                 _dumps(headers or {}), timeout_s,
                 None if retry_schedule is None else _dumps(retry_schedule),
                 HEALTHY if enabled else DISABLED, created_by, now, now, self.db.org),
            )
        ep = await self.get_endpoint(eid)
        assert ep is not None
        return ep

    async def get_endpoint(self, endpoint_id: str) -> Endpoint | None:
        row = await self.db.fetchone(
            f"SELECT {_ENDPOINT_COLS} FROM webhook_endpoints WHERE id = ? AND org = ?", (endpoint_id, self.db.org))
        return self._endpoint(row) if row else None

    async def list_endpoints(self) -> list[Endpoint]:
        rows = await self.db.fetchall(
            f"SELECT {_ENDPOINT_COLS} FROM webhook_endpoints WHERE org = ? ORDER BY created_at, id", (self.db.org,))
        return [self._endpoint(r) for r in rows]

    async def update_endpoint(self, endpoint_id: str, **fields: Any) -> Endpoint | None:
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        sets: list[str] = ["updated_at = ?"]
        params: list[Any] = [time.time()]
        for name, value in fields.items():
            sets.append(f"{name} = ?")
            if name in _JSON:
                params.append(None if value is None else _dumps(value))
            else:
                params.append(int(value) if isinstance(value, bool) else value)
        if fields.get("enabled") is True:  # re-enabling starts with a clean record
            sets += ["health = 'healthy'", "consecutive_failures = 0", "disabled_reason = NULL"]
        elif fields.get("enabled") is False:
            sets += ["health = 'disabled'", "disabled_reason = 'disabled through the API'"]
        async with self.db.transaction() as conn:
            await conn.execute(
                f"UPDATE webhook_endpoints SET {', '.join(sets)} WHERE id = ? AND org = ?",
                (*params, endpoint_id, self.db.org))
        return await self.get_endpoint(endpoint_id)

    async def rotate_secret(self, endpoint_id: str, new_secret: str, overlap_s: float) -> Endpoint | None:
        now = time.time()
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE webhook_endpoints SET previous_secret = secret, previous_secret_until = ?, "
                "secret = ?, updated_at = ? WHERE id = ? AND org = ?",
                (now + overlap_s if overlap_s > 0 else None, self._seal(new_secret, endpoint_id), now, endpoint_id,
                 self.db.org))
        return await self.get_endpoint(endpoint_id)

    async def delete_endpoint(self, endpoint_id: str) -> bool:
        async with self.db.transaction() as conn:
            return await conn.execute("DELETE FROM webhook_endpoints WHERE id = ? AND org = ?",
                                      (endpoint_id, self.db.org)) > 0

    # ---------------------------------------------------------------- outbox
    async def add_messages(self, messages: list[Message]) -> int:
        async with self.db.transaction() as conn:
            return await self.add_messages_in(conn, messages)

    async def add_messages_in(self, conn: Transaction, messages: list[Message]) -> int:
        """Write messages and their deliveries inside the caller's transaction (so an event
        commits with the state change that caused it); ``conn`` is the open transaction of
        this store's database. Returns deliveries created."""
        txn: Txn = conn  # type: ignore[assignment]  # opaque to callers, this store's own
        org = self.db.org
        red = self.db.pii()
        messages = [scrub.message(red, m) for m in messages]
        endpoints = [Endpoint.from_row(r) for r in await txn.fetchall(
            f"SELECT {_ENDPOINT_COLS} FROM webhook_endpoints WHERE enabled = 1 AND org = ?", (org,))]
        rows = [
            (new_delivery_id(), ep.id, m.id, PENDING, m.created_at, "event", m.created_at, m.created_at)
            for m in messages for ep in endpoints if ep.wants(m.type, m.agent)
        ]
        await txn.many([
            ("INSERT INTO webhook_messages (id, type, agent, call_id, payload, created_at, org) "
             "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
             [(m.id, m.type, m.agent, m.call_id, m.payload, m.created_at, org) for m in messages]),
            ("INSERT INTO webhook_deliveries (id, endpoint_id, message_id, status, next_attempt_at, "
             "trigger, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows),
        ])
        return len(rows)

    async def add_delivery(self, endpoint_id: str, message: Message, trigger: str,
                           *, status: str = PENDING) -> str:
        """A delivery outside the fan-out: a replay or a test (the message may be new)."""
        now = time.time()
        did = new_delivery_id()
        message = scrub.message(self.db.pii(), message)
        if await self.get_endpoint(endpoint_id) is None:
            raise LookupError(f"no webhook endpoint {endpoint_id!r}")
        async with self.db.transaction() as conn:
            known = await conn.fetchone("SELECT org FROM webhook_messages WHERE id = ?", (message.id,))
            if known is not None and known["org"] != self.db.org:
                raise LookupError(f"no webhook message {message.id!r}")
            await conn.execute(
                "INSERT INTO webhook_messages (id, type, agent, call_id, payload, created_at, org) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (message.id, message.type, message.agent, message.call_id, message.payload,
                 message.created_at, self.db.org))
            await conn.execute(
                "INSERT INTO webhook_deliveries (id, endpoint_id, message_id, status, next_attempt_at, "
                "trigger, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (did, endpoint_id, message.id, status, now if status == PENDING else None, trigger, now, now))
        return did

    async def message(self, message_id: str) -> Message | None:
        r = await self.db.fetchone("SELECT * FROM webhook_messages WHERE id = ? AND org = ?",
                                   (message_id, self.db.org))
        if r is None:
            return None
        return Message(id=r["id"], type=r["type"], payload=r["payload"], agent=r["agent"],
                       call_id=r["call_id"], created_at=r["created_at"])

    # ---------------------------------------------------------------- worker side
    async def enabled_endpoints(self) -> list[Endpoint]:
        rows = await self.db.fetchall(
            f"SELECT {_ENDPOINT_COLS} FROM webhook_endpoints WHERE enabled = 1 ORDER BY created_at, id")
        return [self._endpoint(r) for r in rows]

    async def due_for(self, endpoint: Endpoint, now: float, limit: int) -> list[DueDelivery]:
        """Up to ``limit`` pending deliveries of one endpoint due by ``now`` and claimed by
        no one, oldest first (a prefetch: :meth:`claim` them before sending)."""
        rows = await self.db.fetchall(
            "SELECT d.id, d.attempts, d.trigger, d.message_id, m.payload FROM webhook_deliveries d "
            "JOIN webhook_messages m ON m.id = d.message_id WHERE d.endpoint_id = ? AND d.status = 'pending' "
            "AND d.next_attempt_at <= ? AND (d.claimed_until IS NULL OR d.claimed_until <= ?) "
            "ORDER BY d.next_attempt_at LIMIT ?",
            (endpoint.id, now, now, limit))
        return [DueDelivery(id=r["id"], attempts=r["attempts"], trigger=r["trigger"], message_id=r["message_id"],
                            payload=r["payload"], endpoint=endpoint) for r in rows]

    async def claim(self, delivery_ids: list[str], now: float, lease_s: float = CLAIM_LEASE_S) -> list[str]:
        """Take the deliveries of ``delivery_ids`` that are still due and unclaimed for one
        attempt by this node (``Store.node_id``), until ``now + lease_s`` or the attempt is
        recorded; returns those taken. Workers of several nodes never take the same one: on
        PostgreSQL the rows are locked ``FOR UPDATE SKIP LOCKED`` (a row another claim is
        taking is skipped, not waited for). A SQLite database is one node's: its one worker
        never races another, so nothing is written (``SqlStore.shared``)."""
        if not delivery_ids or not self.db.shared:
            return delivery_ids  # one worker on this database: its own in-flight set is enough
        marks = ", ".join("?" for _ in delivery_ids)
        async with self.db.transaction() as conn:
            rows = await conn.fetchall(
                f"SELECT id FROM webhook_deliveries WHERE id IN ({marks}) AND status = 'pending' "
                "AND next_attempt_at <= ? AND (claimed_until IS NULL OR claimed_until <= ?)"
                + self.db.skip_locked, (*delivery_ids, now, now))
            taken = [r["id"] for r in rows]
            if taken:
                await conn.execute(
                    f"UPDATE webhook_deliveries SET claimed_by = ?, claimed_until = ? "
                    f"WHERE id IN ({', '.join('?' for _ in taken)})", (self.db.node_id, now + lease_s, *taken))
        order = {d: i for i, d in enumerate(delivery_ids)}
        return sorted(taken, key=order.__getitem__)

    async def release_claims(self) -> int:
        """Give back every claim of this node (a restart: its attempts in flight were cut
        short, send them again now rather than when the lease runs out)."""
        if not self.db.shared:
            return 0
        async with self.db.transaction() as conn:
            return await conn.execute(
                "UPDATE webhook_deliveries SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by = ?",
                (self.db.node_id,))

    async def next_due_at(self, after: float) -> float | None:
        row = await self.db.fetchone(
            "SELECT MIN(CASE WHEN d.claimed_until > d.next_attempt_at THEN d.claimed_until ELSE d.next_attempt_at "
            "END) AS t FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.enabled = 1 "
            "WHERE d.status = 'pending' AND (d.next_attempt_at > ? OR d.claimed_until > ?)",
            (after, after))
        return float(row["t"]) if row and row["t"] is not None else None

    async def record_attempts(self, outcomes: list[Outcome], failing_after: int = 5) -> list[str]:
        """Log attempts and move each delivery (and its endpoint's health) on, in one
        transaction (the worker group-commits). Returns the deliveries' new statuses."""
        now = time.time()
        statuses = [o.status for o in outcomes]
        health: dict[str, tuple[bool, bool, int]] = {}  # endpoint -> (gone, reset, failures since)
        for o in outcomes:
            gone, reset, fails = health.get(o.delivery.endpoint.id, (False, False, 0))
            if o.gone:
                gone = True
            elif o.affects_health:
                reset, fails = (True, 0) if o.result.ok else (reset, fails + 1)
            health[o.delivery.endpoint.id] = (gone, reset, fails)
        attempts = [(o.delivery.id, o.delivery.attempts + 1, o.result.at, o.result.status_code, o.result.latency_ms,
                     o.result.response_excerpt, o.result.error) for o in outcomes]
        deliveries = [(st, o.delivery.attempts + 1, o.next_attempt_at if st == PENDING else None, o.result.status_code,
                       o.result.error, now, o.delivery.id) for o, st in zip(outcomes, statuses, strict=True)]

        health_rows: list[tuple[str, Sequence[Any]]] = []
        for eid, (gone, reset, fails) in health.items():
            if gone:
                health_rows.append((
                    "UPDATE webhook_endpoints SET enabled = 0, health = 'disabled', disabled_reason = ?, "
                    "updated_at = ? WHERE id = ?", ("the endpoint answered 410 Gone", now, eid)))
            elif reset:
                health_rows.append((
                    "UPDATE webhook_endpoints SET consecutive_failures = ?, health = ? WHERE id = ? AND enabled = 1",
                    (fails, FAILING if fails >= failing_after else HEALTHY, eid)))
            elif fails:
                health_rows.append((
                    "UPDATE webhook_endpoints SET consecutive_failures = consecutive_failures + ?, "
                    "health = CASE WHEN consecutive_failures + ? >= ? THEN 'failing' ELSE health END "
                    "WHERE id = ? AND enabled = 1", (fails, fails, failing_after, eid)))
        async with self.db.transaction() as conn:
            await conn.many([
                ("INSERT INTO webhook_attempts (delivery_id, attempt, at, status_code, latency_ms, "
                 "response_excerpt, error) VALUES (?, ?, ?, ?, ?, ?, ?)", attempts),
                ("UPDATE webhook_deliveries SET status = ?, attempts = ?, next_attempt_at = ?, "
                 "last_status_code = ?, last_error = ?, updated_at = ?, claimed_by = NULL, claimed_until = NULL "
                 "WHERE id = ?", deliveries),
                *((sql, [args]) for sql, args in health_rows),
            ])
        return statuses

    async def due_delivery(self, endpoint_id: str, delivery_id: str) -> DueDelivery | None:
        """One delivery (any status) in the shape the sender takes, for tests and replays."""
        ep = await self.get_endpoint(endpoint_id)
        row = await self.db.fetchone(
            "SELECT d.id, d.attempts, d.trigger, d.message_id, m.payload FROM webhook_deliveries d "
            "JOIN webhook_messages m ON m.id = d.message_id WHERE d.id = ? AND d.endpoint_id = ?",
            (delivery_id, endpoint_id))
        if ep is None or row is None:
            return None
        return DueDelivery(id=row["id"], attempts=row["attempts"], trigger=row["trigger"],
                           message_id=row["message_id"], payload=row["payload"], endpoint=ep)

    # ---------------------------------------------------------------- delivery log
    async def list_deliveries(
        self, endpoint_id: str, *, status: str | None = None, limit: int = 50, before: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first; ``before`` is the ``next_cursor`` of the previous page."""
        where: list[str] = ["d.endpoint_id = ?", "m.org = ?"]
        params: list[Any] = [endpoint_id, self.db.org]
        if status is not None:
            where.append("d.status = ?")
            params.append(status)
        if before is not None:
            where.append("(d.created_at < c.created_at OR (d.created_at = c.created_at AND d.id < c.id))")
            params.insert(0, before)
        cursor = " JOIN webhook_deliveries c ON c.id = ?" if before is not None else ""
        rows = await self.db.fetchall(
            "SELECT d.*, m.type AS event_type FROM webhook_deliveries d JOIN webhook_messages m "
            f"ON m.id = d.message_id{cursor} WHERE {' AND '.join(where)} ORDER BY d.created_at DESC, d.id DESC "
            "LIMIT ?",
            (*params, limit + 1))
        page = [_delivery_dict(r) for r in rows[:limit]]
        return page, (page[-1]["id"] if len(rows) > limit else None)

    async def get_delivery(self, endpoint_id: str, delivery_id: str) -> dict[str, Any] | None:
        row = await self.db.fetchone(
            "SELECT d.*, m.type AS event_type, m.payload FROM webhook_deliveries d JOIN webhook_messages m "
            "ON m.id = d.message_id WHERE d.id = ? AND d.endpoint_id = ? AND m.org = ?",
            (delivery_id, endpoint_id, self.db.org))
        if row is None:
            return None
        out = _delivery_dict(row)
        out["payload"] = json.loads(row["payload"])
        out["attempt_log"] = await self.attempts(delivery_id)
        return out

    async def attempts(self, delivery_id: str) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            "SELECT attempt, at, status_code, latency_ms, response_excerpt, error FROM webhook_attempts "
            "WHERE delivery_id = ? AND delivery_id IN (SELECT d.id FROM webhook_deliveries d JOIN webhook_messages m "
            "ON m.id = d.message_id WHERE m.org = ?) ORDER BY id", (delivery_id, self.db.org))
        return [dict(r) for r in rows]

    async def counts(self) -> dict[str, int]:
        rows = await self.db.fetchall("SELECT status, COUNT(*) AS n FROM webhook_deliveries GROUP BY status")
        return {r["status"]: r["n"] for r in rows}


def _delivery_dict(r: Row) -> dict[str, Any]:
    return {
        "id": r["id"], "endpoint_id": r["endpoint_id"], "message_id": r["message_id"],
        "event_type": r["event_type"], "status": r["status"], "attempts": r["attempts"],
        "next_attempt_at": r["next_attempt_at"], "trigger": r["trigger"],
        "last_status_code": r["last_status_code"], "last_error": r["last_error"],
        "created_at": r["created_at"], "updated_at": r["updated_at"],
    }
