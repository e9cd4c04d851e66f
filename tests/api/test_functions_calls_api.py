from __future__ import annotations

from voxd.core.calllog import CallRecord, ToolCallRecord, Turn, TurnLatency
from voxd.store.calls import CallRepository

CUSTOM = {
    "name": "lookup_order",
    "description": "Find an order",
    "parameters": {"type": "object", "properties": {"order": {"type": "string"}},
                   "required": ["order"]},
    "http": {"method": "POST", "url": "https://crm.example.com/orders"},
}


async def test_function_registry(api):
    h = await api.admin()
    listed = await (await api.client.get("/api/v1/functions", headers=h)).json()
    assert [(f["name"], f["builtin"]) for f in listed["functions"]] == [("echo", True)]

    resp = await api.client.post("/api/v1/functions", headers=h, json=CUSTOM)
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    assert created["builtin"] is False and created["http"]["timeout_s"] == 10.0
    assert (await api.client.post("/api/v1/functions", headers=h, json=CUSTOM)).status == 409
    clash = {**CUSTOM, "name": "echo"}
    assert (await api.client.post("/api/v1/functions", headers=h, json=clash)).status == 409

    bad = {**CUSTOM, "name": "x2", "parameters": {"type": "object", "properties": 5}}
    resp = await api.client.post("/api/v1/functions", headers=h, json=bad)
    assert resp.status == 422 and "parameters.properties" in (await resp.json())["detail"]
    bad = {**CUSTOM, "name": "x3", "http": {"url": "ftp://x"}}
    resp = await api.client.post("/api/v1/functions", headers=h, json=bad)
    assert resp.status == 422 and "http.url" in (await resp.json())["detail"]

    update = {k: v for k, v in CUSTOM.items() if k != "name"} | {"description": "New"}
    resp = await api.client.put("/api/v1/functions/lookup_order", headers=h, json=update)
    assert resp.status == 200 and (await resp.json())["description"] == "New"
    resp = await api.client.put("/api/v1/functions/echo", headers=h, json=update)
    assert resp.status == 409
    assert (await api.client.delete("/api/v1/functions/echo", headers=h)).status == 409
    names = [f["name"] for f in
             (await (await api.client.get("/api/v1/functions", headers=h)).json())["functions"]]
    assert names == ["echo", "lookup_order"]
    assert (await api.client.delete("/api/v1/functions/lookup_order", headers=h)).status == 204
    assert (await api.client.get("/api/v1/functions/lookup_order", headers=h)).status == 404


async def test_execute_validates_and_logs(api):
    h = await api.admin()
    resp = await api.client.post("/api/v1/functions/echo/execute", headers=h,
                                 json={"arguments": {"text": "hi"}})
    assert resp.status == 200
    run = await resp.json()
    assert run["result"] == {"echo": {"text": "hi"}} and run["error"] is None
    resp = await api.client.post("/api/v1/functions/echo/execute", headers=h,
                                 json={"arguments": {"text": 5}})
    assert resp.status == 422 and "arguments.text" in (await resp.json())["detail"]
    await api.client.post("/api/v1/functions", headers=h, json=CUSTOM)
    resp = await api.client.post("/api/v1/functions/lookup_order/execute", headers=h,
                                 json={"arguments": {"order": "A1"}})
    assert (await resp.json())["error"]
    assert api.functions.executed[-1][2]["http"]["url"] == CUSTOM["http"]["url"]
    log = await (await api.client.get("/api/v1/functions/echo/executions", headers=h)).json()
    assert [e["arguments"] for e in log["executions"]] == [{"text": "hi"}]
    assert (await api.client.post("/api/v1/functions/nope/execute", headers=h,
                                  json={})).status == 404


def _call(i: int, agent: str = "desk") -> CallRecord:
    rec = CallRecord(id=f"call_{i:03d}", agent=agent, agent_version="1", transport="sip",
                     started_at=1000.0 + i)
    rec.answered_at = rec.started_at + 1
    rec.turns = [
        Turn(0, "bot", "Hi there", rec.started_at + 1, rec.started_at + 2, interrupted=True,
             heard_text="Hi"),
        Turn(1, "caller", "book a table", rec.started_at + 3,
             latency=TurnLatency(transcript_ms=90.0),
             tool_calls=[ToolCallRecord("book", {"n": 2}, {"ok": True}, call_id=rec.id)]),
    ]
    if i % 2 == 0:
        rec.ended_at = rec.started_at + 9
        rec.end_reason = "hangup"
        rec.ended_by = "caller"
    return rec


async def test_calls_list_get_and_cursor(api):
    h = await api.admin()
    repo = CallRepository(api.db)
    for i in range(5):
        await repo.save(_call(i, "desk" if i < 3 else "sales"))
    resp = await api.client.get("/api/v1/calls?limit=2", headers=h)
    page = await resp.json()
    assert [c["id"] for c in page["calls"]] == ["call_004", "call_003"]
    resp = await api.client.get("/api/v1/calls", headers=h,
                                params={"limit": "2", "cursor": page["next_cursor"]})
    page2 = await resp.json()
    assert [c["id"] for c in page2["calls"]] == ["call_002", "call_001"]
    resp = await api.client.get("/api/v1/calls", headers=h,
                                params={"agent": "desk", "status": "ended", "since": "1001"})
    assert [c["id"] for c in (await resp.json())["calls"]] == ["call_002"]
    for bad in ({"limit": "0"}, {"status": "gone"}, {"cursor": "@@"}, {"since": "soon"},
                {"colour": "red"}):
        resp = await api.client.get("/api/v1/calls", headers=h, params=bad)
        assert resp.status == 422, bad
        assert next(iter(bad)) in (await resp.json())["detail"]

    call = await (await api.client.get("/api/v1/calls/call_002", headers=h)).json()
    assert call["turns"][0]["interrupted"] is True and call["turns"][0]["heard_text"] == "Hi"
    assert call["turns"][1]["tool_calls"][0]["result"] == {"ok": True}
    assert call["turns"][1]["latency"]["transcript_ms"] == 90.0
    assert (await api.client.get("/api/v1/calls/call_999", headers=h)).status == 404


async def test_active_end_and_dial(api):
    h = await api.admin()
    live = _call(7)
    api.calls.calls[live.id] = live.to_dict()
    active = await (await api.client.get("/api/v1/calls/active", headers=h)).json()
    assert [c["id"] for c in active["calls"]] == [live.id]
    assert (await api.client.get(f"/api/v1/calls/{live.id}", headers=h)).status == 200
    resp = await api.client.post(f"/api/v1/calls/{live.id}/end", headers=h)
    assert resp.status == 202 and api.calls.ended == [live.id]
    assert (await api.client.post(f"/api/v1/calls/{live.id}/end", headers=h)).status == 404

    dial = {"agent": "desk", "to": "sip:+15550001@pbx.example.com"}
    resp = await api.client.post("/api/v1/calls", headers=h, json=dial)
    assert resp.status == 501
    assert (await resp.json())["type"] == "urn:voxd:problem:not-implemented"
    api.calls.can_dial = True
    resp = await api.client.post("/api/v1/calls", headers=h, json={**dial, "from": "sip:me@x"})
    assert resp.status == 202 and (await resp.json())["id"] == "call_out0001"
    assert api.calls.dialed == [("desk", dial["to"], "sip:me@x")]
    resp = await api.client.post("/api/v1/calls", headers=h, json={**dial, "agent": "../x"})
    assert resp.status == 422 and "agent" in (await resp.json())["detail"]
