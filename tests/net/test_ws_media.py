"""The daemon's websocket media transport, through a real HTTP listener."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.daemons import start_daemon, time_agent
from tests.synth import silence, voiced
from voxd.app import Daemon


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    d = await start_daemon(tmp_path, {"fakey": time_agent()})
    yield d
    await d.stop()


async def collect(ws: aiohttp.ClientWebSocketResponse, until: str, limit_s: float = 10.0) -> tuple[list[dict], int]:
    events: list[dict] = []
    audio = 0
    async with asyncio.timeout(limit_s):
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                audio += len(msg.data)
            elif msg.type == aiohttp.WSMsgType.TEXT:
                ev = json.loads(msg.data)
                events.append(ev)
                if ev["type"] == until:
                    break
    return events, audio


async def test_call_over_websocket(daemon: Daemon) -> None:
    url = f"http://127.0.0.1:{daemon.http_port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "/healthz") as r:
            assert (await r.json())["agents"] == ["fakey"]
        async with http.ws_connect(url + "/media/voxd?agent=fakey&sample_rate=8000") as ws:
            started = json.loads((await ws.receive()).data)
            assert started["type"] == "started" and started["sample_rate"] == 8000
            events, audio = await collect(ws, "transcript")
            assert events[-1] == {"type": "transcript", "speaker": "bot", "text": "Hello and welcome.", "interrupted": False}
            assert audio > 8000 * 2 * 0.5  # greeting audio came back at 8 kHz
            # caller speech at 8 kHz, sent faster than real time: voxd paces it
            import numpy as np

            from voxd.media.audio import resample

            speech = resample(np.frombuffer(voiced(0.8) + silence(1.0), "<i2"), 16000, 8000).tobytes()
            for i in range(0, len(speech), 1600):
                await ws.send_bytes(speech[i : i + 1600])
            await ws.send_str("not json")
            await ws.send_str(json.dumps({"type": "dtmf", "digit": "5"}))
            events, audio = await collect(ws, "transcript")
            assert {"type": "error", "message": "unknown or malformed message"} in events
            events2, _ = await collect(ws, "transcript")
            texts = [(e["speaker"], e["text"]) for e in events + events2 if e["type"] == "transcript"]
            assert ("caller", "what time is it") in texts
            assert any(s == "bot" and t.startswith("It's ") for s, t in texts)
            call_id = started["call_id"]
            assert call_id in daemon.calls.active  # type: ignore[union-attr]
            await ws.send_str(json.dumps({"type": "stop"}))
            events, _ = await collect(ws, "end")
            assert events[-1] == {"type": "end", "reason": "caller_hangup"}
    assert daemon.calls is not None
    await daemon.calls.flush()
    from voxd.store.calls import CallRepository

    rec = await CallRepository(daemon.db).get(call_id)
    assert rec is not None and rec["end_reason"] == "caller_hangup" and rec["transport"] == "websocket"
    assert [d["digit"] for d in rec["dtmf"]] == ["5"]


async def test_bad_requests_are_refused_cleanly(daemon: Daemon) -> None:
    url = f"http://127.0.0.1:{daemon.http_port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "/media/voxd?sample_rate=123", headers={"Upgrade": "websocket", "Connection": "Upgrade"}) as r:
            assert r.status == 400
        async with http.get(url + "/media/voxd?agent=nobody") as r:
            assert r.status == 404
        # a client that drops mid-call: the call is ended and recorded, the daemon keeps serving
        ws = await http.ws_connect(url + "/media/voxd")
        started = json.loads((await ws.receive()).data)
        await ws.close()
        for _ in range(100):
            if started["call_id"] not in daemon.calls.active:  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.05)
        assert started["call_id"] not in daemon.calls.active  # type: ignore[union-attr]
        async with http.get(url + "/healthz") as r:
            assert r.status == 200
