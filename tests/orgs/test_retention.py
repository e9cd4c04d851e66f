"""Retention per organisation: old transcripts, recordings (files too), function logs and
audit rows purged in bounded batches, recent ones and other organisations' kept, and the
audit chain still verifying after its oldest rows are purged (also by ``voxd audit verify``)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.orgs.test_erasure import seed_call
from voxd.call.retention import DAY_S, RetentionJob, purge_all
from voxd.store.db import Database

NOW = 1_000 * DAY_S


@pytest.fixture
async def db(tmp_path: Path):
    d = await Database.open(tmp_path / "voxd.db")
    yield d
    await d.close()


def _count(path: Path, sql: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(sql).fetchone()[0])


async def test_old_data_goes_recent_and_other_orgs_stay(db: Database, tmp_path: Path) -> None:
    rec = tmp_path / "recordings"
    await db.orgs().create("acme")
    old, recent = NOW - 40 * DAY_S, NOW - 5 * DAY_S
    await seed_call(db, rec, "call_old1", "acme", started_at=old, ended_at=old + 60)
    await seed_call(db, rec, "call_new1", "acme", started_at=recent, ended_at=recent + 60)
    await seed_call(db, rec, "call_dflt1", "default", started_at=old, ended_at=old + 60)  # default keeps all
    days = await db.orgs().set_retention("acme", {"transcripts_days": 30, "recordings_days": 30,
                                                  "function_logs_days": 30})
    assert days == {"function_logs_days": 30, "recordings_days": 30, "transcripts_days": 30}
    out = await purge_all(db, rec, now=NOW)
    assert out == {"acme": {"transcripts": 1, "conversation_transcripts": 0, "recordings": 1, "function_logs": 1}}

    path = tmp_path / "voxd.db"
    for call_id, gone in (("call_old1", True), ("call_new1", False), ("call_dflt1", False)):
        turns = _count(path, f"SELECT COUNT(*) FROM turns WHERE call_id = '{call_id}'")
        logs = _count(path, f"SELECT COUNT(*) FROM function_executions WHERE call_id = '{call_id}'")
        assert (turns == 0, logs == 0, not (rec / f"{call_id}.wav").exists()) == (gone, gone, gone), call_id
    call = await db.for_org("acme").calls().get("call_old1")
    assert call is not None and call["metadata"]["recording"]["status"] == "deleted"
    assert call["metadata"]["recording"]["deleted_by"] == "retention"
    # a second run has nothing left to do
    assert await purge_all(db, rec, now=NOW) == {"acme": {"transcripts": 0, "conversation_transcripts": 0,
                                                         "recordings": 0, "function_logs": 0}}
    purges, _ = await db.for_org("acme").audit().list(action="retention_purge")
    assert len(purges) == 1 and purges[0]["actor"] == "system"


async def test_batches_are_bounded(db: Database, tmp_path: Path) -> None:
    rec = tmp_path / "recordings"
    for i in range(5):
        await seed_call(db, rec, f"call_b{i}", started_at=NOW - 90 * DAY_S + i, ended_at=NOW - 89 * DAY_S + i)
    await db.orgs().set_retention("default", {"transcripts_days": 1})
    job = RetentionJob(db, rec, batch=2)
    counts = [(await purge_all(db, rec, now=NOW, batch=job.batch))["default"]["transcripts"] for _ in range(4)]
    assert counts == [2, 2, 1, 0]


async def test_audit_purge_keeps_the_chain_verifiable(db: Database, tmp_path: Path) -> None:
    await db.orgs().create("acme")
    acme, dflt = db.for_org("acme").audit(), db.audit()
    rows = []
    for i in range(6):  # interleaved: acme's old rows sit between rows default keeps
        rows.append(await acme.append(actor="cli", action="a", target=f"acme{i}"))
        rows.append(await dflt.append(actor="cli", action="d", target=f"dflt{i}"))
    cutoff = rows[7]["at"] + 1e-9  # acme rows 0..3 (seq 1,3,5,7) are before it
    assert await acme.purge(cutoff, limit=3) == 3
    assert await db.audit().verify() is None
    assert await acme.purge(cutoff, limit=3) == 1
    assert await db.audit().verify() is None
    path = tmp_path / "voxd.db"
    assert _count(path, "SELECT COUNT(*) FROM audit_log WHERE org = 'acme'") == 2
    assert _count(path, "SELECT COUNT(*) FROM audit_log WHERE org = 'default'") == 6
    # seq 1 is purged and was the first: the anchor moved over it; seq 3, 5, 7 remain as links
    assert _count(path, "SELECT seq FROM audit_anchor") == 1
    assert _count(path, "SELECT COUNT(*) FROM audit_purged") == 3
    # the rest of default's rows purged too: the whole prefix folds into the anchor
    await db.orgs().set_retention("default", {"audit_days": 1})
    assert await dflt.purge(rows[8]["at"] + 1e-9) == 4  # seq 2, 4, 6, 8: before acme's kept seq 9
    assert await db.audit().verify() is None
    assert _count(path, "SELECT seq FROM audit_anchor") == 8
    assert _count(path, "SELECT COUNT(*) FROM audit_purged") == 0
    after = await dflt.append(actor="cli", action="d", target="later")
    assert after["seq"] == 13 and await db.audit().verify() is None
    # a kept row edited, or a kept row removed, is still found
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE audit_log SET target = 'edited' WHERE seq = 13")
    bad = await db.audit().verify()
    assert bad is not None and bad.seq == 13
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE audit_log SET target = 'later' WHERE seq = 13")
        conn.execute("DELETE FROM audit_log WHERE seq = 11")
    bad = await db.audit().verify()
    assert bad is not None and "missing" in bad.why


async def test_purging_every_row_then_appending_still_verifies(db: Database) -> None:
    a = db.audit()
    for i in range(3):
        await a.append(actor="cli", action="x", target=str(i))
    assert await a.purge(float("inf")) == 3
    assert await a.verify() is None
    row = await a.append(actor="cli", action="x", target="next")
    assert row["seq"] == 4 and await a.verify() is None
    async with db.transaction() as conn:
        await conn.execute("DELETE FROM audit_anchor")
    bad = await a.verify()
    assert bad is not None and bad.seq == 4  # without the anchor, row 1 is missing


async def test_retention_values_are_checked(db: Database) -> None:
    for bad in ({"transcripts_days": 0}, {"audit_days": True}, {"forever_days": 3}, {"recordings_days": 10**6}):
        with pytest.raises(ValueError):
            await db.orgs().set_retention("default", bad)  # type: ignore[arg-type]
    with pytest.raises(LookupError):
        await db.orgs().set_retention("nope", {"audit_days": 3})
    assert await db.orgs().set_retention("default", {"audit_days": 3, "transcripts_days": 7}) == \
        {"audit_days": 3, "transcripts_days": 7}
    assert await db.orgs().set_retention("default", {"audit_days": None}) == {"transcripts_days": 7}
    assert await db.orgs().all_retention() == {"default": {"transcripts_days": 7}}
    assert await db.orgs().retention("nope") is None


async def test_cli_sets_retention_and_audit_verify_passes_after_a_purge(tmp_path: Path, capsys) -> None:
    import asyncio
    import json

    from voxd.cli import main as cli_main

    async def cli(argv: list[str]) -> int:
        return await asyncio.to_thread(cli_main, argv)

    config = tmp_path / "voxd.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\nagents_dir: {tmp_path / 'agents'}\n")
    c = ["-c", str(config)]
    assert await cli(["orgs", *c, "create", "acme"]) == 0
    assert await cli(["orgs", *c, "create", "beta"]) == 0
    capsys.readouterr()
    assert await cli(["orgs", *c, "retention", "acme", "--audit-days", "30", "--transcripts-days", "7"]) == 0
    assert json.loads(capsys.readouterr().out) == {"audit_days": 30, "transcripts_days": 7}
    assert await cli(["orgs", *c, "retention", "acme", "--transcripts-days", "none"]) == 0
    assert json.loads(capsys.readouterr().out) == {"audit_days": 30}
    assert await cli(["orgs", *c, "retention", "acme", "--audit-days", "0"]) == 2
    assert await cli(["orgs", *c, "retention", "nope"]) == 2
    db = await Database.open(tmp_path / "state" / "voxd.db")
    try:
        acme = (await db.for_org("acme").audit().list(limit=500))[0]
        assert {r["action"] for r in acme} == {"org_create", "org_retention"}
        # acme's rows (its creation, two retention changes) are "old": purged a year on
        out = await purge_all(db, None, now=max(r["at"] for r in acme) + 365 * DAY_S)
        assert out["acme"]["audit"] == 3 and "beta" not in out
        left = (await db.for_org("acme").audit().list(limit=500))[0]
        assert [r["action"] for r in left] == ["retention_purge"]  # the purge's own row
        assert (await db.for_org("beta").audit().list())[0] != []
    finally:
        await db.close()
    capsys.readouterr()
    assert await cli(["audit", *c, "verify"]) == 0
    assert "intact" in capsys.readouterr().out
    with sqlite3.connect(tmp_path / "state" / "voxd.db") as conn:
        conn.execute("UPDATE audit_purged SET hash = 'x' WHERE seq = (SELECT MAX(seq) FROM audit_purged)")
        assert conn.total_changes == 1  # acme's seq 3 and 4 sit after beta's kept seq 2: links
    assert await cli(["audit", *c, "verify"]) == 1  # a purged row's links are checked too


async def test_the_job_runs_periodically_and_logs_counts(db: Database, tmp_path: Path, caplog) -> None:
    import asyncio
    import logging

    rec = tmp_path / "recordings"
    await seed_call(db, rec, "call_j1", started_at=100.0, ended_at=160.0)  # 1970: older than any retention
    await db.orgs().set_retention("default", {"transcripts_days": 1, "function_logs_days": 1})
    job = RetentionJob(db, rec, interval_s=0.05, batch=10)
    with caplog.at_level(logging.INFO, logger="voxd.retention"):
        await job.start()
        for _ in range(100):
            if job.runs >= 3:
                break
            await asyncio.sleep(0.02)
        await job.stop()
    assert job.runs >= 3
    lines = [r.getMessage() for r in caplog.records if r.name == "voxd.retention"]
    assert "retention: org default purged conversation_transcripts=0 function_logs=1 transcripts=1" in lines
    assert "retention: org default purged conversation_transcripts=0 function_logs=0 transcripts=0" in lines
    assert (await db.calls().get("call_j1"))["turns"] == []
