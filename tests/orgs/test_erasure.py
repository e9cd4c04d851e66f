"""DELETE /api/v1/calls/{id}: the right to erasure over HTTP, against the real SQLite store
and recording folder: rows and files gone, the tombstone kept, the erasure audited
(without the erased content), another organisation's call 404, the audit chain intact."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.api.conftest import Api
from tests.api.test_recordings_api import write_wav
from voxd.core.calllog import CallRecord, DtmfRecord, ToolCallRecord, Turn
from voxd.store.db import Database
from voxd.store.records import Execution

SECRET_WORDS = "the blue heron flies at midnight"  # no PII pattern: stored as said


async def seed_call(db: Database, rec_dir: Path, call_id: str, org: str = "default", *, ended_at: float = 130.0,
                    started_at: float = 100.0) -> None:
    """A finished call with everything erasure must remove: turns, a tool call, a digit,
    a recording (file, sidecar, metadata), an analysis, function log rows, a webhook message."""
    scoped = db.for_org(org)
    write_wav(rec_dir, call_id, 0.2)
    (rec_dir / f"{call_id}.json").write_text(json.dumps({"call_id": call_id, "format": "wav"}))
    rec = CallRecord(
        id=call_id, agent="front-desk", agent_version="1", transport="sip", from_uri="sip:+15551234567@carrier",
        to_uri="sip:desk@voxd", started_at=started_at, answered_at=started_at + 1, ended_at=ended_at,
        end_reason="caller_hangup", ended_by="caller",
        turns=[Turn(0, "caller", SECRET_WORDS, started_at + 2, started_at + 3,
                    tool_calls=[ToolCallRecord("lookup", {"card": "4111"}, {"ok": True}, None, started_at + 3, 5.0)]),
               Turn(1, "bot", "Thanks, noted.", started_at + 4, started_at + 5)],
        dtmf=[DtmfRecord("5", started_at + 6)],
        metadata={"recording": {"status": "ready", "format": "wav", "file": f"{call_id}.wav"}},
        variables={"customer": "Ada"})
    await scoped.calls().save(rec)
    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE calls SET analysis = ?, outcome = 'booked', sentiment = 0.5, mos = 4.1 WHERE id = ?",
            (json.dumps({"summary": "Ada paid with 4111"}), call_id))
        await conn.execute(
            "INSERT INTO analysis_jobs (call_id, org, status, attempts, next_attempt_at, created_at, updated_at) "
            "VALUES (?, ?, 'done', 1, 0, 0, 0)", (call_id, org))
        await conn.execute(
            "INSERT INTO webhook_messages (id, type, agent, call_id, payload, created_at, org) "
            "VALUES (?, 'call.ended', 'front-desk', ?, ?, 0, ?)",
            (f"msg_{call_id}", call_id, json.dumps({"transcript": SECRET_WORDS}), org))
    await scoped.executions().add([Execution("lookup", {"card": "4111"}, {"ok": True}, None, 5.0,
                                             "agent:front-desk", call_id=call_id, turn_idx=0, at=started_at + 3)])


def _file_bytes(path: Path) -> bytes:
    """The database file and its write-ahead log, as on disk."""
    wal = Path(str(path) + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def _rows(path: Path, sql: str, *args: object) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return list(conn.execute(sql, args))


async def test_erasure_removes_everything_but_a_tombstone(api: Api, tmp_path: Path) -> None:
    rec_dir = tmp_path / "recordings"
    await seed_call(api.db, rec_dir, "call_erase1")
    await seed_call(api.db, rec_dir, "call_keep1")
    before = await api.db.calls().totals(0)
    h = api.auth(await api.key("users:admin", "calls:read"))
    r = await api.client.delete("/api/v1/calls/call_erase1", headers=h)
    assert r.status == 204, await r.text()

    path = tmp_path / "voxd.db"
    for table in ("turns", "tool_calls", "dtmf"):
        assert _rows(path, f"SELECT COUNT(*) FROM {table} WHERE call_id = 'call_erase1'") == [(0,)], table
        assert _rows(path, f"SELECT COUNT(*) FROM {table} WHERE call_id = 'call_keep1'") != [(0,)], table
    assert _rows(path, "SELECT COUNT(*) FROM function_executions WHERE call_id = 'call_erase1'") == [(0,)]
    assert _rows(path, "SELECT COUNT(*) FROM analysis_jobs WHERE call_id = 'call_erase1'") == [(0,)]
    assert _rows(path, "SELECT payload FROM webhook_messages WHERE call_id = 'call_erase1'") == [("{}",)]
    assert not (rec_dir / "call_erase1.wav").exists() and not (rec_dir / "call_erase1.json").exists()
    assert (rec_dir / "call_keep1.wav").exists()
    # nothing of what was said is left in any table (a logical dump of the whole database)
    with sqlite3.connect(path) as conn:
        dump = "\n".join(conn.iterdump())
    assert dump.count(SECRET_WORDS) == 2  # call_keep1: its turn and its webhook message
    assert "+15551234567" in dump and dump.count("+15551234567") == 1

    # nor in the file's bytes: SQLite zeroes what the erasure freed (secure_delete for it; Debian's
    # SQLite has it on by default, so there this holds without the erasure asking for it too)
    await api.db.fetchone("PRAGMA wal_checkpoint(TRUNCATE)")
    assert _file_bytes(path).count(SECRET_WORDS.encode()) == 2
    assert (await api.db.fetchone("PRAGMA secure_delete"))[0] == 1  # as it was (the default here)

    tomb = _rows(path, "SELECT id, org, started_at, answered_at, ended_at, erased_at, from_uri, metadata, analysis, "
                       "outcome FROM calls WHERE id = 'call_erase1'")
    assert len(tomb) == 1
    cid, org, started, answered, ended, erased, from_uri, meta, analysis, outcome = tomb[0]
    assert (cid, org, started, answered, ended) == ("call_erase1", "default", 100.0, 101.0, 130.0)
    assert erased is not None and from_uri == "" and meta == "{}" and analysis is None and outcome is None
    assert await api.db.calls().totals(0) == before  # usage still adds up

    r = await api.client.get("/api/v1/calls/call_erase1", headers=h)
    body = await r.json()
    assert r.status == 200 and body["erased_at"] == erased and body["turns"] == [] and body["analysis"] is None
    r = await api.client.get("/api/v1/calls/call_erase1/recording",
                             headers=api.auth(await api.key("recordings:read")))
    assert r.status == 404

    rows, _ = await api.db.audit().list(action="erase_call")
    assert [row["target"] for row in rows] == ["call_erase1"]
    audit_dump = json.dumps(_rows(path, "SELECT * FROM audit_log"))
    assert "heron" not in audit_dump and "4111" not in audit_dump and "+1555" not in audit_dump and "Ada" not in audit_dump
    assert await api.db.audit().verify() is None


async def test_an_erased_call_is_not_written_again(api: Api, tmp_path: Path) -> None:
    await seed_call(api.db, tmp_path / "recordings", "call_erase2")
    assert await api.db.calls().erase("call_erase2") is not None
    again = CallRecord(id="call_erase2", agent="front-desk", agent_version="1", transport="sip", started_at=100.0,
                       turns=[Turn(0, "caller", SECRET_WORDS, 101.0)], from_uri="sip:+15551234567@carrier")
    await api.db.calls().save(again)
    assert not await api.db.calls().set_recording("call_erase2", {"status": "ready"})
    call = await api.db.calls().get("call_erase2")
    assert call is not None and call["turns"] == [] and call["from_uri"] == "" and call["metadata"] == {}


async def test_another_organisations_call_is_404_and_untouched(api: Api, tmp_path: Path) -> None:
    await api.db.orgs().create("acme")
    rec_dir = tmp_path / "recordings"
    await seed_call(api.db, rec_dir, "call_acme9", org="acme")
    mine = api.auth(await api.key("users:admin", "calls:read"))
    r = await api.client.delete("/api/v1/calls/call_acme9", headers=mine)
    assert r.status == 404
    r = await api.client.delete("/api/v1/calls/call_nothere", headers=mine)
    assert r.status == 404
    assert (rec_dir / "call_acme9.wav").exists()
    call = await api.db.for_org("acme").calls().get("call_acme9")
    assert call is not None and "erased_at" not in call and len(call["turns"]) == 2
    assert await api.db.calls().erase("call_acme9") is None  # the store itself refuses, not only the handler
    assert (await api.db.audit().list(action="erase_call"))[0] == []


async def test_erasure_needs_an_admin_scope_and_a_finished_call(api: Api, tmp_path: Path) -> None:
    await seed_call(api.db, tmp_path / "recordings", "call_erase3")
    for scopes in (("calls:write", "calls:read", "recordings:write"),):
        r = await api.client.delete("/api/v1/calls/call_erase3", headers=api.auth(await api.key(*scopes)))
        assert r.status == 403
    api.calls.calls["call_live1"] = {"id": "call_live1"}
    await seed_call(api.db, tmp_path / "recordings", "call_live1")
    r = await api.client.delete("/api/v1/calls/call_live1", headers=await api.admin())
    assert r.status == 409
    assert "erased_at" not in (await api.db.calls().get("call_live1") or {"erased_at": 1})


async def test_the_org_export_holds_the_tombstone_not_the_erased_call(api: Api, tmp_path: Path) -> None:
    from voxd.store.export import org_export

    await api.db.orgs().create("acme")
    await seed_call(api.db, tmp_path / "recordings", "call_exp1", org="acme")
    await seed_call(api.db, tmp_path / "recordings", "call_exp2", org="default")
    assert await api.db.for_org("acme").calls().erase("call_exp1") is not None
    rows = [row async for row in org_export(api.db, "acme")]
    calls = [r for r in rows if r["kind"] == "call"]
    assert [c["id"] for c in calls] == ["call_exp1"] and calls[0]["erased_at"] is not None
    text = json.dumps(rows)
    assert SECRET_WORDS not in text and "+15551234567" not in text and "call_exp2" not in text
