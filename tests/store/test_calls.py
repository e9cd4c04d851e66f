import pytest

from voxd.core.calllog import CallRecord, DtmfRecord, ToolCallRecord, Turn, TurnLatency
from voxd.store.calls import CallRepository, InvalidCursor


def _record(call_id="call_1", started_at=1000.0, agent="front-desk") -> CallRecord:
    rec = CallRecord(
        id=call_id, agent=agent, agent_version="3", transport="sip",
        from_uri="sip:alice@example.test", to_uri="sip:100@voxd", started_at=started_at,
        metadata={"campaign": "x"},
    )
    return rec


def _finish(rec: CallRecord) -> CallRecord:
    rec.answered_at = rec.started_at + 0.5
    rec.turns = [
        Turn(index=0, speaker="bot", text="Hello, how can I help?", started_at=rec.started_at + 1,
             ended_at=rec.started_at + 2, interrupted=True, heard_text="Hello, how",
             source="greeting", barge_in_ms=180.0),
        Turn(index=1, speaker="caller", text="what time is it", started_at=rec.started_at + 2.1,
             ended_at=rec.started_at + 3,
             latency=TurnLatency(transcript_ms=120.0, first_token_ms=300.5, first_audio_ms=None)),
        Turn(index=2, speaker="bot", text="It is noon.", started_at=rec.started_at + 3.4,
             tool_calls=[
                 ToolCallRecord(name="current_time", arguments={"tz": "UTC"},
                                result={"time": "12:00", "list": [1, 2]},
                                started_at=rec.started_at + 3.1, duration_ms=4.5, call_id=rec.id),
                 ToolCallRecord(name="broken", arguments={}, error="boom", call_id=rec.id),
             ]),
    ]
    rec.dtmf = [DtmfRecord("1", rec.started_at + 5), DtmfRecord("#", rec.started_at + 6, "info")]
    rec.interruptions = 1
    rec.ended_at = rec.started_at + 10
    rec.end_reason = "hangup"
    rec.ended_by = "caller"
    return rec


async def test_round_trip_start_then_end(db):
    repo = CallRepository(db)
    rec = _record()
    await repo.save(rec)
    got = await repo.get(rec.id)
    assert got == rec.to_dict() | {"analysis": None}  # filled by the post-call analysis later
    assert got["status"] == "ringing"

    _finish(rec)
    await repo.save(rec)
    await repo.save(rec)  # idempotent
    got = await repo.get(rec.id)
    assert got == rec.to_dict() | {"analysis": None}  # filled by the post-call analysis later
    assert got["status"] == "ended"
    assert got["turns"][0]["interrupted"] is True
    assert got["turns"][0]["heard_text"] == "Hello, how"
    assert got["turns"][1]["latency"]["first_token_ms"] == 300.5
    assert got["turns"][2]["tool_calls"][0]["result"] == {"time": "12:00", "list": [1, 2]}
    assert [d["digit"] for d in got["dtmf"]] == ["1", "#"]
    rows = await db.fetchall("SELECT * FROM turns WHERE call_id = ?", (rec.id,))
    assert len(rows) == 3


async def test_shrinking_record_drops_children(db):
    repo = CallRepository(db)
    rec = _finish(_record())
    await repo.save(rec)
    rec.turns = rec.turns[:1]
    rec.dtmf = []
    await repo.save(rec)
    got = await repo.get(rec.id)
    assert got is not None and len(got["turns"]) == 1 and got["dtmf"] == []
    assert await db.fetchall("SELECT * FROM tool_calls") == []


async def test_get_missing(db):
    assert await CallRepository(db).get("call_nope") is None


async def test_list_filters_and_cursor(db):
    repo = CallRepository(db)
    for i in range(7):
        rec = _record(f"call_{i}", started_at=1000.0 + i, agent="a" if i % 2 else "b")
        if i < 5:
            _finish(rec)
        await repo.save(rec)
    # two calls share a start time: the cursor must still not skip or repeat
    await repo.save(_record("call_same", started_at=1003.0, agent="a"))

    seen: list[str] = []
    cursor = None
    while True:
        page, cursor = await repo.list(limit=3, cursor=cursor)
        seen += [c["id"] for c in page]
        if cursor is None:
            break
    assert len(seen) == 8 and len(set(seen)) == 8
    starts = [(await repo.get(i))["started_at"] for i in seen]
    assert starts == sorted(starts, reverse=True)

    page, _ = await repo.list(agent="a")
    assert {c["id"] for c in page} == {"call_1", "call_3", "call_5", "call_same"}
    page, _ = await repo.list(status="ringing")
    assert {c["id"] for c in page} == {"call_5", "call_6", "call_same"}
    page, _ = await repo.list(since=1002.0, until=1004.0)
    assert {c["id"] for c in page} == {"call_2", "call_3", "call_same"}
    page, _ = await repo.list(agent="b", status="ended")
    assert [c["id"] for c in page] == ["call_4", "call_2", "call_0"]
    assert page[0]["turn_count"] == 3 and "turns" not in page[0]


@pytest.mark.parametrize("bad", ["nope", "bm9wZQ", "WzEsMl0"])
async def test_bad_cursor(db, bad):
    with pytest.raises(InvalidCursor):
        await CallRepository(db).list(cursor=bad)
