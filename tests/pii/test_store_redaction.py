"""The store redacts as it writes: calls (turns, heard text, tool calls, metadata), the
recording's metadata, text conversations, the analysis, webhook payloads and function
executions; an organisation with redaction off keeps its text; the live record is untouched."""

from __future__ import annotations

import json
from typing import Any

from voxd.core.calllog import CallRecord, ToolCallRecord, Turn
from voxd.core.pii import CustomPattern, OrgRedaction, Redaction
from voxd.store.records import Execution, Message

CARD, EMAIL = "4111 1111 1111 1111", "jane.doe@example.com"
SAID = f"my card is {CARD} and my email is {EMAIL}"


def _record(call_id: str, transport: str = "sip") -> CallRecord:
    return CallRecord(
        id=call_id, agent="front", agent_version="1", transport=transport, from_uri="sip:+14155550123@pbx",
        started_at=1764762727.5, ended_at=1764762737.5, metadata={"note": f"callback {EMAIL}", "ticket": "ACC-12345678"},
        turns=[
            Turn(index=0, speaker="caller", text=SAID, started_at=1764762728.0),
            Turn(index=1, speaker="bot", text=f"You said: {SAID}.", started_at=1764762729.0, interrupted=True,
                 heard_text=f"You said: my card is {CARD}", tool_calls=[ToolCallRecord(
                     name="take_payment", arguments={"card_number": "4111111111111111", "email": EMAIL},
                     result={"receipt_to": EMAIL, "ok": True}, error=None, call_id=call_id)]),
        ])


def _flat(v: Any) -> str:
    return json.dumps(v, default=str)


def _clean(text: str) -> None:
    for secret in ("4111", "jane.doe", "example.com"):
        assert secret not in text, (secret, text)


async def test_calls_and_recording_metadata_are_written_redacted(db) -> None:
    db.redaction = Redaction(OrgRedaction(patterns=(CustomPattern.compile("account", r"ACC-\d{8}"),)))
    rec = _record("call_pii1")
    await db.calls().save(rec)
    assert rec.turns[0].text == SAID and rec.metadata["ticket"] == "ACC-12345678"  # the live call keeps its words
    got = await db.calls().get("call_pii1")
    assert got is not None
    _clean(_flat(got))
    assert "ACC-1234" not in _flat(got)
    assert got["turns"][0]["text"] == "my card is [card] and my email is [email]"
    assert got["turns"][1]["heard_text"] == "You said: my card is [card]"
    assert got["turns"][1]["tool_calls"][0]["arguments"] == {"card_number": "[card]", "email": "[email]"}
    assert got["metadata"] == {"note": "callback [email]", "ticket": "[account]"}
    assert got["from_uri"] == "sip:+14155550123@pbx" and got["started_at"] == 1764762727.5  # routing, times kept

    assert await db.calls().set_recording("call_pii1", {"status": "ready", "file": "call_pii1.wav",
                                                        "sha256": "4111111111111111", "label": f"for {EMAIL}"})
    meta = (await db.calls().get("call_pii1"))["metadata"]["recording"]
    assert meta == {"status": "ready", "file": "call_pii1.wav", "sha256": "4111111111111111", "label": "for [email]"}


async def test_conversations_analysis_webhooks_and_function_log(db) -> None:
    await db.conversations().save(_record("conv_pii1", transport="text"))
    conv = await db.conversations().get("conv_pii1")
    _clean(_flat(conv))
    assert "[card]" in _flat(conv) and "[email]" in _flat(conv)

    await db.calls().save(_record("call_pii2"))
    await db.analysis().enqueue("call_pii2")
    job = next(j for j in await db.analysis().due(now=1e12) if j.call_id == "call_pii2")
    await db.analysis().complete(job, {"summary": f"Caller paid with {CARD}, receipt to {EMAIL}.",
                                       "extracted": {"email": EMAIL}, "analysed_at": 1764762740.0},
                                 {"outcome": "paid"})
    analysis = (await db.calls().get("call_pii2"))["analysis"]
    assert analysis == {"summary": "Caller paid with [card], receipt to [email].",
                        "extracted": {"email": "[email]"}, "analysed_at": 1764762740.0}

    hooks = db.webhooks()
    ep = await hooks.create_endpoint(url="https://hooks.example.test/in", secret="whsec_" + "a" * 32, created_by="t")
    body = {"type": "call.ended", "data": {"call_id": "call_pii2", "turns": [{"speaker": "caller", "text": SAID}]}}
    await hooks.add_messages([Message(id="msg_pii1", type="call.ended", payload=json.dumps(body), call_id="call_pii2")])
    stored = await hooks.message("msg_pii1")
    assert stored is not None
    _clean(stored.payload)
    assert json.loads(stored.payload)["data"] == {"call_id": "call_pii2", "turns": [
        {"speaker": "caller", "text": "my card is [card] and my email is [email]"}]}
    untouched = Message(id="msg_pii2", type="call.started", payload='{"data": {"call_id": "call_pii2"}}')
    await hooks.add_delivery(ep.id, untouched, "test")
    again = await hooks.message("msg_pii2")
    assert again is not None and again.payload == untouched.payload  # nothing to redact: byte for byte

    await db.executions().add([Execution(name="take_payment", arguments={"card": CARD}, result={"to": EMAIL},
                                         error=None, duration_ms=1.0, actor="call", call_id="call_pii2")])
    rows = await db.executions().for_call("call_pii2")
    _clean(_flat(rows))
    assert rows[0]["arguments"] == {"card": "[card]"} and rows[0]["result"] == {"to": "[email]"}


async def test_an_organisation_may_turn_redaction_off(db) -> None:
    await db.orgs().create("research")
    db.redaction = Redaction(OrgRedaction(), {"research": OrgRedaction(enabled=False)})
    open_org = db.for_org("research")
    await open_org.calls().save(_record("call_pii3"))
    got = await open_org.calls().get("call_pii3")
    assert got is not None and got["turns"][0]["text"] == SAID
    await db.calls().save(_record("call_pii4"))  # the default organisation still redacts
    assert (await db.calls().get("call_pii4"))["turns"][0]["text"] == "my card is [card] and my email is [email]"
