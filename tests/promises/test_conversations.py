"""Text conversations through a real daemon: the dialog engine and its tools, the function
log, the store, scopes, server-sent events and signed webhooks (verified with the
``standardwebhooks`` package by tests/webhooks/receiver.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.daemons import start_daemon, time_agent
from tests.webhooks.receiver import Receiver
from voxd.api.keys_cli import create_key
from voxd.app import Daemon

GOODBYE_AGENT = """
greeting: Hi, this is the desk.
llm: {engine: dialog}
tools: [get_current_time, end_call, transfer_call]
dialog:
  intents:
    - {name: time, examples: ["what time is it"], tool: get_current_time, reply: "It's {result.spoken}."}
    - {name: bye, examples: ["goodbye", "that's all"], tool: end_call, reply: "Goodbye!"}
"""


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    d = await start_daemon(tmp_path, {"desk": time_agent(), "bye": GOODBYE_AGENT},
                           webhooks={"allow_private_destinations": True, "retry_schedule_s": [0.2]})
    yield d
    await d.stop()


def url(d: Daemon) -> str:
    return f"http://127.0.0.1:{d.http_port}"


async def sse(resp: aiohttp.ClientResponse) -> list[tuple[str, Any]]:
    events, name = [], ""
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[6:])))
    return events


async def test_a_text_conversation_with_tools_sse_and_webhooks(daemon: Daemon) -> None:
    admin = {"Authorization": f"Bearer {await create_key(daemon.db, 'admin', ['admin'])}"}
    reader = {"Authorization": f"Bearer {await create_key(daemon.db, 'r', ['conversations:read'])}"}
    receiver = Receiver()
    await receiver.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(url(daemon) + "/api/v1/webhooks", headers=admin, json={
                    "url": receiver.url, "events": ["conversation.updated", "conversation.ended",
                                                    "function.executed"]}) as r:
                assert r.status == 201, await r.text()
                receiver.secrets.append((await r.json())["secret"])

            async with http.post(url(daemon) + "/api/v1/conversations", headers=reader, json={"agent": "desk"}) as r:
                assert r.status == 403  # conversations:read cannot start one
            async with http.post(url(daemon) + "/api/v1/conversations", headers=admin,
                                 json={"agent": "desk", "metadata": {"customer": "c_1042"}}) as r:
                assert r.status == 201, await r.text()
                conv = await r.json()
            cid = conv["id"]
            assert cid.startswith("conv_") and r.headers["Location"] == f"/api/v1/conversations/{cid}"
            assert conv["status"] == "active" and conv["metadata"] == {"customer": "c_1042"}
            assert [t["text"] for t in conv["turns"]] == ["Hello and welcome."]

            async with http.post(url(daemon) + f"/api/v1/conversations/{cid}/messages", headers=admin,
                                 json={"text": "what time is it"}) as r:
                assert r.status == 200, await r.text()
                reply = await r.json()
            assert reply["reply"].startswith("It's ") and not reply["ended"]
            (tool,) = reply["tool_calls"]
            assert tool["name"] == "get_current_time" and tool["error"] is None and "spoken" in tool["result"]

            # the same over server-sent events
            async with http.post(url(daemon) + f"/api/v1/conversations/{cid}/messages",
                                 headers={**admin, "Accept": "text/event-stream"},
                                 json={"text": "what's the time"}) as r:
                assert r.status == 200 and r.content_type == "text/event-stream"
                events = await sse(r)
            names = [n for n, _ in events]
            assert names[0] == "tool_call" and names[-1] == "reply" and "text" in names
            assert events[0][1]["name"] == "get_current_time"
            streamed = " ".join(d["text"] for n, d in events if n == "text")
            assert streamed == events[-1][1]["reply"]

            async with http.get(url(daemon) + f"/api/v1/conversations/{cid}", headers=reader) as r:
                detail = await r.json()
            assert [t["speaker"] for t in detail["turns"]] == ["bot", "caller", "bot", "caller", "bot"]
            assert detail["turns"][2]["tool_calls"][0]["name"] == "get_current_time"
            async with http.get(url(daemon) + "/api/v1/conversations?agent=desk", headers=reader) as r:
                page = await r.json()
            assert [c["id"] for c in page["conversations"]] == [cid] and page["conversations"][0]["turn_count"] == 5

            # the function log holds them, as for calls
            await daemon.function_log.flush()
            async with http.get(url(daemon) + "/api/v1/functions/get_current_time/executions", headers=admin) as r:
                log = await r.json()
            assert [e["actor"] for e in log["executions"]] == ["agent:desk", "agent:desk"]
            rows = await daemon.db.fetchall("SELECT call_id FROM function_executions WHERE name = ?", ("get_current_time",))
            assert [r[0] for r in rows] == [cid, cid]

            async with http.delete(url(daemon) + f"/api/v1/conversations/{cid}", headers=admin) as r:
                assert r.status == 200
                assert (await r.json())["status"] == "ended"
            async with http.post(url(daemon) + f"/api/v1/conversations/{cid}/messages", headers=admin,
                                 json={"text": "hello?"}) as r:
                assert r.status == 409

        def done(rc: Receiver) -> bool:
            return any(p["type"] == "conversation.ended" for p in rc.accepted.values())

        await receiver.wait_for(done)
        got = list(receiver.accepted.values())
        assert all(r.verified_by == [0] for r in receiver.received)  # signed, verified by standardwebhooks
        updated = [p["data"] for p in got if p["type"] == "conversation.updated"]
        assert len(updated) == 5 and all(u["conversation_id"] == cid and u["call_id"] is None
                                         and u["channel"] == "text" for u in updated)
        (ended,) = [p["data"] for p in got if p["type"] == "conversation.ended"]
        assert ended["end_reason"] == "api_end" and len(ended["transcript"]) == 5
        assert sum(p["type"] == "function.executed" for p in got) == 2
    finally:
        await receiver.stop()


async def test_end_call_ends_the_conversation_and_call_functions_are_not_offered(daemon: Daemon) -> None:
    admin = {"Authorization": f"Bearer {await create_key(daemon.db, 'admin', ['admin'])}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(url(daemon) + "/api/v1/conversations", headers=admin, json={"agent": "bye"}) as r:
            cid = (await r.json())["id"]
        conv = daemon.conversations.active[cid]
        assert "transfer_call" not in conv.tools.allowed and "end_call" in conv.tools.allowed
        async with http.post(url(daemon) + f"/api/v1/conversations/{cid}/messages", headers=admin,
                             json={"text": "goodbye"}) as r:
            reply = await r.json()
        assert reply["ended"] and reply["reply"] == "Goodbye!"
        async with http.get(url(daemon) + f"/api/v1/conversations/{cid}", headers=admin) as r:
            detail = await r.json()
        assert detail["status"] == "ended" and detail["ended_by"] == "agent"
        async with http.post(url(daemon) + "/api/v1/conversations", headers=admin, json={"agent": "nobody"}) as r:
            assert r.status == 422


async def test_a_conversation_carries_on_after_a_restart(tmp_path: Path) -> None:
    d = await start_daemon(tmp_path, {"desk": time_agent()})
    conv = await d.conversations.start("desk")
    await d.stop()
    d = await start_daemon(tmp_path, {"desk": time_agent()})
    try:
        turn = await d.conversations.send(conv.id, "what time is it")
        assert turn.text.startswith("It's ") and turn.index == 2
    finally:
        await d.stop()
