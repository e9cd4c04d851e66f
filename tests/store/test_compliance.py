"""Erasure, retention and the purged audit chain through the repositories alone, so they
run on both backends (the PostgreSQL runs are the cluster stage's)."""

from __future__ import annotations

from voxd.core.calllog import CallRecord, DtmfRecord, Turn
from voxd.store.records import Execution

DAY = 86400.0


async def _call(db, call_id: str, ended_at: float) -> None:
    await db.calls().save(CallRecord(
        id=call_id, agent="desk", agent_version="1", transport="sip", from_uri="sip:+15550001111@x",
        started_at=ended_at - 60, answered_at=ended_at - 59, ended_at=ended_at,
        turns=[Turn(0, "caller", "my email is ann@example.com", ended_at - 50)], dtmf=[DtmfRecord("1", ended_at - 40)],
        metadata={"recording": {"status": "ready", "format": "wav"}}))
    await db.executions().add([Execution("f", {"a": 1}, {"ok": 1}, None, 1.0, "agent:desk", call_id=call_id,
                                         turn_idx=0, at=ended_at - 30)])


async def test_erase_keeps_a_tombstone_only(db) -> None:
    await db.orgs().create("acme")
    await _call(db, "call_c1", 1000.0)
    assert await db.for_org("acme").calls().erase("call_c1") is None
    tomb = await db.calls().erase("call_c1", now=2000.0)
    assert tomb == {"id": "call_c1", "agent": "desk", "direction": "inbound", "status": "ended", "started_at": 940.0,
                    "answered_at": 941.0, "ended_at": 1000.0, "erased_at": 2000.0, "org": "default"}
    call = await db.calls().get("call_c1")
    assert call["turns"] == [] and call["dtmf"] == [] and call["from_uri"] == "" and call["metadata"] == {}
    assert call["erased_at"] == 2000.0
    assert await db.executions().for_call("call_c1") == []
    assert (await db.calls().totals(0))["seconds"] == 59.0


async def test_retention_purges_and_the_audit_chain_verifies(db) -> None:
    await _call(db, "call_old", 1000.0)
    await _call(db, "call_new", 1000.0 + 50 * DAY)
    calls = db.calls()
    assert await calls.purge_transcripts(1000.0 + 10 * DAY, 10) == 1
    assert (await calls.get("call_old"))["turns"] == [] and (await calls.get("call_new"))["turns"] != []
    assert await calls.recordings_before(1000.0 + 10 * DAY, 10) == ["call_old"]
    assert await db.executions().prune(1000.0 + 10 * DAY, 10) == 1
    await db.orgs().create("acme")
    audit, other = db.audit(), db.for_org("acme").audit()
    rows = [await (audit if i % 2 else other).append(actor="t", action="x", target=str(i)) for i in range(8)]
    assert await other.purge(rows[5]["at"] + 1e-6, 2) == 2
    assert await audit.verify() is None
    assert await audit.purge(float("inf")) == 4
    assert await audit.verify() is None
    assert (await audit.append(actor="t", action="x", target="next"))["seq"] == 9
    assert await audit.verify() is None
