"""Per-call variables through the running daemon: the inbound lookup on the websocket leg
(a CRM server in the test, requests verified with standardwebhooks), the greeting the
call hears, the call record, the webhooks of the call, and POST /api/v1/calls."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from tests.daemons import start_daemon
from tests.webhooks.receiver import Receiver, free_port
from voxd.api.keys_cli import create_key
from voxd.app import Daemon
from voxd.core.signing import new_secret
from voxd.store.calls import CallRepository

SECRET = new_secret()
CRM_PORT = free_port()


def agent(path: str, greeting: str = "Hello {name}, this is the desk.", **lookup: Any) -> str:
    spec = {"url": f"http://127.0.0.1:{CRM_PORT}/lookup/{path}", "timeout_ms": 1500, **lookup}
    return json.dumps({"greeting": greeting, "stt": {"engine": "fake"}, "voice": {"engine": "fake"},
                       "variables": {"name": {"default": "there"}, "order": ""}, "inbound_lookup": spec})


ANSWERS: dict[str, Any] = {
    "ada": {"variables": {"name": "Ada", "order": "A-1042"}},
    "switch": {"agent": "vip", "variables": {"name": "Bo"}},
    "acme": {"agent": "gold", "variables": {"name": "Cy"}},  # gold is an agent of organisation acme only
    "reject": {"reject": {"status": 486, "reason": "known spammer"}},
}


@pytest.fixture
async def crm() -> AsyncIterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        Webhook(SECRET).verify(body, dict(request.headers))
        seen.append({"path": request.match_info["what"], **json.loads(body)})
        if request.match_info["what"] == "slow":
            await asyncio.sleep(1.0)
        return web.json_response(ANSWERS.get(request.match_info["what"], {}))

    app = web.Application()
    app.router.add_post("/lookup/{what}", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", CRM_PORT).start()
    yield seen
    await runner.cleanup()


@pytest.fixture
async def daemon(tmp_path: Path, crm: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Daemon]:
    monkeypatch.setenv("VOXD_TEST_SIGNING", SECRET)
    (tmp_path / "agents" / "acme").mkdir(parents=True)
    (tmp_path / "agents" / "acme" / "gold.yaml").write_text(agent("none", "Gold desk for {name}."))
    d = await start_daemon(tmp_path, {
        "desk": agent("ada"), "hop": agent("switch"), "cross": agent("acme"), "bouncer": agent("reject"),
        "slow": agent("slow", timeout_ms=300), "vip": agent("none", "Welcome back {name}, VIP line."),
        "plain": json.dumps({"greeting": "Hi {name}.", "stt": {"engine": "fake"}, "voice": {"engine": "fake"},
                             "variables": {"name": "friend"}}),
    }, egress={"allow": [{"networks": ["127.0.0.1/32"], "uses": ["lookups"]}]},
        tools={"signing_secret_env": "VOXD_TEST_SIGNING"},
        webhooks={"allow_private_destinations": True, "retry_schedule_s": [0.2]})
    yield d
    await d.stop()


async def greet(d: Daemon, agent_name: str) -> tuple[str, str, float]:
    """(call id, what the agent said first, seconds from connecting to the call's start)."""
    async with aiohttp.ClientSession() as http:
        t0 = time.perf_counter()
        async with http.ws_connect(f"http://127.0.0.1:{d.http_port}/media/voxd?agent={agent_name}") as ws:
            call_id, started = "", 0.0
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                ev = json.loads(msg.data)
                if ev["type"] == "started":
                    call_id, started = ev["call_id"], time.perf_counter() - t0
                if ev["type"] == "transcript":
                    await ws.send_str(json.dumps({"type": "stop"}))
                    return call_id, str(ev["text"]), started
            raise AssertionError(f"no greeting (closed {ws.close_code}: {ws.exception()})")


async def record(d: Daemon, call_id: str) -> dict[str, Any]:
    assert d.calls is not None
    for _ in range(100):
        if call_id not in d.calls.active:
            break
        await asyncio.sleep(0.02)
    await d.calls.flush()
    got = await CallRepository(d.db).get(call_id)
    assert got is not None
    return got


async def test_lookup_variables_reach_the_greeting_record_and_webhooks(
        daemon: Daemon, crm: list[dict[str, Any]]) -> None:
    admin = {"Authorization": f"Bearer {await create_key(daemon.db, 'admin', ['admin'])}"}
    receiver = Receiver()
    await receiver.start()
    try:
        async with aiohttp.ClientSession() as http, http.post(
                f"http://127.0.0.1:{daemon.http_port}/api/v1/webhooks", headers=admin,
                json={"url": receiver.url, "events": ["call.started", "call.ended", "conversation.updated",
                                                      "conversation.ended"]}) as r:
            assert r.status == 201, await r.text()
            receiver.secrets.append((await r.json())["secret"])
        call_id, said, _ = await greet(daemon, "desk")
        assert said == "Hello Ada, this is the desk."
        rec = await record(daemon, call_id)
        assert rec["variables"] == {"name": "Ada", "order": "A-1042"}
        assert rec["metadata"]["inbound_lookup"]["result"] == "ok"
        assert [(s["path"], s["transport"], s["agent"], s["org"]) for s in crm] == [
            ("ada", "websocket", "desk", "default")]
        await receiver.wait_for(lambda r: len(r.accepted) >= 4)
        events = {p["type"]: p["data"] for p in receiver.accepted.values()}
        assert set(events) == {"call.started", "call.ended", "conversation.updated", "conversation.ended"}
        assert all(e["variables"] == rec["variables"] for e in events.values()), events
        assert all(r.verified_by == [0] for r in receiver.received)
    finally:
        await receiver.stop()


async def test_the_lookup_can_hand_the_call_to_another_agent(daemon: Daemon) -> None:
    call_id, said, _ = await greet(daemon, "hop")
    assert said == "Welcome back Bo, VIP line."
    rec = await record(daemon, call_id)
    assert rec["agent"] == "vip" and rec["metadata"]["inbound_lookup"]["agent_from"] == "hop"


async def test_an_agent_of_another_organisation_is_refused(daemon: Daemon) -> None:
    call_id, said, _ = await greet(daemon, "cross")
    assert said == "Hello Cy, this is the desk."  # its variables still apply; the agent stays
    rec = await record(daemon, call_id)
    assert rec["agent"] == "cross"
    assert "'gold' is not an agent of this organisation" in rec["metadata"]["inbound_lookup"]["problems"][0]


async def test_a_slow_lookup_answers_with_defaults_within_its_timeout(daemon: Daemon) -> None:
    call_id, said, started_s = await greet(daemon, "slow")
    assert said == "Hello there, this is the desk."
    assert started_s < 0.300 + 0.100 + 0.100, started_s  # timeout_ms + 100 ms, + the websocket handshake
    rec = await record(daemon, call_id)
    assert rec["metadata"]["inbound_lookup"]["result"] == "timeout"
    assert rec["variables"] == {"name": "there", "order": ""}


async def test_a_rejected_call_is_refused_and_recorded(daemon: Daemon) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(
            f"http://127.0.0.1:{daemon.http_port}/media/voxd?agent=bouncer") as ws:
        msg = await ws.receive()
        assert msg.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 1008
    assert daemon.calls is not None
    await daemon.calls.flush()
    rows, _ = await CallRepository(daemon.db).list(agent="bouncer")
    [rec] = rows
    assert rec["end_reason"] == "rejected" and rec["metadata"]["rejected"] == "known spammer"
    assert rec["metadata"]["inbound_lookup"]["reject"] == {"status": 486, "reason": "known spammer"}


async def test_api_variables_are_bounded(daemon: Daemon) -> None:
    admin = {"Authorization": f"Bearer {await create_key(daemon.db, 'admin', ['admin'])}"}
    url = f"http://127.0.0.1:{daemon.http_port}/api/v1/calls"
    async with aiohttp.ClientSession() as http:
        for bad in ({"9x": "v"}, {"a": "x" * 1025}, {f"v{i}": "x" for i in range(65)}, {"a": {"nested": 1}}):
            async with http.post(url, headers=admin, json={"agent": "plain", "to": "sip:x@127.0.0.1",
                                                           "variables": bad}) as r:
                assert r.status == 422, (bad, await r.text())
                assert "variables" in await r.text()


async def test_a_text_conversation_takes_variables(daemon: Daemon) -> None:
    admin = {"Authorization": f"Bearer {await create_key(daemon.db, 'admin', ['admin'])}"}
    url = f"http://127.0.0.1:{daemon.http_port}/api/v1/conversations"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, headers=admin, json={"agent": "plain", "variables": {"name": "Dee"}}) as r:
            assert r.status == 201, await r.text()
            conv = await r.json()
        assert [t["text"] for t in conv["turns"]] == ["Hi Dee."] and conv["variables"] == {"name": "Dee"}
        async with http.post(url, headers=admin, json={"agent": "plain"}) as r:
            assert [t["text"] for t in (await r.json())["turns"]] == ["Hi friend."]
        async with http.get(f"{url}/{conv['id']}", headers=admin) as r:
            assert (await r.json())["variables"] == {"name": "Dee"}
