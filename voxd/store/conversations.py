"""Text conversations and their turns: a conversation's ``CallRecord`` (``transport`` is
the channel, e.g. ``text``) in, plain dicts out, paged like calls."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from voxd.core.calllog import CallRecord
from voxd.store import scrub
from voxd.store.base import SqlStore
from voxd.store.calls import decode_cursor, encode_cursor, owned
from voxd.store.repos import TxnWrite
from voxd.store.sql import Row

_COLUMNS = "id, agent, agent_version, channel, status, started_at, ended_at, end_reason, ended_by, metadata, variables"
_TURN_COLUMNS = "idx, speaker, text, source, started_at, ended_at, latency, tool_calls"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _status(record: CallRecord) -> str:
    return "ended" if record.ended_at is not None else "active"


class ConversationRepository:
    def __init__(self, db: SqlStore) -> None:
        self._db = db

    async def save(
        self, record: CallRecord, also: Sequence[TxnWrite] = ()
    ) -> None:
        """Upsert the conversation with all its turns (idempotent); ``also`` runs in the same
        transaction (the webhook outbox rows of the event this save records). Redacted as
        calls are (``voxd.store.scrub``)."""
        record = scrub.record(self._db.pii(), record)
        async with self._db.transaction() as conn:
            await owned(conn, "conversations", record.id, self._db.org)
            for write in also:
                await write(conn)
            await conn.execute(
                f"INSERT INTO conversations ({_COLUMNS}, org) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET agent_version = excluded.agent_version, "
                "status = excluded.status, ended_at = excluded.ended_at, "
                "end_reason = excluded.end_reason, ended_by = excluded.ended_by, metadata = excluded.metadata",
                (record.id, record.agent, record.agent_version, record.transport, _status(record),
                 record.started_at, record.ended_at, record.end_reason, record.ended_by, _dumps(record.metadata),
                 _dumps(record.variables), self._db.org),
            )
            await conn.execute("DELETE FROM conversation_turns WHERE conversation_id = ?", (record.id,))
            await conn.executemany(
                f"INSERT INTO conversation_turns (conversation_id, {_TURN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(record.id, t.index, t.speaker, t.text, t.source, t.started_at, t.ended_at,
                  None if t.latency is None else _dumps(asdict(t.latency)),
                  _dumps([asdict(tc) for tc in t.tool_calls])) for t in record.turns],
            )

    async def purge_turns(self, before: float, limit: int) -> int:
        """Transcript retention: the turns of up to ``limit`` conversations that ended before
        ``before`` (the conversation record stays); how many conversations."""
        async with self._db.transaction() as conn:
            rows = await conn.fetchall(
                "SELECT id FROM conversations c WHERE org = ? AND ended_at IS NOT NULL AND ended_at < ? AND "
                "EXISTS (SELECT 1 FROM conversation_turns t WHERE t.conversation_id = c.id) ORDER BY ended_at LIMIT ?",
                (self._db.org, before, max(1, int(limit))))
            await conn.executemany("DELETE FROM conversation_turns WHERE conversation_id = ?",
                                   [(r["id"],) for r in rows])
        return len(rows)

    async def get(self, conversation_id: str) -> dict[str, Any] | None:
        row = await self._db.fetchone(f"SELECT {_COLUMNS} FROM conversations WHERE id = ? AND org = ?",
                                       (conversation_id, self._db.org))
        if row is None:
            return None
        out = _conversation(row)
        rows = await self._db.fetchall(
            f"SELECT {_TURN_COLUMNS} FROM conversation_turns WHERE conversation_id = ? ORDER BY idx",
            (conversation_id,))
        out["turns"] = [_turn(r) for r in rows]
        return out

    async def list(
        self, *, agent: str | None = None, status: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first; ``cursor`` is the ``next_cursor`` of the previous page."""
        where: list[str] = ["org = ?"]
        args: list[Any] = [self._db.org]
        if agent is not None:
            where.append("agent = ?")
            args.append(agent)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if cursor is not None:
            started, cid = decode_cursor(cursor)
            where.append("(started_at < ? OR (started_at = ? AND id < ?))")
            args += [started, started, cid]
        sql = (f"SELECT {_COLUMNS}, (SELECT COUNT(*) FROM conversation_turns t WHERE t.conversation_id = c.id) "
               f"AS turn_count FROM conversations c WHERE {' AND '.join(where)} "
               "ORDER BY started_at DESC, id DESC LIMIT ?")
        rows = await self._db.fetchall(sql, (*args, limit + 1))
        page = [_conversation(r) | {"turn_count": r["turn_count"]} for r in rows[:limit]]
        nxt = encode_cursor(page[-1]["started_at"], page[-1]["id"]) if len(rows) > limit else None
        return page, nxt


def _conversation(row: Row) -> dict[str, Any]:
    return {"id": row["id"], "agent": row["agent"], "agent_version": row["agent_version"],
            "channel": row["channel"], "status": row["status"], "started_at": row["started_at"],
            "ended_at": row["ended_at"], "end_reason": row["end_reason"], "ended_by": row["ended_by"],
            "metadata": json.loads(row["metadata"]), "variables": json.loads(row["variables"])}


def _turn(row: Row) -> dict[str, Any]:
    return {"index": row["idx"], "speaker": row["speaker"], "text": row["text"], "source": row["source"],
            "started_at": row["started_at"], "ended_at": row["ended_at"],
            "latency": json.loads(row["latency"]) if row["latency"] else None,
            "tool_calls": [{k: v for k, v in tc.items() if k != "call_id"} for tc in json.loads(row["tool_calls"])]}
