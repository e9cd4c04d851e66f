"""ElevenLabs speaking `ulaw_8000` on a mu-law leg: the bytes the voice made reach the
wire exactly as ElevenLabs sent them (no decode, resample up, resample down and
re-encode on the way); on a leg of another codec the same voice is played from its PCM.
The STT-side twin is test_mulaw_passthrough.py."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from tests.cloud.fake_elevenlabs import FakeElevenLabs, tone
from tests.daemons import LOCAL_VENDORS, start_daemon
from tests.net.test_twilio import Platform, _call_id, _record
from voxd.call.reply import synthesize_into
from voxd.media import codecs
from voxd.media.frame import AudioChunk, AudioFrame
from voxd.media.playout import Playout
from voxd.proto.g711 import ulaw_encode
from voxd.providers.base import TextToSpeech
from voxd.providers.fakes import FakeTTS
from voxd.providers.fallback import FallbackTTS
from voxd.providers.pricing import CallUsage
from voxd.providers.tts.elevenlabs import SynthesisFailed

AGENT = """
greeting: Hello there, how can I help you today?
stt: {{engine: fake}}
llm: {{engine: dialog}}
voice: {{engine: elevenlabs, voice_id: v1, base_url: "{url}", output_format: ulaw_8000}}
"""


class Listener(Platform):
    """The Twilio platform, keeping every media byte the bot sent."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, sid: str) -> None:
        self.wire = bytearray()
        super().__init__(ws, sid)

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            ev = json.loads(msg.data)
            if ev["event"] == "media":
                self.wire += base64.b64decode(ev["media"]["payload"])
            else:
                self.events.append(ev)
                if ev["event"] == "mark":
                    await self.send("mark", mark={"name": ev["mark"]["name"]})  # played at once
            self.got.set()


async def test_elevenlabs_mulaw_reaches_a_twilio_call_byte_for_byte(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ELEVENLABS_API_KEY", "xi-k")
    el = await FakeElevenLabs().start()
    d = await start_daemon(tmp_path, {"caller": AGENT.format(url=el.url)}, **LOCAL_VENDORS)
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(f"http://127.0.0.1:{d.http_port}/media/twilio") as ws:
            p = Listener(ws, "MZTTS")
            await p.start("caller")
            await p.wait_for("mark")  # the greeting is under way
            call_id = _call_id(d, "MZTTS")
            session = d.calls.active[call_id]  # type: ignore[union-attr]
            async with asyncio.timeout(10):  # the greeting, played in real time (2.3 s)
                # the daemon's record has no event to wait on: polled, as _record does
                while not (session.record.turns and session.record.turns[-1].ended_at):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            await p.send("stop", stop={})
            await asyncio.wait_for(p.reader, 5)
        rec = await _record(d, call_id)
    finally:
        await d.stop()
        await el.stop()
    assert el.sessions[0].query["output_format"] == "ulaw_8000"
    sent = bytes(el.sessions[0].audio)
    assert len(sent) == int(len("Hello there, how can I help you today? ") * 0.06 * 8000)
    assert sent in bytes(p.wire)  # one contiguous run of ElevenLabs' own bytes, untouched
    bot = [t for t in rec["turns"] if t["speaker"] == "bot"]
    assert bot[0]["text"] == "Hello there, how can I help you today?" and not bot[0]["interrupted"]


class MulawVoice(TextToSpeech):
    """A voice whose output is G.711 mu-law (as ElevenLabs `ulaw_8000`), counting nothing
    but what it made: 8 kHz PCM plus the same audio as mu-law bytes."""

    name = "mulaw-voice"
    sample_rate = 8_000

    def __init__(self) -> None:
        self.made = bytearray()

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        for word in text.split():
            pcm = tone(len(word) + 1, 8000, hz=300.0 + 40 * len(word))
            ulaw = ulaw_encode(pcm)
            self.made += ulaw
            yield AudioChunk(pcm.tobytes(), ulaw, "PCMU")


async def _played(voice: TextToSpeech, carries: str | None, text: str, *backups: TextToSpeech) -> list[AudioFrame]:
    playout = Playout(carries=carries)
    tts = FallbackTTS([voice, *backups], CallUsage({}))  # as a call binds its voice
    await synthesize_into(tts, text, playout)
    frames = []
    while (f := playout.next_frame()) is not None:
        frames.append(f)
    assert not playout.pending and playout.heard_text() == text
    return frames


async def test_a_mulaw_voice_on_a_pcmu_leg_is_never_transcoded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Count the codec work between the voice and the wire: the PCMU encoder passes every
    frame through (no 16 -> 8 kHz resample, no mu-law encode), and its output is the
    voice's bytes (the last frame padded with mu-law silence)."""
    voice = MulawVoice()
    frames = await _played(voice, "PCMU", "Twelve times seven is eighty four.")
    enc = codecs.PCMU.encoder()
    resampled = 0
    real = type(enc._down).process

    def counting(self: Any, pcm: bytes, last: bool = False) -> bytes:
        nonlocal resampled
        resampled += 1
        return real(self, pcm, last)

    monkeypatch.setattr(type(enc._down), "process", counting)
    wire = b"".join(enc.encode(f) for f in frames)
    assert enc.passed_through == len(frames) and resampled == 0
    made = bytes(voice.made)
    assert len(frames) == -(-len(made) // 160)
    assert wire[: len(made)] == made and set(wire[len(made):]) <= {0xFF}
    assert all(len(f.pcm) == 640 for f in frames)  # the pipeline still has its PCM (recorder tap)


@pytest.mark.parametrize("carries", ["L16", "PCMA", None])
async def test_on_any_other_leg_the_voice_plays_from_its_pcm(carries: str | None) -> None:
    frames = await _played(MulawVoice(), carries, "Twelve times seven is eighty four.")
    assert frames and all(f.payload is None for f in frames)
    pcm = b"".join(f.pcm for f in frames)
    assert np.abs(np.frombuffer(pcm, "<i2")).max() > 4000  # the voice, resampled to 16 kHz


async def test_a_pcm_voice_on_a_pcmu_leg_is_encoded_as_before() -> None:
    frames = await _played(FakeTTS(), "PCMU", "Hi.")
    assert frames and all(f.payload is None for f in frames)


class BreaksAfterOneWord(MulawVoice):
    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        async for chunk in super().synthesize(text):
            yield chunk
            raise SynthesisFailed(self.name, "socket closed (1011)", len(text.split()[0]) + 1)


async def test_a_pcm_fallback_mid_clause_plays_the_clause_from_its_pcm() -> None:
    """A mu-law voice fails after its first word and a PCM voice says the rest: the
    clause's audio is no longer one codec's bytes, so all of it is encoded from its PCM
    (none lost, none doubled)."""
    voice, backup = BreaksAfterOneWord(), FakeTTS(sample_rate=8000)
    frames = await _played(voice, "PCMU", "Twelve times seven.", backup)
    assert backup.texts == ["times seven."] and all(f.payload is None for f in frames)
    seconds = len(voice.made) / 8000 + len(backup.texts[0]) * 0.06 // 0.1 * 0.1
    assert abs(len(frames) * 0.02 - seconds) <= 0.04
