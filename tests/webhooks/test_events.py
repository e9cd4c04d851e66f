"""Which webhook events a call or an agent change produces, and their payload shapes."""

from __future__ import annotations

import json
from pathlib import Path

from voxd.agents.catalog import AgentCatalog
from voxd.call.events import CallEnded, CallerSpeaking, CallStarted, ToolExecuted
from voxd.core.calllog import CallRecord, ToolCallRecord
from voxd.store.db import Database
from voxd.webhooks.events import EVENT_MODELS, EVENT_TYPES, examples, from_call_event
from voxd.webhooks.service import Webhooks


def _record(**kw: object) -> CallRecord:
    base: dict = {"id": "call_x", "agent": "front", "agent_version": "1", "transport": "sip", "started_at": 100.0}
    return CallRecord(**(base | kw))


def test_every_type_has_a_model_and_a_valid_example() -> None:
    ex = examples()
    assert set(ex) == set(EVENT_TYPES) == set(EVENT_MODELS)
    for kind, payload in ex.items():
        assert payload["type"] == kind and payload["timestamp"].endswith("Z")
        EVENT_MODELS[kind].model_validate(payload)


def test_call_lifecycle_mapping() -> None:
    answered = _record(answered_at=100.5)
    assert [m.type for m in from_call_event(CallStarted(answered))] == ["call.started", "call.answered"]
    assert from_call_event(CallerSpeaking(answered, interrupting=False)) == []
    answered.ended_at, answered.end_reason, answered.ended_by = 130.5, "caller_hangup", "caller"
    ended = from_call_event(CallEnded(answered))
    assert [m.type for m in ended] == ["call.ended", "conversation.ended"]
    data = json.loads(ended[0].payload)["data"]
    assert data["duration_s"] == 30.0 and data["end_reason"] == "caller_hangup" and data["ended_by"] == "caller"
    assert all(m.call_id == "call_x" and m.agent == "front" for m in ended)
    assert len({m.id for m in ended}) == 2

    failed = _record(ended_at=120.0, end_reason="busy", ended_by="system", direction="outbound")
    assert [m.type for m in from_call_event(CallEnded(failed))] == ["call.failed", "call.ended"]
    moved = _record(answered_at=101.0, ended_at=110.0, end_reason="transferred", ended_by="agent")
    assert [m.type for m in from_call_event(CallEnded(moved))][:2] == ["call.transferred", "call.ended"]


def test_function_payload_is_redacted() -> None:
    tool = ToolCallRecord(name="crm", arguments={"api_key": "sk-live-123", "q": "x"}, result={"ok": True},
                          duration_ms=4.0)
    (msg,) = from_call_event(ToolExecuted(_record(answered_at=1.0), tool))
    data = json.loads(msg.payload)["data"]
    assert data["arguments"]["api_key"] != "sk-live-123" and data["arguments"]["q"] == "x"
    assert data["name"] == "crm" and data["duration_ms"] == 4.0


async def test_agent_changes_become_events(tmp_path: Path) -> None:
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "front.yaml").write_text("greeting: Hi.\n")
    registry = AgentCatalog(agents)
    registry.reload()
    db = await Database.open(tmp_path / "voxd.db")
    try:
        hooks = Webhooks(db)
        hooks.watch_agents(registry)
        (agents / "back.yaml").write_text("greeting: Hello.\n")
        (agents / "front.yaml").write_text("greeting: Hi there, a longer greeting.\n")
        registry.reload(force=True)
        await hooks.outbox.flush()
        rows = await db.fetchall("SELECT type, agent FROM webhook_messages ORDER BY type, agent")
        assert [(r["type"], r["agent"]) for r in rows] == [("agent.deployed", "back"), ("agent.updated", "front")]
    finally:
        await db.close()
