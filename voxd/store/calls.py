"""Calls and their transcripts: ``CallRecord`` in, plain dicts out."""

from __future__ import annotations

import base64
import binascii
import builtins
import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from voxd.core.calllog import CallRecord
from voxd.store import scrub
from voxd.store.base import SqlStore
from voxd.store.repos import InvalidCursor, Transaction, TxnWrite
from voxd.store.sql import Row, Txn

__all__ = ["CallRepository", "ForeignRow", "InvalidCursor", "decode_cursor", "encode_cursor"]

_CALL_COLUMNS = (
    "id, agent, agent_version, transport, from_uri, to_uri, direction, status, started_at, "
    "answered_at, ended_at, end_reason, ended_by, interruptions, metadata, variables"
)
_READ_COLUMNS = _CALL_COLUMNS + ", erased_at"
# what a call's erasure (or its transcript's retention) keeps: enough for usage and billing
_TOMBSTONE = "id, agent, direction, status, started_at, answered_at, ended_at, erased_at"
_ANALYSIS_COLUMNS = "analysis, outcome, sentiment, mos"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def encode_cursor(started_at: float, call_id: str) -> str:
    raw = json.dumps([started_at, call_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        started_at, call_id = json.loads(raw)
        if not isinstance(call_id, str) or isinstance(started_at, bool):
            raise TypeError
        return float(started_at), call_id
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as e:
        raise InvalidCursor("cursor is not one returned by this API") from e


class CallRepository:
    def __init__(self, db: SqlStore) -> None:
        self._db = db

    async def save(self, record: CallRecord, also: Sequence[TxnWrite] = ()) -> None:
        """Upsert the call with all its turns, tool calls and digits (idempotent).
        `also` runs inside the same transaction (e.g. the webhook outbox rows for the
        event this save records), so both commit or neither does. What is written is
        redacted (``voxd.store.scrub``); ``record`` itself is not changed."""
        record = scrub.record(self._db.pii(), record)
        async with self._db.transaction() as conn:
            await owned(conn, "calls", record.id, self._db.org)
            if await conn.fetchone("SELECT 1 FROM calls WHERE id = ? AND erased_at IS NOT NULL", (record.id,)):
                return  # erased: nothing of it is written again
            for write in also:
                await write(_txn(conn))
            await conn.execute(
                f"INSERT INTO calls ({_CALL_COLUMNS}, org) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET agent = excluded.agent, "
                "agent_version = excluded.agent_version, transport = excluded.transport, "
                "from_uri = excluded.from_uri, to_uri = excluded.to_uri, "
                "direction = excluded.direction, status = excluded.status, "
                "started_at = excluded.started_at, answered_at = excluded.answered_at, "
                "ended_at = excluded.ended_at, end_reason = excluded.end_reason, "
                "ended_by = excluded.ended_by, interruptions = excluded.interruptions, "
                "metadata = excluded.metadata, variables = excluded.variables",
                (
                    record.id, record.agent, record.agent_version, record.transport,
                    record.from_uri, record.to_uri, record.direction, record.status,
                    record.started_at, record.answered_at, record.ended_at, record.end_reason,
                    record.ended_by, record.interruptions, _dumps(record.metadata), _dumps(record.variables),
                    self._db.org,
                ),
            )
            for table in ("turns", "tool_calls", "dtmf"):
                await conn.execute(f"DELETE FROM {table} WHERE call_id = ?", (record.id,))
            await self._insert_children(conn, record)

    @staticmethod
    async def _insert_children(conn: Txn, record: CallRecord) -> None:
        turn_rows = []
        tool_rows = []
        for t in record.turns:
            latency = None if t.latency is None else _dumps(asdict(t.latency))
            turn_rows.append((
                record.id, t.index, t.speaker, t.text, t.started_at, t.ended_at,
                int(t.interrupted), t.heard_text, t.source, latency, t.barge_in_ms,
            ))
            for seq, tc in enumerate(t.tool_calls):
                tool_rows.append((
                    record.id, t.index, seq, tc.name, _dumps(tc.arguments),
                    _dumps(tc.result), tc.error, tc.started_at, tc.duration_ms,
                ))
        await conn.many([
            ("INSERT INTO turns (call_id, idx, speaker, text, started_at, ended_at, interrupted, "
             "heard_text, source, latency, barge_in_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", turn_rows),
            ("INSERT INTO tool_calls (call_id, turn_idx, seq, name, arguments, result, error, "
             "started_at, duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", tool_rows),
            ("INSERT INTO dtmf (call_id, seq, digit, at, source) VALUES (?, ?, ?, ?, ?)",
             [(record.id, i, d.digit, d.at, d.source) for i, d in enumerate(record.dtmf)]),
        ])

    async def set_recording(self, call_id: str, info: dict[str, Any]) -> bool:
        """Replace ``metadata.recording`` of a stored call; False when there is no such call."""
        info = scrub.value(self._db.pii(), info)
        async with self._db.transaction() as conn:
            row = await conn.fetchone("SELECT metadata FROM calls WHERE id = ? AND org = ? AND erased_at IS NULL",
                                      (call_id, self._db.org))
            if row is None:
                return False
            meta = json.loads(row[0] or "{}")
            meta["recording"] = info
            await conn.execute("UPDATE calls SET metadata = ? WHERE id = ? AND org = ?",
                               (_dumps(meta), call_id, self._db.org))
        return True

    async def erase(self, call_id: str, *, now: float | None = None) -> dict[str, Any] | None:
        """Right to erasure: the call's transcript (turns, tool calls, digits), analysis, function
        log, caller and callee, metadata (the recording's entry too: its files are the caller's
        to delete) and variables go; its webhook messages lose their payload and undelivered
        ones are failed. What stays is the tombstone (``_TOMBSTONE``) usage and billing count.
        None when the call is not this organisation's; an erased call answers its tombstone."""
        at = time.time() if now is None else now
        async with self._db.transaction() as conn:
            row = await conn.fetchone("SELECT erased_at, ended_at FROM calls WHERE id = ? AND org = ?",
                                      (call_id, self._db.org))
            if row is None:
                return None
            if row["erased_at"] is None:
                # SQLite: the freed bytes zeroed, not left in the file (many builds do so by default)
                was = await conn.fetchone("PRAGMA secure_delete") if self._db.dialect == "sqlite" else None
                if was is not None:
                    await conn.execute("PRAGMA secure_delete = ON")
                try:
                    await _erase_in(conn, self._db.org, call_id, at)
                finally:
                    if was is not None:
                        await conn.execute(f"PRAGMA secure_delete = {int(was[0])}")
            tomb = await conn.fetchone(f"SELECT {_TOMBSTONE} FROM calls WHERE id = ?", (call_id,))
        assert tomb is not None
        return {**dict(tomb), "org": self._db.org}

    async def purge_transcripts(self, before: float, limit: int) -> int:
        """Transcript retention: the turns, tool calls and digits of up to ``limit`` calls that
        ended before ``before`` (the call record, its analysis and recording stay); how many calls."""
        async with self._db.transaction() as conn:
            rows = await conn.fetchall(
                "SELECT id FROM calls c WHERE org = ? AND ended_at IS NOT NULL AND ended_at < ? AND "
                "(EXISTS (SELECT 1 FROM turns t WHERE t.call_id = c.id) OR "
                "EXISTS (SELECT 1 FROM dtmf d WHERE d.call_id = c.id)) ORDER BY ended_at LIMIT ?",
                (self._db.org, before, max(1, int(limit))))
            for table in ("turns", "tool_calls", "dtmf"):
                await conn.executemany(f"DELETE FROM {table} WHERE call_id = ?", [(r["id"],) for r in rows])
        return len(rows)

    async def recordings_before(self, before: float, limit: int) -> builtins.list[str]:
        """Calls that ended before ``before`` whose recording is not deleted yet (oldest first,
        at most ``limit``): what recording retention deletes next."""
        rows = await self._db.fetchall(
            "SELECT id, metadata FROM calls WHERE org = ? AND erased_at IS NULL AND ended_at IS NOT NULL AND "
            "ended_at < ? AND metadata LIKE ? AND metadata NOT LIKE ? ORDER BY ended_at LIMIT ?",
            (self._db.org, before, '%"recording":{%', '%"status":"deleted"%', max(1, int(limit))))
        return [r["id"] for r in rows if (json.loads(r["metadata"]).get("recording") or {}).get("status") != "deleted"]

    async def get(self, call_id: str) -> dict[str, Any] | None:
        """The call as ``CallRecord.to_dict()`` shapes it (plus ``analysis``, None until the
        post-call analysis has run), or None."""
        row = await self._db.fetchone(f"SELECT {_READ_COLUMNS}, {_ANALYSIS_COLUMNS} FROM calls WHERE id = ? AND org = ?",
                                       (call_id, self._db.org))
        if row is None:
            return None
        call = _call_dict(row)
        call["analysis"] = json.loads(row["analysis"]) if row["analysis"] is not None else None
        tools: dict[int, list[dict[str, Any]]] = {}
        for r in await self._db.fetchall(
            "SELECT * FROM tool_calls WHERE call_id = ? ORDER BY turn_idx, seq", (call_id,)
        ):
            tools.setdefault(r["turn_idx"], []).append({
                "name": r["name"],
                "arguments": json.loads(r["arguments"]),
                "result": json.loads(r["result"]) if r["result"] is not None else None,
                "error": r["error"],
                "started_at": r["started_at"],
                "duration_ms": r["duration_ms"],
                "call_id": call_id,
            })
        call["turns"] = [
            {
                "index": r["idx"],
                "speaker": r["speaker"],
                "text": r["text"],
                "started_at": r["started_at"],
                "ended_at": r["ended_at"],
                "interrupted": bool(r["interrupted"]),
                "heard_text": r["heard_text"],
                "source": r["source"],
                "latency": json.loads(r["latency"]) if r["latency"] is not None else None,
                "tool_calls": tools.get(r["idx"], []),
                "barge_in_ms": r["barge_in_ms"],
            }
            for r in await self._db.fetchall(
                "SELECT * FROM turns WHERE call_id = ? ORDER BY idx", (call_id,)
            )
        ]
        call["dtmf"] = [
            {"digit": r["digit"], "at": r["at"], "source": r["source"]}
            for r in await self._db.fetchall(
                "SELECT digit, at, source FROM dtmf WHERE call_id = ? ORDER BY seq", (call_id,)
            )
        ]
        return call

    async def totals(self, since: float) -> dict[str, float]:
        row = await self._db.fetchone(
            "SELECT COUNT(*) AS n, COUNT(answered_at) AS a, "
            "COALESCE(SUM(CASE WHEN answered_at IS NOT NULL AND ended_at IS NOT NULL "
            "THEN ended_at - answered_at END), 0) AS s FROM calls WHERE org = ? AND started_at >= ?",
            (self._db.org, since))
        return {"count": int(row["n"]), "answered": int(row["a"]), "seconds": round(float(row["s"]), 1)} if row \
            else {"count": 0, "answered": 0, "seconds": 0.0}

    async def list(
        self,
        agent: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 50,
        cursor: str | None = None,
        *,
        outcome: str | None = None,
        sentiment_lt: float | None = None,
        sentiment_gt: float | None = None,
        mos_lt: float | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first, without turns; returns the page and the cursor for the next one.
        ``outcome``/``sentiment_*``/``mos_lt`` filter on the analysis headline columns."""
        where: list[str] = ["org = ?"]
        params: list[Any] = [self._db.org]
        for column, value in (("agent", agent), ("status", status), ("outcome", outcome)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        for cond, bound in (("sentiment < ?", sentiment_lt), ("sentiment > ?", sentiment_gt), ("mos < ?", mos_lt)):
            if bound is not None:
                where.append(cond)
                params.append(bound)
        if since is not None:
            where.append("started_at >= ?")
            params.append(since)
        if until is not None:
            where.append("started_at < ?")
            params.append(until)
        if cursor is not None:
            c_started, c_id = decode_cursor(cursor)
            where.append("(started_at < ? OR (started_at = ? AND id < ?))")
            params += [c_started, c_started, c_id]
        limit = max(1, min(int(limit), 500))
        sql = (
            f"SELECT {_READ_COLUMNS}, outcome, sentiment, mos, "
            "(SELECT COUNT(*) FROM turns t WHERE t.call_id = calls.id) AS turn_count FROM calls"
        )
        sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC, id DESC LIMIT ?"
        rows = await self._db.fetchall(sql, [*params, limit + 1])
        page = [_call_dict(r) | {"turn_count": r["turn_count"], "outcome": r["outcome"], "sentiment": r["sentiment"],
                                 "mos": r["mos"]} for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor(last["started_at"], last["id"])
        return page, next_cursor


class ForeignRow(LookupError):
    """A write would touch a row (same id) of another organisation."""


async def owned(conn: Txn, table: str, row_id: str, org: str) -> None:
    """Refuse an upsert onto an id another organisation owns (ids are random: a clash
    is an attack or a bug, never a reason to overwrite)."""
    row = await conn.fetchone(f"SELECT org FROM {table} WHERE id = ?", (row_id,))
    if row is not None and row["org"] != org:
        raise ForeignRow(f"{table} row {row_id!r} belongs to another organisation")


async def _erase_in(conn: Txn, org: str, call_id: str, at: float) -> None:
    for table in ("turns", "tool_calls", "dtmf"):
        await conn.execute(f"DELETE FROM {table} WHERE call_id = ?", (call_id,))
    await conn.execute("DELETE FROM function_executions WHERE org = ? AND call_id = ?", (org, call_id))
    await conn.execute("DELETE FROM analysis_jobs WHERE call_id = ? AND org = ?", (call_id, org))
    await conn.execute(
        "UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL, last_error = 'call erased' "
        "WHERE status = 'pending' AND message_id IN (SELECT id FROM webhook_messages WHERE org = ? AND call_id = ?)",
        (org, call_id))
    await conn.execute("UPDATE webhook_messages SET payload = '{}' WHERE org = ? AND call_id = ?", (org, call_id))
    await conn.execute(
        "UPDATE calls SET from_uri = '', to_uri = '', metadata = '{}', variables = '{}', end_reason = NULL, "
        "analysis = NULL, outcome = NULL, sentiment = NULL, mos = NULL, erased_at = ? WHERE id = ? AND org = ?",
        (at, call_id, org))


def _txn(conn: Txn) -> Transaction:
    return conn


def _call_dict(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "agent": row["agent"],
        "agent_version": row["agent_version"],
        "transport": row["transport"],
        "from_uri": row["from_uri"],
        "to_uri": row["to_uri"],
        "direction": row["direction"],
        "started_at": row["started_at"],
        "answered_at": row["answered_at"],
        "ended_at": row["ended_at"],
        "end_reason": row["end_reason"],
        "ended_by": row["ended_by"],
        "interruptions": row["interruptions"],
        "metadata": json.loads(row["metadata"]),
        "variables": json.loads(row["variables"]),
        "status": row["status"],
        **({"erased_at": row["erased_at"]} if row["erased_at"] is not None else {}),  # only a tombstone has it
    }


async def close_cut_calls(db: SqlStore) -> list[dict[str, Any]]:
    """Calls a previous process of this store left unfinished (it was killed mid-call):
    ended now as ``node_lost`` by ``system``, at the last moment known of them (the end of
    their recovered recording, else their answer or start). Every organisation's; run at
    start, before any call is taken, on a store only this node uses. Returns
    ``{"id", "org", "answered"}`` of each."""
    rows = await db.fetchall("SELECT id, org, started_at, answered_at, metadata FROM calls WHERE ended_at IS NULL")
    out: list[dict[str, Any]] = []
    if not rows:
        return out
    async with db.transaction() as conn:
        for r in rows:
            meta = json.loads(r["metadata"] or "{}")
            heard = (meta.get("recording") or {}).get("duration_s") or 0.0
            base = r["answered_at"] if r["answered_at"] is not None else r["started_at"]
            meta["cut_short"] = True
            await conn.execute(
                "UPDATE calls SET ended_at = ?, status = 'ended', end_reason = 'node_lost', ended_by = 'system', "
                "metadata = ? WHERE id = ? AND ended_at IS NULL", (base + float(heard), _dumps(meta), r["id"]))
            out.append({"id": r["id"], "org": r["org"], "answered": r["answered_at"] is not None})
    return out
