"""Scripted, instant engines for tests and benchmarks (`engine: fake` in agent YAML).

They do no model work, so timing tests on the virtual clock are exact and
benchmarks measure voxd's own overhead.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence

import numpy as np

from voxd.media.frame import AudioChunk, AudioFrame
from voxd.providers.base import (
    LanguageModel,
    LLMEvent,
    Message,
    SpeechToText,
    STTStream,
    TextDelta,
    TextToSpeech,
    ToolCall,
    ToolCallsRequested,
    ToolSpec,
)
from voxd.providers.engines import BuildContext, EngineSpec, FreeOptions, register


class FakeSTTStream(STTStream):
    def __init__(self, owner: FakeSTT) -> None:
        self.owner = owner
        self.samples = 0

    def push(self, frame: AudioFrame) -> None:
        self.samples += len(frame.pcm) // 2

    async def finalize(self) -> str:
        self.samples = 0
        return self.owner.next_transcript()

    def reset(self) -> None:
        self.samples = 0


class FakeSTT(SpeechToText):
    """Returns the scripted transcripts in order, then repeats the last (or the default)."""

    name = "fake-stt"

    def __init__(self, transcripts: Sequence[str] = ("what time is it",)) -> None:
        self.transcripts = list(transcripts)
        self._i = 0

    def next_transcript(self) -> str:
        if not self.transcripts:
            return ""
        t = self.transcripts[min(self._i, len(self.transcripts) - 1)]
        self._i += 1
        return t

    def stream(self, carried: str | None = None) -> STTStream:
        return FakeSTTStream(self)


Step = str | list[ToolCall]


class FakeLLM(LanguageModel):
    """Plays scripted steps: a string is streamed word by word; a list of ToolCalls
    ends the step with those calls. With no script, it echoes the last user text."""

    name = "fake-llm"

    def __init__(self, steps: Sequence[Step] = (), *, delay_s: float = 0.0) -> None:
        self.steps = list(steps)
        self.delay_s = delay_s
        self.calls: list[list[Message]] = []
        self._ids = itertools.count(1)

    async def stream(self, messages: list[Message], tools: list[ToolSpec]) -> AsyncIterator[LLMEvent]:
        self.calls.append(list(messages))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.steps:
            step = self.steps.pop(0)
        else:
            last = next((m.content for m in reversed(messages) if m.role == "user"), "")
            step = f"You said: {last}."
        if isinstance(step, str):
            for word in step.split(" "):
                yield TextDelta(word + " ")
        else:
            yield ToolCallsRequested(tuple(step))


class FakeTTS(TextToSpeech):
    """A tone whose length follows the text (60 ms per character), in 100 ms chunks."""

    name = "fake-tts"

    def __init__(self, sample_rate: int = 16_000, ms_per_char: float = 60.0) -> None:
        self.sample_rate = sample_rate
        self.ms_per_char = ms_per_char
        t = np.arange(sample_rate // 10) / sample_rate
        self._chunk = AudioChunk((np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes())
        self.texts: list[str] = []

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        self.texts.append(text)
        total = int(len(text) * self.ms_per_char / 100)
        for _ in range(max(1, total)):
            yield self._chunk


# ---------------------------------------------------------------- registration
# `engine: fake` in every role; `options:` go to the constructor as they are.


def _stt(cfg: object, opts: FreeOptions, ctx: BuildContext) -> FakeSTT:
    return FakeSTT(**opts.given())


def _llm(cfg: object, opts: FreeOptions, ctx: BuildContext) -> FakeLLM:
    return FakeLLM(list(opts.given().get("steps", [])))


def _tts(cfg: object, opts: FreeOptions, ctx: BuildContext) -> FakeTTS:
    return FakeTTS(**opts.given())


register(EngineSpec("stt", "fake", _stt, shared=False))
register(EngineSpec("llm", "fake", _llm, shared=False))
register(EngineSpec("tts", "fake", _tts, shared=False))
