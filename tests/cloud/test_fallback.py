"""Fallback wrappers on their own: switching rules, replay, resampling, metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from voxd.media.frame import AudioChunk, AudioFrame
from voxd.providers.base import LLMEvent, Message, ProviderError, STTStream, TextDelta, TextToSpeech, ToolSpec
from voxd.providers.fakes import FakeLLM, FakeSTT, FakeSTTStream, FakeTTS
from voxd.providers.fallback import FallbackLLM, FallbackSTT, FallbackTTS, _rest_after
from voxd.providers.pricing import CallUsage


class BrokenLLM(FakeLLM):
    name = "broken"

    def __init__(self, after_words: int | None = None) -> None:
        super().__init__(["one two three four"])
        self.after = after_words

    async def stream(self, messages: list[Message], tools: list[ToolSpec]) -> AsyncIterator[LLMEvent]:
        n = 0
        async for ev in super().stream(messages, tools):
            if self.after is None or n >= self.after:
                raise ProviderError(self.name, "boom")
            n += 1
            yield ev


class DeadStream(FakeSTTStream):
    error = ProviderError("dead", "connection lost")


class DeadSTT(FakeSTT):
    name = "dead"

    def stream(self, carried: str | None = None) -> STTStream:
        return DeadStream(self)


class SlowRateTTS(FakeTTS):
    name = "eight-k"


async def text(llm: FallbackLLM) -> str:
    return "".join([e.text async for e in llm.stream([Message("user", "hi")], []) if isinstance(e, TextDelta)])


async def test_llm_retries_the_step_on_the_next_provider_when_nothing_was_said() -> None:
    md: dict[str, object] = {}
    llm = FallbackLLM([BrokenLLM(), FakeLLM(["backup answer", "second"])], CallUsage(md))
    assert await text(llm) == "backup answer "
    assert await text(llm) == "second "  # sticky for the rest of the call
    assert md["provider_switches"][0]["to_provider"] == "fake-llm"  # type: ignore[index]


async def test_llm_ends_the_step_gracefully_after_words_were_said() -> None:
    llm = FallbackLLM([BrokenLLM(after_words=2), FakeLLM(["next turn"])])
    assert await text(llm) == "one two "
    assert await text(llm) == "next turn "


async def test_llm_chain_exhausted_raises() -> None:
    with pytest.raises(ProviderError):
        await text(FallbackLLM([BrokenLLM(), BrokenLLM()]))


async def test_stt_switches_as_soon_as_the_stream_reports_an_error_and_replays_the_turn() -> None:
    md: dict[str, object] = {}
    chain = FallbackSTT([DeadSTT(["never"]), FakeSTT(["hello"])], CallUsage(md))
    s = chain.stream()
    s.push(AudioFrame(bytes(640)))
    assert await s.finalize() == "hello"
    assert md["usage"]["providers"]["fake-stt"]["units"]["audio_s"] == 0.02  # type: ignore[index]
    await s.aclose()


async def test_tts_output_is_resampled_to_the_chain_rate() -> None:
    class Failing(TextToSpeech):
        name = "failing"

        async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
            raise ProviderError(self.name, "HTTP 500 on connect")
            yield AudioChunk(b"")

    backup = SlowRateTTS(sample_rate=8000)
    tts = FallbackTTS([Failing(), backup], CallUsage({}))
    pcm = b"".join([c.pcm async for c in tts.synthesize("Hello.")])
    assert tts.sample_rate == 16000 and backup.texts == ["Hello."]
    expected = int(len("Hello.") * 60 / 100) * 800 * 2 * 2  # 8 kHz chunks, upsampled x2
    assert abs(len(pcm) - expected) < 200


def test_rest_after_cuts_at_a_word_boundary() -> None:
    assert _rest_after("Hello there, this is Acme.", len("Hello there, this ")) == "is Acme."
    assert _rest_after("Hello there, this is Acme.", len("Hello there, th")) == "this is Acme."
    assert _rest_after("Hi.", 10) == ""
