"""The audit log: one hash-chained row per state-changing action.

Each row's ``hash`` is SHA-256 over its own fields and the previous row's hash, so an
edited, inserted or deleted row breaks the chain at that row (``verify``). The chain is
one across organisations (rows are appended in one serial order); reads are scoped to the
organisation the repository is bound to.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import time
from typing import Any

from voxd.store.base import SqlStore
from voxd.store.records import Tampered
from voxd.store.repos import InvalidCursor

GENESIS = "0" * 64
_FIELDS = ("seq", "at", "org", "actor", "ip", "action", "target", "before_hash", "after_hash", "prev_hash")


def state_hash(state: Any) -> str | None:
    """A stable SHA-256 of some state (None stays None: nothing before a create)."""
    if state is None:
        return None
    return hashlib.sha256(json.dumps(state, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def row_hash(row: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps([row[f] for f in _FIELDS], separators=(",", ":")).encode()).hexdigest()


class AuditRepository:
    def __init__(self, db: SqlStore) -> None:
        self._db = db

    async def append(self, *, actor: str, action: str, target: str, ip: str | None = None,
                     before: Any = None, after: Any = None, org: str | None = None) -> dict[str, Any]:
        """``before``/``after``: the state (hashed here, never stored); ``org``: this
        repository's unless given (the daemon's own actions name theirs)."""
        row: dict[str, Any] = {"at": time.time(), "org": org or self._db.org, "actor": actor, "ip": ip,
                               "action": action, "target": target, "before_hash": state_hash(before),
                               "after_hash": state_hash(after)}
        async with self._db.transaction() as conn:
            await conn.lock("audit_log")  # one chain: appends from every node in one serial order
            last = await conn.fetchone("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            row["seq"] = (last["seq"] if last else 0) + 1
            row["prev_hash"] = last["hash"] if last else GENESIS
            row["hash"] = row_hash(row)
            cols = [*_FIELDS, "hash"]
            await conn.execute(f"INSERT INTO audit_log ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
                               [row[c] for c in cols])
        return row

    async def list(self, *, action: str | None = None, actor: str | None = None, target: str | None = None,
                   since: float | None = None, until: float | None = None, limit: int = 50,
                   cursor: str | None = None) -> tuple[builtins.list[dict[str, Any]], str | None]:
        """Newest first; ``cursor`` is the ``next_cursor`` of the previous page."""
        where: list[str] = ["org = ?"]
        args: list[Any] = [self._db.org]
        for col, val in (("action", action), ("actor", actor), ("target", target)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        if since is not None:
            where.append("at >= ?")
            args.append(since)
        if until is not None:
            where.append("at < ?")
            args.append(until)
        if cursor is not None:
            if not cursor.isdigit() or len(cursor) > 18:
                raise InvalidCursor("cursor is not one returned by this API")
            where.append("seq < ?")
            args.append(int(cursor))
        limit = max(1, min(int(limit), 500))
        rows = await self._db.fetchall(f"SELECT * FROM audit_log WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?",
                                       (*args, limit + 1))
        page = [dict(r) for r in rows[:limit]]
        return page, (str(page[-1]["seq"]) if len(rows) > limit else None)

    async def verify(self) -> Tampered | None:
        """The first row (of every organisation) whose hash or link does not hold, or None."""
        prev, expected_seq = GENESIS, 1
        for r in await self._db.fetchall("SELECT * FROM audit_log ORDER BY seq"):
            row = dict(r)
            if row["seq"] != expected_seq:
                return Tampered(row["seq"], f"row {expected_seq} is missing")
            if row["prev_hash"] != prev:
                return Tampered(row["seq"], "its link to the previous row is broken")
            if row_hash(row) != row["hash"]:
                return Tampered(row["seq"], "its content does not match its hash")
            prev, expected_seq = row["hash"], expected_seq + 1
        return None

    async def export(self) -> builtins.list[dict[str, Any]]:
        """This organisation's rows, oldest first (JSON lines for ``voxd audit export``)."""
        return [dict(r) for r in await self._db.fetchall("SELECT * FROM audit_log WHERE org = ? ORDER BY seq",
                                                         (self._db.org,))]
