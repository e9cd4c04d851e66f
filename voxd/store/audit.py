"""The audit log: one hash-chained row per state-changing action.

Each row's ``hash`` is SHA-256 over its own fields and the previous row's hash, so an
edited, inserted or deleted row breaks the chain at that row (``verify``). The chain is
one across organisations (rows are appended in one serial order); reads are scoped to the
organisation the repository is bound to.

Retention (``purge``) removes an organisation's old rows. The chain stays checkable: a
purged row leaves its links (``audit_purged``: seq, prev_hash, hash; none of its fields),
and once every row up to one is purged, those links fold into the anchor (``audit_anchor``:
the last purged row's seq and hash), where ``verify`` starts. A kept row's edit is still
found; only a purged row's content is no longer there to check.
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
from voxd.store.sql import Txn

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
            last = await _last(conn)
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
        """The first row (of every organisation) whose hash or link does not hold, or None;
        from the anchor when old rows were purged (a purged row: its links only)."""
        anchor = await self._db.fetchone("SELECT seq, hash FROM audit_anchor WHERE id = 1")
        prev, expected_seq = (anchor["hash"], anchor["seq"] + 1) if anchor else (GENESIS, 1)
        kept = [dict(r) for r in await self._db.fetchall("SELECT * FROM audit_log ORDER BY seq")]
        links = [dict(r) for r in await self._db.fetchall("SELECT seq, prev_hash, hash FROM audit_purged ORDER BY seq")]
        for row in sorted(kept + links, key=lambda r: int(r["seq"])):
            if row["seq"] != expected_seq:
                return Tampered(row["seq"], f"row {expected_seq} is missing")
            if row["prev_hash"] != prev:
                return Tampered(row["seq"], "its link to the previous row is broken")
            if "at" in row and row_hash(row) != row["hash"]:
                return Tampered(row["seq"], "its content does not match its hash")
            prev, expected_seq = row["hash"], expected_seq + 1
        return None

    async def purge(self, before: float, limit: int = 500, now: float | None = None) -> int:
        """Remove up to ``limit`` of this organisation's rows older than ``before`` (oldest
        first), keeping their links; returns how many."""
        at = time.time() if now is None else now
        async with self._db.transaction() as conn:
            await conn.lock("audit_log")
            rows = await conn.fetchall("SELECT seq, prev_hash, hash FROM audit_log WHERE org = ? AND at < ? "
                                       "ORDER BY seq LIMIT ?", (self._db.org, before, max(1, int(limit))))
            if not rows:
                return 0
            await conn.executemany("INSERT INTO audit_purged (seq, prev_hash, hash, purged_at) VALUES (?, ?, ?, ?)",
                                   [(r["seq"], r["prev_hash"], r["hash"], at) for r in rows])
            await conn.executemany("DELETE FROM audit_log WHERE seq = ?", [(r["seq"],) for r in rows])
            await _fold(conn, at)
        return len(rows)

    async def export(self) -> builtins.list[dict[str, Any]]:
        """This organisation's rows, oldest first (JSON lines for ``voxd audit export``)."""
        return [dict(r) for r in await self._db.fetchall("SELECT * FROM audit_log WHERE org = ? ORDER BY seq",
                                                         (self._db.org,))]


async def _last(conn: Txn) -> Any:
    """The chain's newest link: a kept row, a purged one's links or the anchor."""
    best: Any = None
    for sql in ("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
                "SELECT seq, hash FROM audit_purged ORDER BY seq DESC LIMIT 1",
                "SELECT seq, hash FROM audit_anchor WHERE id = 1"):
        row = await conn.fetchone(sql)
        if row is not None and (best is None or row["seq"] > best["seq"]):
            best = row
    return best


async def _fold(conn: Txn, at: float) -> None:
    """Move the anchor over the purged links that now start the chain (contiguous, before
    the oldest kept row), and drop those links."""
    anchor = await conn.fetchone("SELECT seq, hash FROM audit_anchor WHERE id = 1")
    seq, digest = (int(anchor["seq"]), str(anchor["hash"])) if anchor else (0, GENESIS)
    oldest = await conn.fetchone("SELECT MIN(seq) AS s FROM audit_log")
    stop = oldest["s"] if oldest is not None and oldest["s"] is not None else None
    folded = []
    for r in await conn.fetchall("SELECT seq, prev_hash, hash FROM audit_purged ORDER BY seq"):
        if (stop is not None and r["seq"] > stop) or r["seq"] != seq + 1 or r["prev_hash"] != digest:
            break  # a kept row comes first, or the links do not hold (verify will name it)
        seq, digest = int(r["seq"]), str(r["hash"])
        folded.append((seq,))
    if not folded:
        return
    if anchor is None:
        await conn.execute("INSERT INTO audit_anchor (id, seq, hash, purged_at) VALUES (1, ?, ?, ?)", (seq, digest, at))
    else:
        await conn.execute("UPDATE audit_anchor SET seq = ?, hash = ?, purged_at = ? WHERE id = 1", (seq, digest, at))
    await conn.executemany("DELETE FROM audit_purged WHERE seq = ?", folded)
