"""Telnyx media streaming (bidirectional, rtp mode) through a real daemon on 127.0.0.1.

The client plays Telnyx, speaking its documented protocol: `connected`, then `start`
(stream_id, call_control_id, from/to, custom_parameters, media_format), `media` with
base64 RTP payloads (track, chunk, timestamp), `dtmf`, echoed `mark`s, `stop`; and
it reads voxd's `media`, `mark` and `clear` back. Same transport code as Twilio's
stream (the one websocket leg); only the serializer differs.
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
from tests.net.test_twilio import _record
from tests.synth import silence, voiced
from voxd.app import Daemon
from voxd.media.audio import dbfs, resample
from voxd.proto.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

ENCODE = {"PCMU": ulaw_encode, "PCMA": alaw_encode}
DECODE = {"PCMU": ulaw_decode, "PCMA": alaw_decode}


@pytest.fixture
async def daemon(tmp_path: Path) -> Any:
    d = await start_daemon(tmp_path, {"fakey": time_agent(), "talker": talker_agent()})
    yield d
    await d.stop()


class Telnyx:
    """A scripted Telnyx media stream: one call over one websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, stream_id: str, codec: str = "PCMU",
                 echo_delay_s: float = 0.0) -> None:
        self.ws = ws
        self.stream_id = stream_id
        self.codec = codec
        self.echo_delay_s = echo_delay_s
        self.events: list[dict[str, Any]] = []
        self.audio = bytearray()  # what voxd sent, as wire bytes
        self.got = asyncio.Event()
        self._seq = 0
        self._chunk = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.reader = asyncio.create_task(self._read())

    async def send(self, event: str, **body: Any) -> None:
        self._seq += 1
        await self.ws.send_str(json.dumps({"event": event, "sequence_number": str(self._seq),
                                           "stream_id": self.stream_id, **body}))

    async def start(self, agent: str | None, encoding: str | None = None) -> None:
        await self.ws.send_str(json.dumps({"event": "connected", "version": "1.0.0"}))
        params = {"agent": agent} if agent else {}
        await self.send("start", start={
            "user_id": "3E6F995F-85F7-4705-9741-53B116D28237", "call_control_id": "v3:cc-" + self.stream_id,
            "call_session_id": "sess-" + self.stream_id, "from": "+13122010094", "to": "+13122123456",
            "tags": [], "client_state": "", "custom_parameters": params,
            "media_format": {"encoding": encoding or self.codec, "sample_rate": 8000, "channels": 1}})

    async def say(self, pcm16k: bytes) -> None:
        """Caller audio in 20 ms media frames, paced in real time."""
        wire = ENCODE[self.codec](resample(np.frombuffer(pcm16k, "<i2"), 16000, 8000))
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for i in range(0, len(wire), 160):
            self._chunk += 1
            await self.send("media", media={"track": "inbound", "chunk": str(self._chunk),
                                            "timestamp": str(self._chunk * 20),
                                            "payload": base64.b64encode(wire[i : i + 160]).decode()})
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
            if ev["event"] == "media":
                self.audio += base64.b64decode(ev["media"]["payload"])
            else:
                self.events.append(ev)
            if ev["event"] == "mark":
                t = asyncio.create_task(self._echo(ev["mark"]["name"]))
                self._tasks.add(t)
                t.add_done_callback(self._tasks.discard)
            elif ev["event"] == "clear":
                for t in list(self._tasks):
                    t.cancel()
            self.got.set()

    async def _echo(self, name: str) -> None:
        await asyncio.sleep(self.echo_delay_s)
        if not self.ws.closed:
            await self.send("mark", mark={"name": name})


