"""Retention per organisation: the daemon's purge job.

An organisation's ``retention`` (``voxd orgs retention``; days per kind, a kind left out is
kept for ever) says how long it keeps call and conversation transcripts, recordings (their
files too), function logs and audit rows. Each run purges at most ``batch`` items of each
kind for each organisation (a large backlog is worked off over several runs, never in one
long transaction), logs the counts, and audits a run that removed something as ``system``.
Audit rows are purged through ``AuditRepo.purge``, which keeps the chain verifiable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from voxd.call.recording import Recordings
from voxd.store.repos import Store

log = logging.getLogger("voxd.retention")

DAY_S = 86400.0


async def purge_org(db: Store, org: str, days: dict[str, int], recordings: Path | None, *,
                    now: float | None = None, batch: int = 500) -> dict[str, int]:
    """One run for one organisation: how many of each kind went."""
    at = time.time() if now is None else now
    scoped = db.for_org(org)
    counts: dict[str, int] = {}
    if "transcripts_days" in days:
        cutoff = at - days["transcripts_days"] * DAY_S
        counts["transcripts"] = await scoped.calls().purge_transcripts(cutoff, batch)
        counts["conversation_transcripts"] = await scoped.conversations().purge_turns(cutoff, batch)
    if "recordings_days" in days:
        calls = scoped.calls()
        room = Recordings(recordings) if recordings is not None else None
        gone = 0
        for call_id in await calls.recordings_before(at - days["recordings_days"] * DAY_S, batch):
            if room is not None:
                await asyncio.to_thread(room.delete_files, call_id)
            call = await calls.get(call_id)
            info = dict(((call or {}).get("metadata") or {}).get("recording") or {})
            info.update(status="deleted", deleted_at=at, deleted_by="retention")
            await calls.set_recording(call_id, info)
            gone += 1
        counts["recordings"] = gone
    if "function_logs_days" in days:
        counts["function_logs"] = await scoped.executions().prune(at - days["function_logs_days"] * DAY_S, batch)
    if "audit_days" in days:
        counts["audit"] = await scoped.audit().purge(at - days["audit_days"] * DAY_S, batch, now=at)
    return counts


async def purge_all(db: Store, recordings: Path | None, *, now: float | None = None,
                    batch: int = 500) -> dict[str, dict[str, int]]:
    """One run over every organisation with a retention: the counts per organisation."""
    out: dict[str, dict[str, int]] = {}
    for org, days in (await db.orgs().all_retention()).items():
        try:
            counts = await purge_org(db, org, days, recordings, now=now, batch=batch)
        except Exception:
            log.exception("retention: purging organisation %s failed", org)
            continue
        out[org] = counts
        removed = sum(counts.values())
        log.info("retention: org %s purged %s", org, " ".join(f"{k}={v}" for k, v in sorted(counts.items())))
        if removed:
            await db.for_org(org).audit().append(actor="system", action="retention_purge", target=org,
                                                 after=counts)
    return out


class RetentionJob:
    """The periodic purge: once shortly after start, then every ``interval_s``."""

    def __init__(self, db: Store, recordings: Path | None, interval_s: float = 3600.0, batch: int = 500) -> None:
        self.db = db
        self.recordings = recordings
        self.interval_s = interval_s
        self.batch = batch
        self.runs = 0
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> dict[str, dict[str, int]]:
        self.runs += 1
        return await purge_all(self.db, self.recordings, batch=self.batch)

    async def start(self) -> None:
        async def loop() -> None:
            while True:
                try:
                    await self.run_once()
                except Exception:
                    log.exception("retention run failed")
                await asyncio.sleep(self.interval_s)

        if self._task is None:
            self._task = asyncio.create_task(loop(), name="retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
