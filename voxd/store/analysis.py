"""Post-call analysis: durable jobs (one per call) and the analysis stored on the call.

A job row is written in the same transaction as the ended call's record, so a call that
is stored as ended always has its analysis owed. The worker side spans organisations
(each job carries its call's); writing a result touches that organisation's call only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from voxd.store import scrub
from voxd.store.base import SqlStore
from voxd.store.records import AnalysisJob
from voxd.store.repos import Transaction, TxnWrite
from voxd.store.sql import Txn

PENDING, DONE, FAILED = "pending", "done", "failed"


def _conn(t: Transaction) -> Txn:
    return t  # type: ignore[return-value]  # opaque to callers, this store's own


class AnalysisRepository:
    def __init__(self, db: SqlStore) -> None:
        self._db = db

    async def enqueue_in(self, conn: Transaction, call_id: str, at: float | None = None) -> None:
        """Owe the call an analysis, inside the caller's transaction (a second call keeps
        the first job)."""
        now = time.time() if at is None else at
        await _conn(conn).execute(
            "INSERT INTO analysis_jobs (call_id, org, status, attempts, next_attempt_at, created_at, "
            "updated_at) VALUES (?, ?, ?, 0, ?, ?, ?) ON CONFLICT (call_id) DO NOTHING",
            (call_id, self._db.org, PENDING, now, now, now))

    async def enqueue(self, call_id: str, *, again: bool = False) -> bool:
        """Owe an analysis now (``again``: also for a call analysed or failed before).
        False if the call is not this organisation's."""
        async with self._db.transaction() as conn:
            if await conn.fetchone("SELECT 1 FROM calls WHERE id = ? AND org = ?", (call_id, self._db.org)) is None:
                return False
            if again:
                now = time.time()
                await conn.execute(
                    "INSERT INTO analysis_jobs (call_id, org, status, attempts, next_attempt_at, created_at, updated_at) "
                    "VALUES (?, ?, ?, 0, ?, ?, ?) ON CONFLICT (call_id) DO UPDATE SET status = excluded.status, "
                    "attempts = 0, next_attempt_at = excluded.next_attempt_at, last_error = NULL, "
                    "updated_at = excluded.updated_at", (call_id, self._db.org, PENDING, now, now, now))
            else:
                await self.enqueue_in(conn, call_id)
        return True

    async def due(self, now: float, limit: int = 8) -> list[AnalysisJob]:
        rows = await self._db.fetchall(
            "SELECT * FROM analysis_jobs WHERE status = ? AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
            (PENDING, now, limit))
        return [AnalysisJob(r["call_id"], r["org"], r["status"], r["attempts"], r["next_attempt_at"],
                            r["last_error"]) for r in rows]

    async def next_due_at(self) -> float | None:
        row = await self._db.fetchone("SELECT MIN(next_attempt_at) AS t FROM analysis_jobs WHERE status = ?",
                                      (PENDING,))
        return None if row is None or row["t"] is None else float(row["t"])

    async def get_job(self, call_id: str) -> AnalysisJob | None:
        r = await self._db.fetchone("SELECT * FROM analysis_jobs WHERE call_id = ?", (call_id,))
        return None if r is None else AnalysisJob(r["call_id"], r["org"], r["status"], r["attempts"],
                                                   r["next_attempt_at"], r["last_error"])

    async def failed_attempt(self, call_id: str, error: str, next_attempt_at: float | None) -> None:
        """One more attempt failed: retry at ``next_attempt_at``, or give up (None)."""
        async with self._db.transaction() as conn:
            await conn.execute(
                "UPDATE analysis_jobs SET attempts = attempts + 1, last_error = ?, status = ?, "
                "next_attempt_at = COALESCE(?, next_attempt_at), updated_at = ? WHERE call_id = ?",
                (error[:1000], PENDING if next_attempt_at is not None else FAILED, next_attempt_at, time.time(),
                 call_id))

    async def complete(self, job: AnalysisJob, analysis: dict[str, Any], headline: dict[str, Any],
                       also: Sequence[TxnWrite] = ()) -> None:
        """Store the analysis on the call, close the job and run ``also`` (the
        ``call.analyzed`` outbox rows) in one transaction. The analysis is redacted first."""
        analysis = scrub.value(self._db.pii(), analysis)
        async with self._db.transaction() as conn:
            await conn.execute(
                "UPDATE calls SET analysis = ?, outcome = ?, sentiment = ?, mos = ? WHERE id = ? AND org = ? "
                "AND erased_at IS NULL",
                (json.dumps(analysis, separators=(",", ":"), default=str), headline.get("outcome"),
                 headline.get("sentiment"), headline.get("mos"), job.call_id, job.org))
            await conn.execute(
                "UPDATE analysis_jobs SET status = ?, attempts = attempts + 1, last_error = NULL, updated_at = ? "
                "WHERE call_id = ?", (DONE, time.time(), job.call_id))
            for write in also:
                await write(conn)

    async def counts(self) -> dict[str, int]:
        rows = await self._db.fetchall("SELECT status, COUNT(*) AS n FROM analysis_jobs GROUP BY status")
        return {r["status"]: r["n"] for r in rows}
