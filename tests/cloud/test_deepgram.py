"""Deepgram streaming STT through the real deepgram-sdk against a local /v1/listen server."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.cloud.fake_deepgram import FakeDeepgram
from tests.outbound import LOCAL
from tests.synth import silence, voiced
from voxd.media.audio import resample
from voxd.media.frame import AudioFrame
from voxd.proto.g711 import ulaw_encode
from voxd.providers.base import ProviderError
from voxd.providers.keys import Secret
from voxd.providers.stt.deepgram import DeepgramOptions, DeepgramStream, DeepgramSTT

WORDS = {140: "What time is it?", 220: "Thanks, goodbye."}


def frames(pcm: bytes) -> list[bytes]:
    return [pcm[i : i + 640] for i in range(0, len(pcm), 640)]


async def speak(stream: DeepgramStream, pcm: bytes) -> None:
    for f in frames(pcm):
        stream.push(AudioFrame(f))
        await asyncio.sleep(0)


@pytest.fixture
async def dg() -> FakeDeepgram:
    fake = await FakeDeepgram(WORDS).start()
    yield fake
    await fake.stop()


def engine(url: str, **opts: object) -> DeepgramSTT:
    return DeepgramSTT(Secret("dg-secret-key"), DeepgramOptions(**opts), base_url=url, policy=LOCAL.policy)  # type: ignore[arg-type]


async def test_turns_interims_and_clean_close(dg: FakeDeepgram) -> None:
    stt = engine(dg.url)
    s = stt.stream()
    interims: list[str] = []
    s.on_interim = interims.append
    await asyncio.wait_for(s.connected.wait(), 5)
    await speak(s, silence(0.2) + voiced(1.0, f0=140) + silence(0.5))
    assert await s.finalize() == "What time is it?"
    await speak(s, voiced(0.8, f0=220) + silence(0.1))
    assert await s.finalize() == "Thanks, goodbye."
    assert await s.finalize() == ""  # nothing said since
    await s.aclose()
    conn = dg.conns[0]
    q = conn.query
    assert (q["model"], q["encoding"], q["sample_rate"], q["interim_results"]) == ("nova-3", "linear16", "16000", "true")
    assert (q["endpointing"], q["utterance_end_ms"], q["vad_events"]) == ("300", "1000", "true")
    assert conn.headers["Authorization"] == "Token dg-secret-key"
    assert conn.messages.count("Finalize") == 2 and conn.messages[-1] == "CloseStream"
    assert conn.close_code == 1000 and len(dg.conns) == 1
    assert interims and interims[0] in ("What time", "What time is")
    assert s.request_ids and abs(s.audio_s_sent - 2.6) < 0.05
    assert "dg-secret-key" not in repr(stt) and "dg-secret-key" not in repr(stt._key)


async def test_keepalive_while_silent(dg: FakeDeepgram) -> None:
    s = engine(dg.url, keepalive_s=0.05).stream()
    await asyncio.wait_for(s.connected.wait(), 5)
    await asyncio.sleep(0.3)
    await s.aclose()
    assert dg.conns[0].messages.count("KeepAlive") >= 3


async def test_reset_discards_rejected_audio(dg: FakeDeepgram) -> None:
    s = engine(dg.url).stream()
    await speak(s, voiced(0.4, f0=220))
    s.reset()  # it was a cough, not a turn
    await speak(s, silence(0.1) + voiced(1.0, f0=140) + silence(0.1))
    assert await s.finalize() == "What time is it?"
    await s.aclose()


@pytest.mark.parametrize("fault", ["drop_1011", "malformed_json"])
async def test_drop_mid_utterance_reconnects_without_losing_the_turn(fault: str) -> None:
    kw = {"drop_after_s": 0.8} if fault == "drop_1011" else {"malformed_after_s": 0.8}
    fake = await FakeDeepgram(WORDS, **kw).start()  # type: ignore[arg-type]
    try:
        s = engine(fake.url).stream()
        await speak(s, silence(0.2) + voiced(1.2, f0=140) + silence(0.2))
        assert await s.finalize() == "What time is it?"
        if fault == "drop_1011":
            assert s.reconnects == 1 and len(fake.conns) == 2 and fake.conns[0].close_code == 1011
            # the second socket got the whole unconfirmed utterance again
            assert fake.conns[1].audio_bytes >= int(1.2 * 32000)
        else:  # the SDK skips a message it cannot parse; the socket and the turn carry on
            assert s.reconnects == 0 and len(fake.conns) == 1
        await speak(s, voiced(0.6, f0=220) + silence(0.1))
        assert await s.finalize() == "Thanks, goodbye."
        await s.aclose()
    finally:
        await fake.stop()


async def test_unreachable_server_fails_the_stream() -> None:
    fake = await FakeDeepgram(WORDS, reject_status=503).start()
    try:
        s = engine(fake.url, max_reconnects=1).stream()
        await speak(s, voiced(0.5))
        with pytest.raises(ProviderError):
            await s.finalize()
        assert s.error is not None
        await s.aclose()
    finally:
        await fake.stop()


async def test_a_dead_stream_tries_again_for_a_later_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    import voxd.providers.stt.deepgram as dgmod

    fake = await FakeDeepgram(WORDS, reject_status=503).start()
    try:
        s = engine(fake.url, max_reconnects=0).stream()
        await speak(s, voiced(0.5))
        with pytest.raises(ProviderError):
            await s.finalize()
        buffered = len(s._buf)
        await speak(s, voiced(0.5))
        assert len(s._buf) == buffered  # nothing piles up while dead
        fake.reject_status = None  # Deepgram is back
        monkeypatch.setattr(dgmod, "REVIVE_AFTER_S", 0.0)
        await speak(s, silence(0.1) + voiced(1.0, f0=220) + silence(0.1))
        assert await s.finalize() == "Thanks, goodbye."
        await s.aclose()
    finally:
        await fake.stop()


async def test_no_from_finalize_after_speech_final_costs_no_seconds() -> None:
    """If Deepgram sends nothing for a Finalize with only silence left, a turn it already
    closed with speech_final is returned after a short grace, not the full timeout."""
    fake = await FakeDeepgram(WORDS, quiet_finalize=True).start()
    try:
        s = engine(fake.url, finalize_timeout_s=5.0).stream()
        loop = asyncio.get_running_loop()
        for phrase, f0 in (("What time is it?", 140), ("Thanks, goodbye.", 220)):
            await speak(s, voiced(1.0, f0=f0) + silence(0.6))
            await asyncio.sleep(0.2)  # the speech_final result arrives
            t0 = loop.time()
            assert await s.finalize() == phrase
            assert loop.time() - t0 < 1.0
        await s.aclose()
    finally:
        await fake.stop()


async def test_mulaw_8k_sends_a_quarter_of_the_bytes(dg: FakeDeepgram) -> None:
    s = engine(dg.url, encoding="mulaw").stream()
    await speak(s, silence(0.2) + voiced(1.0, f0=140) + silence(0.5))
    assert await s.finalize() == "What time is it?"
    await s.aclose()
    q = dg.conns[0].query
    assert (q["encoding"], q["sample_rate"]) == ("mulaw", "8000")
    assert abs(dg.conns[0].audio_bytes - 1.7 * 8000) < 400 and abs(s.audio_s_sent - 1.7) < 0.05


async def test_a_g711_calls_own_mulaw_goes_out_untouched(dg: FakeDeepgram) -> None:
    """With encoding mulaw, audio the transport hands over as mu-law (a PCMU or Twilio call)
    is sent byte for byte, not resampled and re-encoded; frames without it still are."""
    pcm = silence(0.2) + voiced(1.0, f0=140) + silence(0.5)
    mulaw = ulaw_encode(resample(np.frombuffer(pcm, "<i2"), 16000, 8000))
    s = engine(dg.url, encoding="mulaw").stream()
    for i, f in enumerate(frames(pcm)):
        s.push(AudioFrame(f, mulaw[i * 160 : (i + 1) * 160], "PCMU"))
        await asyncio.sleep(0)
    assert await s.finalize() == "What time is it?"
    s.push(AudioFrame(bytes(640)))  # no mu-law for this frame (e.g. concealment): encoded from the PCM
    await s.aclose()
    got = bytes(dg.conns[0].audio)
    assert got[: len(mulaw)] == mulaw and s.passthrough_bytes == len(mulaw)
    assert abs(len(got) - len(mulaw) - 160) <= 2  # the encoded frame (its resampler keeps a few samples back)


async def test_auto_encoding_follows_what_the_call_carries(dg: FakeDeepgram) -> None:
    """The default, `auto`: a call that carries mu-law (PCMU, Twilio) is sent as mu-law
    8 kHz, its own bytes untouched; any other call as 16 kHz linear16."""
    pcm = silence(0.2) + voiced(1.0, f0=140) + silence(0.5)
    mulaw = ulaw_encode(resample(np.frombuffer(pcm, "<i2"), 16000, 8000))
    stt = engine(dg.url)
    assert stt.options.encoding == "auto"
    g711 = stt.stream("PCMU")
    for i, f in enumerate(frames(pcm)):
        g711.push(AudioFrame(f, mulaw[i * 160 : (i + 1) * 160], "PCMU"))
        await asyncio.sleep(0)
    assert await g711.finalize() == "What time is it?"
    await g711.aclose()
    other = stt.stream(None)
    await speak(other, pcm)
    assert await other.finalize() == "What time is it?"
    await other.aclose()
    first, second = dg.conns
    assert (first.query["encoding"], first.query["sample_rate"]) == ("mulaw", "8000")
    assert bytes(first.audio) == mulaw and g711.passthrough_bytes == len(mulaw)
    assert (second.query["encoding"], second.query["sample_rate"]) == ("linear16", "16000")
    assert bytes(second.audio) == pcm


async def test_an_explicit_encoding_wins_over_the_call(dg: FakeDeepgram) -> None:
    s = engine(dg.url, encoding="linear16").stream("PCMU")
    await speak(s, silence(0.2) + voiced(0.6, f0=140) + silence(0.4))
    await s.finalize()
    await s.aclose()
    assert dg.conns[0].query["encoding"] == "linear16"


def test_an_unknown_encoding_is_refused() -> None:
    with pytest.raises(ValueError, match="encoding 'mulow'"):
        DeepgramOptions(encoding="mulow")  # type: ignore[arg-type]


async def test_linear16_ignores_the_mulaw(dg: FakeDeepgram) -> None:
    pcm = silence(0.2) + voiced(1.0, f0=140) + silence(0.5)
    s = engine(dg.url).stream()
    for f in frames(pcm):
        s.push(AudioFrame(f, b"\xff" * 160, "PCMU"))
        await asyncio.sleep(0)
    assert await s.finalize() == "What time is it?"
    await s.aclose()
    assert bytes(dg.conns[0].audio) == pcm and s.passthrough_bytes == 0
