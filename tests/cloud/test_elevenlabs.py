"""ElevenLabs stream-input synthesis against a local websocket server speaking the
documented protocol. (The SDK's own realtime client always rewrites the scheme to
wss://, so it cannot be pointed at a plain local server; its message models are.)"""

from __future__ import annotations

import asyncio

import pytest

from tests.cloud.fake_elevenlabs import MS_PER_CHAR, FakeElevenLabs
from tests.outbound import LOCAL
from voxd.providers.base import ProviderError
from voxd.providers.keys import Secret
from voxd.providers.tts.elevenlabs import ElevenLabsTTS, SynthesisFailed, text_chunks


@pytest.fixture
async def el() -> FakeElevenLabs:
    fake = await FakeElevenLabs().start()
    yield fake
    await fake.stop()


def tts(url: str, **kw: object) -> ElevenLabsTTS:
    return ElevenLabsTTS(Secret("xi-secret"), "voice123", base_url=url, policy=LOCAL.policy, **kw)  # type: ignore[arg-type]


async def audio(t: ElevenLabsTTS, text: str) -> bytes:
    return b"".join([c.pcm async for c in t.synthesize(text)])


def test_clause_chunks_end_in_one_space() -> None:
    assert text_chunks("Well, it's noon here. Anything else?") == ["Well, ", "it's noon here. ", "Anything else? "]
    assert text_chunks("no punctuation") == ["no punctuation "]


async def test_streams_pcm_with_the_documented_messages(el: FakeElevenLabs) -> None:
    t = tts(el.url, speed=1.1, model="eleven_turbo_v2_5")
    pcm = await audio(t, "Hello there, how can I help?")
    s = el.sessions[0]
    assert s.voice_id == "voice123" and s.api_key == "xi-secret"
    assert s.query["model_id"] == "eleven_turbo_v2_5" and s.query["output_format"] == "pcm_16000"
    assert s.init == {"text": " ", "voice_settings": {"speed": 1.1}, "generation_config": {"chunk_length_schedule": [50.0]}}
    assert [c["text"] for c in s.chunks] == ["Hello there, ", "how can I help? ", ""]
    assert s.chunks[-2].get("flush") is True and s.closed_by_client
    assert el.texts == ["Hello there, how can I help?"]
    assert abs(len(pcm) / 2 / 16000 - len(s.spoken) * MS_PER_CHAR / 1000) < 0.01
    assert "xi-secret" not in repr(t)


async def test_ulaw_8000_is_decoded_to_pcm(el: FakeElevenLabs) -> None:
    t = tts(el.url, output_format="ulaw_8000")
    pcm = await audio(t, "Hi.")
    assert t.sample_rate == 8000 and el.sessions[0].query["output_format"] == "ulaw_8000"
    assert len(pcm) == 2 * int(4 * MS_PER_CHAR / 1000 * 8000)


async def test_cancel_on_barge_in_closes_the_socket() -> None:
    fake = await FakeElevenLabs(chunk_delay_s=0.05).start()
    try:
        t = tts(fake.url)
        first = asyncio.Event()

        async def speak() -> None:
            async for _ in t.synthesize("A very long sentence that goes on and on, for quite a while indeed."):
                first.set()

        task = asyncio.ensure_future(speak())
        await asyncio.wait_for(first.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):
            if fake.sessions[0].aborted:
                break
            await asyncio.sleep(0.01)
        s = fake.sessions[0]
        assert s.aborted and not s.closed_by_client and len(s.spoken) < 30  # generation stopped early
    finally:
        await fake.stop()


@pytest.mark.parametrize(("fault", "message"), [
    ("stall", "no audio within 0.3s"), ("drop", "socket closed (1011)"),
    ("garbage", "malformed JSON"), ("quota", "quota"), ("reject", "HTTP 500"),
])
async def test_faults_become_provider_errors(fault: str, message: str) -> None:
    fake = await FakeElevenLabs([fault]).start()
    try:
        t = tts(fake.url, first_audio_timeout_s=0.3, idle_timeout_s=0.3)
        got = b""
        with pytest.raises(ProviderError) as e:
            async for c in t.synthesize("One two three four five six seven."):
                got += c.pcm
        assert message in str(e.value) and e.value.retryable
        if fault in ("drop", "garbage"):  # one chunk of three words was voiced before the failure
            assert isinstance(e.value, SynthesisFailed) and e.value.spoken_chars == len("One two three ")
            assert got
    finally:
        await fake.stop()
