"""Twilio Media Streams transport and TwiML, through a real daemon on 127.0.0.1.

The client here plays the platform: it sends the protocol's frames, paces caller
audio in real time and echoes marks after a configurable playback delay (what a
platform's jitter buffer does), so "what the caller heard" can be checked exactly.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from tests.daemons import start_daemon, talker_agent, time_agent
from tests.synth import silence, voiced
from voxd.app import Daemon
from voxd.call.events import EngineError
from voxd.media.audio import resample
from voxd.proto.g711 import ulaw_encode
from voxd.store.calls import CallRepository


@pytest.fixture
async def daemon(tmp_path: Path) -> Any:
    d = await start_daemon(tmp_path, {"fakey": time_agent(), "talker": talker_agent()})
    yield d
    await d.stop()


class Platform:
    """A scripted Media Streams platform: one call over one websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, sid: str, echo_delay_s: float = 0.0) -> None:
        self.ws = ws
        self.sid = sid
        self.echo_delay_s = echo_delay_s
        self.events: list[dict[str, Any]] = []
        self.media_bytes = 0
        self.got = asyncio.Event()
        self.echoed: list[str] = []
        self._seq = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.reader = asyncio.create_task(self._read())

    async def send(self, event: str, **body: Any) -> None:
        self._seq += 1
        await self.ws.send_str(json.dumps({"event": event, "sequenceNumber": str(self._seq), "streamSid": self.sid, **body}))

    async def start(self, agent: str) -> None:
        await self.ws.send_str(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await self.send("start", start={
            "accountSid": "AC1", "streamSid": self.sid, "callSid": "CA" + self.sid, "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": {"agent": agent, "from": "+15550001"}})

    async def say(self, pcm16k: bytes) -> None:
        """Caller audio in 20 ms media frames, paced in real time."""
        ulaw = ulaw_encode(resample(np.frombuffer(pcm16k, "<i2"), 16000, 8000))
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for i in range(0, len(ulaw), 160):
            await self.send("media", media={"track": "inbound", "chunk": str(i // 160 + 1), "timestamp": str(i // 8),
                                            "payload": base64.b64encode(ulaw[i : i + 160]).decode()})
            await asyncio.sleep(max(0.0, t0 + (i // 160 + 1) * 0.02 - loop.time()))

    async def wait_for(self, kind: str, within_s: float = 10.0) -> dict[str, Any]:
        async with asyncio.timeout(within_s):
            while True:
                for ev in self.events:
                    if ev.get("event") == kind:
                        return ev
                self.got.clear()
                await self.got.wait()

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            ev = json.loads(msg.data)
            assert ev["streamSid"] == self.sid
            if ev["event"] == "media":
                self.media_bytes += len(base64.b64decode(ev["media"]["payload"]))
            else:
                self.events.append(ev)
            if ev["event"] == "mark":
                t = asyncio.create_task(self._echo(ev["mark"]["name"]))
                self._tasks.add(t)
                t.add_done_callback(self._tasks.discard)
            elif ev["event"] == "clear":
                for t in list(self._tasks):
                    t.cancel()  # dropped audio: its marks never come back as played
            self.got.set()

    async def _echo(self, name: str) -> None:
        await asyncio.sleep(self.echo_delay_s)
        if not self.ws.closed:
            self.echoed.append(name)
            await self.send("mark", mark={"name": name})


async def _record(daemon: Daemon, call_id: str) -> dict[str, Any]:
    for _ in range(200):
        if call_id not in daemon.calls.active:  # type: ignore[union-attr]
            break
        await asyncio.sleep(0.025)
    assert daemon.calls is not None
    await daemon.calls.flush()
    rec = await CallRepository(daemon.db).get(call_id)
    assert rec is not None
    return rec


def _call_id(daemon: Daemon, sid: str) -> str:
    assert daemon.calls is not None
    for cid, s in daemon.calls.active.items():
        if s.record.metadata.get("stream_sid") == sid:
            return cid
    raise AssertionError(f"no active call for {sid}")


async def test_call_with_speech_digits_and_stop(daemon: Daemon) -> None:
    url = f"http://127.0.0.1:{daemon.http_port}/media/twilio"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        p = Platform(ws, "MZ1")
        await p.start("fakey")
        await p.wait_for("mark")
        call_id = _call_id(daemon, "MZ1")
        await p.say(silence(1.5))  # let the greeting play out
        assert p.media_bytes >= 8000 * 0.9  # "Hello and welcome." in fake TTS is ~1.1 s of 8 kHz mu-law
        await p.say(voiced(0.8) + silence(0.8))
        await p.send("dtmf", dtmf={"track": "inbound_track", "digit": "7"})
        await p.say(silence(2.0))
        session = daemon.calls.active[call_id]  # type: ignore[union-attr]
        assert any(t.speaker == "bot" and t.text.startswith("It's ") for t in session.record.turns)
        await p.send("stop", stop={"accountSid": "AC1", "callSid": "CAMZ1"})
        await asyncio.wait_for(p.reader, 5)
    rec = await _record(daemon, call_id)
    assert rec["transport"] == "twilio" and rec["end_reason"] == "caller_hangup" and rec["ended_by"] == "caller"
    assert rec["from_uri"] == "+15550001" and rec["metadata"]["call_sid"] == "CAMZ1"
    assert [(d["digit"], d["source"]) for d in rec["dtmf"]] == [("7", "twilio")]
    texts = [(t["speaker"], t["text"]) for t in rec["turns"]]
    assert ("caller", "what time is it") in texts and texts[0] == ("bot", "Hello and welcome.")
    assert rec["metadata"]["marks_echoed"] > 0


async def test_barge_in_clears_and_keeps_only_what_was_heard(daemon: Daemon) -> None:
    """The platform plays 600 ms behind what voxd sent; the interrupted turn must not
    count those 600 ms as heard."""
    url = f"http://127.0.0.1:{daemon.http_port}/media/twilio"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        p = Platform(ws, "MZ2", echo_delay_s=0.6)
        await p.start("talker")
        await p.wait_for("mark")
        call_id = _call_id(daemon, "MZ2")
        session = daemon.calls.active[call_id]  # type: ignore[union-attr]
        await p.say(silence(2.5))
        await p.say(voiced(1.0))
        clear = await p.wait_for("clear", within_s=5)
        assert clear == {"event": "clear", "streamSid": "MZ2"}
        await p.say(silence(1.0))
        bot = session.record.turns[0]
        assert bot.interrupted and bot.heard_text is not None
        words = bot.text.split()
        heard = bot.heard_text.split()
        assert 0 < len(heard) < len(words) and words[: len(heard)] == heard
        assert any(m.role == "assistant" and m.content == bot.heard_text for m in session.messages)
        await p.send("stop", stop={})
        await asyncio.wait_for(p.reader, 5)
    rec = await _record(daemon, call_id)
    assert rec["interruptions"] >= 1 and rec["end_reason"] == "caller_hangup"
    # 600 ms was buffered when the bot paused at the caller's onset; the platform played
    # about 300 ms more before the interruption was confirmed (marks every 200 ms)
    assert 10 <= rec["metadata"]["frames_taken_back"] <= 40


async def test_bad_input_ends_only_that_call(daemon: Daemon) -> None:
    url = f"http://127.0.0.1:{daemon.http_port}/media/twilio"
    errors: list[EngineError] = []
    assert daemon.calls is not None
    daemon.calls.listeners.append(lambda ev: errors.append(ev) if isinstance(ev, EngineError) else None)
    async with aiohttp.ClientSession() as http:
        socks = [await http.ws_connect(url) for _ in range(4)]
        calls = [Platform(ws, f"MZB{i}") for i, ws in enumerate(socks)]
        for p in calls:
            await p.start("fakey")
        for p in calls:
            await p.wait_for("mark")
        ids = [_call_id(daemon, p.sid) for p in calls]
        await socks[0].send_str("{not json")
        await socks[1].send_bytes(b"\x00\x01binary")
        await socks[2].close()  # dropped without stop
        await calls[3].say(voiced(0.8) + silence(1.5))  # the healthy call carries on talking
        assert ids[3] in daemon.calls.active
        await calls[3].send("stop", stop={})
        for p in calls:
            await asyncio.wait_for(p.reader, 5)
        assert socks[0].close_code == 1008 and socks[1].close_code == 1008
        for ws in socks:
            await ws.close()
    recs = [await _record(daemon, cid) for cid in ids]
    assert [r["end_reason"] for r in recs] == ["protocol_error", "protocol_error", "connection_lost", "caller_hangup"]
    assert "not JSON" in recs[0]["metadata"]["error"] and "binary" in recs[1]["metadata"]["error"]
    assert all(r["ended_at"] for r in recs)
    assert sorted((e.record.id, e.role) for e in errors) == sorted((cid, "transport") for cid in ids[:3])
    assert errors[0].detail["end_reason"] in ("protocol_error", "connection_lost")
    assert any(t["speaker"] == "caller" for t in recs[3]["turns"])


async def test_twiml_points_at_the_stream(daemon: Daemon) -> None:
    base = f"http://127.0.0.1:{daemon.http_port}"
    async with aiohttp.ClientSession() as http:
        async with http.post(base + "/twiml/fakey", data={"From": "+1555<0>", "CallSid": "CA9"}) as r:
            assert r.status == 200 and r.content_type == "text/xml"
            xml = await r.text()
        assert f'<Stream url="ws://127.0.0.1:{daemon.http_port}/media/twilio">' in xml
        assert '<Parameter name="agent" value="fakey"/><Parameter name="from" value="+1555&lt;0&gt;"/>' in xml
        async with http.post(base + "/twiml/fakey", headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "voice.example"}) as r:
            assert '<Stream url="wss://voice.example/media/twilio">' in await r.text()
        async with http.post(base + "/twiml/nobody") as r:
            assert r.status == 404
        # a stream naming an unknown agent is refused before any call exists
        async with http.ws_connect(base + "/media/twilio") as ws:
            p = Platform(ws, "MZX")
            await p.start("nobody")
            await asyncio.wait_for(p.reader, 5)
            assert ws.close_code == 1008 and not p.events


async def test_hangup_waits_until_the_platform_played_the_audio(daemon: Daemon) -> None:
    url = f"http://127.0.0.1:{daemon.http_port}/media/twilio"
    assert daemon.calls is not None
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        p = Platform(ws, "MZH", echo_delay_s=0.5)
        await p.start("talker")
        await p.wait_for("mark")
        call_id = _call_id(daemon, "MZH")
        await p.say(silence(1.0))  # the greeting plays on; the first marks have come back
        assert p.echoed
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        assert await daemon.calls.end(call_id, "api_hangup")
        await asyncio.wait_for(p.reader, 5)
        waited = loop.time() - t0
        assert ws.close_code == 1000
    # the stream stayed open until the last mark came back (0.5 s behind), then voxd closed it
    assert 0.4 <= waited <= 3.0
    last = [e for e in p.events if e["event"] == "mark"][-1]
    assert last["mark"]["name"] in p.echoed  # voxd sent nothing after it, and closed once it was played
    rec = await _record(daemon, call_id)
    assert rec["end_reason"] == "api_hangup" and rec["ended_by"] == "system"


async def test_twilio_auth_token_guards_twiml_and_stream(daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib
    import hmac
    import re

    monkeypatch.setenv("VOXD_TWILIO_AUTH_TOKEN", "twilio-secret")
    base = f"http://127.0.0.1:{daemon.http_port}"
    form = {"CallSid": "CA77", "From": "+15550007", "To": "+15550100"}
    signed = base + "/twiml/fakey" + "".join(k + form[k] for k in sorted(form))  # Twilio's documented scheme
    sig = base64.b64encode(hmac.new(b"twilio-secret", signed.encode(), hashlib.sha1).digest()).decode()
    async with aiohttp.ClientSession() as http:
        async with http.post(base + "/twiml/fakey", data=form, headers={"X-Twilio-Signature": "AAAA"}) as r:
            assert r.status == 403
        async with http.post(base + "/twiml/fakey", data=form, headers={"X-Twilio-Signature": sig}) as r:
            assert r.status == 200
            token = re.search(r'name="token" value="([^"]+)"', await r.text()).group(1)  # type: ignore[union-attr]
        async with http.ws_connect(base + "/media/twilio") as ws:  # no token: refused
            p = Platform(ws, "MZT0")
            await p.start("fakey")
            await asyncio.wait_for(p.reader, 5)
            assert ws.close_code == 1008 and not p.events
        async with http.ws_connect(base + "/media/twilio") as ws:
            p = Platform(ws, "MZT1")
            await p.ws.send_str(json.dumps({"event": "start", "streamSid": "MZT1", "start": {
                "streamSid": "MZT1", "callSid": "CA77", "customParameters": {"agent": "fakey", "token": token},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}))
            await p.wait_for("mark")
            call_id = _call_id(daemon, "MZT1")
            assert "token" not in daemon.calls.active[call_id].record.metadata["custom_parameters"]  # type: ignore[union-attr]
            await p.send("stop", stop={})
            await asyncio.wait_for(p.reader, 5)
        async with http.ws_connect(base + "/media/twilio") as ws:  # the token was for one stream
            p = Platform(ws, "MZT2")
            await p.ws.send_str(json.dumps({"event": "start", "streamSid": "MZT2", "start": {
                "streamSid": "MZT2", "customParameters": {"agent": "fakey", "token": token}}}))
            await asyncio.wait_for(p.reader, 5)
            assert ws.close_code == 1008 and not p.events


async def test_twilio_settings_come_from_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """twilio.auth_token_env names the variable holding the auth token; http.public_url is the
    address Twilio signs and the stream URL it is told to open (behind a proxy)."""
    import hashlib
    import hmac

    monkeypatch.delenv("VOXD_PUBLIC_URL", raising=False)
    monkeypatch.setenv("ACME_TWILIO_TOKEN", "acme-secret")
    d = await start_daemon(tmp_path, {"fakey": time_agent()}, twilio={"auth_token_env": "ACME_TWILIO_TOKEN"},
                           http={"port": 0, "public_url": "https://voice.example.com/"})
    try:
        base = f"http://127.0.0.1:{d.http_port}"
        form = {"CallSid": "CA1", "From": "+15550001"}
        signed = "https://voice.example.com/twiml/fakey" + "".join(k + form[k] for k in sorted(form))
        sig = base64.b64encode(hmac.new(b"acme-secret", signed.encode(), hashlib.sha1).digest()).decode()
        async with aiohttp.ClientSession() as http:
            async with http.post(base + "/twiml/fakey", data=form) as r:
                assert r.status == 403  # the token is set, so unsigned requests are refused
            async with http.post(base + "/twiml/fakey", data=form, headers={"X-Twilio-Signature": sig}) as r:
                assert r.status == 200
                assert '<Stream url="wss://voice.example.com/media/twilio">' in await r.text()
    finally:
        await d.stop()


async def test_twilio_can_be_turned_off(tmp_path: Path) -> None:
    d = await start_daemon(tmp_path, {"fakey": time_agent()}, twilio={"enabled": False})
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{d.http_port}/twiml/fakey") as r:
            assert r.status == 404
    finally:
        await d.stop()
