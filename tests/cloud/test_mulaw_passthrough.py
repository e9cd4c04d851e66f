"""A Twilio Media Streams call with Deepgram at mu-law 8 kHz (asked for, or chosen by the
default `auto` because the call carries mu-law): the caller's G.711 bytes reach Deepgram
exactly as Twilio sent them (no decode, resample and re-encode on the way)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from tests.cloud.fake_deepgram import FakeDeepgram
from tests.daemons import LOCAL_VENDORS, start_daemon
from tests.net.test_twilio import Platform, _call_id, _record
from tests.synth import silence, voiced
from voxd.media.audio import resample
from voxd.proto.g711 import ulaw_encode

AGENT = """
greeting: Hi.
stt: {{engine: deepgram, base_url: "{url}", options: {{{encoding}finalize_timeout_s: 2.0}}}}
llm: {{engine: dialog}}
voice: {{engine: fake}}
turn: {{detector: silence, max_silence_ms: 400}}
"""


@pytest.mark.parametrize("encoding", ["encoding: mulaw, ", ""])
async def test_twilio_mulaw_reaches_deepgram_byte_for_byte(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           encoding: str) -> None:
    monkeypatch.setenv("DEEPGRAM_API_KEY", "dg-k")
    dg = await FakeDeepgram({140: "What time is it?"}).start()
    d = await start_daemon(tmp_path, {"caller": AGENT.format(url=dg.url, encoding=encoding)}, **LOCAL_VENDORS)
    speech = silence(0.6) + voiced(1.0, f0=140) + silence(1.2)
    sent = ulaw_encode(resample(np.frombuffer(speech, "<i2"), 16000, 8000))  # what Platform.say sends
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(f"http://127.0.0.1:{d.http_port}/media/twilio") as ws:
            p = Platform(ws, "MZMU")
            await p.start("caller")
            await p.wait_for("mark")
            call_id = _call_id(d, "MZMU")
            await p.say(speech)
            await asyncio.sleep(0.5)
            await p.send("stop", stop={})
            await asyncio.wait_for(p.reader, 5)
        rec = await _record(d, call_id)
    finally:
        await d.stop()
        await dg.stop()
    assert [t["text"] for t in rec["turns"] if t["speaker"] == "caller"] == ["What time is it?"]
    assert (dg.conns[0].query["encoding"], dg.conns[0].query["sample_rate"]) == ("mulaw", "8000")
    got = bytes(dg.conns[0].audio)
    assert len(got) >= 8000  # the whole utterance (1 s) and its preroll
    assert got in sent  # one contiguous run of Twilio's own bytes
