"""The control API as mounted in the real daemon: agents are the YAML files, new calls
pick up API changes, calls show up with their transcripts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from voxd.api.keys_cli import create_key
from voxd.app import Daemon
from voxd.config import VoxdConfig

AGENT = """greeting: {greeting}
stt: {{engine: fake}}
voice: {{engine: fake}}
"""


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "desk.yaml").write_text(AGENT.format(greeting="First version."))
    cfg = VoxdConfig.model_validate({
        "state_dir": str(tmp_path / "state"), "agents_dir": str(tmp_path / "agents"), "http": {"port": 0, "media_unauthenticated": True},
        "sip": {"enabled": False}, "engines": {"silero_confirm": False, "preload": False},
    })
    d = Daemon(cfg, tmp_path)
    await d.start()
    yield d
    await d.stop()


async def greeting(http: aiohttp.ClientSession, url: str) -> tuple[str, str]:
    async with http.ws_connect(url + "/media/voxd?agent=desk") as ws:
        call_id = ""
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                ev = json.loads(msg.data)
                if ev["type"] == "started":
                    call_id = ev["call_id"]
                if ev["type"] == "transcript":
                    await ws.send_str(json.dumps({"type": "stop"}))
                    return call_id, str(ev["text"])
    raise AssertionError("no greeting")


async def test_agents_and_calls_through_the_api(daemon: Daemon, tmp_path: Path) -> None:
    key = await create_key(daemon.db, "test", ["admin"])
    url = f"http://127.0.0.1:{daemon.http_port}"
    auth = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "/api/v1/agents") as r:
            assert r.status == 401
        async with http.get(url + "/api/v1/agents", headers=auth) as r:
            body = await r.json()
            assert r.status == 200 and [a["name"] for a in body["agents"]] == ["desk"]
        # an invalid update is refused with the field named, and the file is untouched
        bad = AGENT.format(greeting="x") + "turn: {max_silence_ms: 5}\n"
        async with http.put(url + "/api/v1/agents/desk", headers=auth, json={"yaml": bad}) as r:
            problem = await r.json()
            assert r.status in (400, 422) and "max_silence_ms" in json.dumps(problem)
        assert "First version." in (tmp_path / "agents" / "desk.yaml").read_text()
        # a valid update is written to the YAML file and new calls use it at once
        async with http.put(url + "/api/v1/agents/desk", headers=auth,
                            json={"yaml": "name: desk\n" + AGENT.format(greeting="Second version.")}) as r:
            assert r.status == 200, await r.text()
        assert "Second version." in (tmp_path / "agents" / "desk.yaml").read_text()
        call_id, said = await greeting(http, url)
        assert said == "Second version."
        await asyncio.sleep(0.2)
        assert daemon.calls is not None
        await daemon.calls.flush()
        async with http.get(url + f"/api/v1/calls/{call_id}", headers=auth) as r:
            call = await r.json()
            assert r.status == 200 and call["agent"] == "desk" and call["turns"][0]["text"] == "Second version."
        async with http.get(url + "/api/v1/functions", headers=auth) as r:
            names = [f["name"] for f in (await r.json())["functions"]]
            assert {"get_current_time", "calculate", "end_call"} <= set(names)
        async with http.post(url + "/api/v1/functions/calculate/execute", headers=auth,
                             json={"arguments": {"expression": "6*7"}}) as r:
            assert r.status == 200 and (await r.json())["result"] == 42
        async with http.post(url + "/api/v1/calls", headers=auth, json={"agent": "desk", "to": "sip:a@127.0.0.1"}) as r:
            assert r.status == 501  # no SIP listener in this daemon


async def test_web_token_for_the_playground(daemon: Daemon) -> None:
    key = await create_key(daemon.db, "web", ["calls:write"])
    url = f"http://127.0.0.1:{daemon.http_port}"
    auth = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(url + "/api/v1/calls/web-token", headers=auth, json={"agent": "desk", "ttl_s": 60}) as r:
            body = await r.json()
            assert r.status == 201, body
            assert body["talk_url"] == f"/talk/desk?token={body['token']}" and body["expires_at"] > 0
        async with http.post(url + "/api/v1/calls/web-token", headers=auth, json={"agent": "nobody"}) as r:
            assert r.status == 404
        async with http.post(url + "/api/v1/calls/web-token", json={"agent": "desk"}) as r:
            assert r.status == 401
        # the token opens the playground page for that agent
        async with http.get(url + body["talk_url"]) as r:
            assert r.status == 200 and "text/html" in r.headers["Content-Type"]