def _call_id(daemon: Daemon, stream_id: str) -> str:
    assert daemon.calls is not None
    for cid, s in daemon.calls.active.items():
        if s.record.metadata.get("stream_id") == stream_id:
            return cid
    raise AssertionError(f"no active call for {stream_id}")


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
async def test_telnyx_call_with_speech_digits_and_stop(daemon: Daemon, codec: str) -> None:
    url = f"http://127.0.0.1:{daemon.http_port}/media/telnyx"
    sid = "32DE0DEA-" + codec
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        p = Telnyx(ws, sid, codec)
        await p.start("fakey")
        await p.wait_for("mark")
        call_id = _call_id(daemon, sid)
        await p.say(silence(1.5))  # let the greeting play out
        assert len(p.audio) >= 8000 * 0.9  # "Hello and welcome." is ~1.1 s of 8 kHz G.711
        assert dbfs(DECODE[codec](bytes(p.audio))) > -40  # in the stream's own codec: not noise
        await p.say(voiced(0.8) + silence(0.8))
        await p.send("dtmf", dtmf={"digit": "7"})
        await p.say(silence(2.0))
        await p.send("stop", stop={"user_id": "u", "call_control_id": "v3:cc-" + sid})
        await asyncio.wait_for(p.reader, 5)
    assert all(ev.get("stream_id") == sid for ev in p.events)
    rec = await _record(daemon, call_id)
    assert rec["transport"] == "telnyx" and rec["end_reason"] == "caller_hangup" and rec["ended_by"] == "caller"
    assert rec["from_uri"] == "+13122010094" and rec["to_uri"] == "+13122123456"
    assert rec["metadata"]["call_control_id"] == "v3:cc-" + sid and rec["metadata"]["codec"] == codec
    assert [(d["digit"], d["source"]) for d in rec["dtmf"]] == [("7", "telnyx")]
    texts = [(t["speaker"], t["text"]) for t in rec["turns"]]
    assert ("caller", "what time is it") in texts and texts[0] == ("bot", "Hello and welcome.")
    assert any(s == "bot" and t.startswith("It's ") for s, t in texts)
    assert rec["metadata"]["marks_echoed"] > 0


async def test_telnyx_barge_in_clears_and_keeps_only_what_was_heard(daemon: Daemon) -> None:
    url = f"http://127.0.0.1:{daemon.http_port}/media/telnyx?agent=talker"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        p = Telnyx(ws, "TX2", echo_delay_s=0.6)
        await p.start(None)  # the agent comes from the URL
        await p.wait_for("mark")
        call_id = _call_id(daemon, "TX2")
        session = daemon.calls.active[call_id]  # type: ignore[union-attr]
        await p.say(silence(2.5))
        await p.say(voiced(1.0))
        clear = await p.wait_for("clear", within_s=5)
        assert clear == {"event": "clear", "stream_id": "TX2"}
        await p.say(silence(1.0))
        bot = session.record.turns[0]
        assert bot.interrupted and bot.heard_text is not None
        words, heard = bot.text.split(), bot.heard_text.split()
        assert 0 < len(heard) < len(words) and words[: len(heard)] == heard
        await p.send("stop", stop={})
        await asyncio.wait_for(p.reader, 5)
    rec = await _record(daemon, call_id)
    assert rec["interruptions"] >= 1 and rec["end_reason"] == "caller_hangup"
    assert rec["metadata"]["frames_taken_back"] >= 10  # the 600 ms the platform had not played


async def test_telnyx_refuses_what_it_cannot_carry(daemon: Daemon) -> None:
    url = f"http://127.0.0.1:{daemon.http_port}/media/telnyx"
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(url) as ws:
            p = Telnyx(ws, "TX3")
            await p.start("fakey", encoding="OPUS")
            await asyncio.wait_for(p.reader, 5)
            assert ws.close_code == 1008 and not p.events
        async with http.ws_connect(url) as ws:
            p = Telnyx(ws, "TX4")
            await p.start("nobody")
            await asyncio.wait_for(p.reader, 5)
            assert ws.close_code == 1008 and not p.events
        async with http.ws_connect(url) as ws:
            await ws.send_str(json.dumps({"event": "connected", "version": "1.0.0"}))
            await ws.send_str("{not json")
            await ws.receive()
            assert ws.close_code == 1008
