"""Fallback chains: an engine role served by an ordered list of providers.

When a provider fails to connect, times out before its first byte, or errors
mid-stream, the chain switches to the next one for the rest of the call and the
caller hears nothing odd:

- STT: the turn's frames are kept since the last finalize/reset, so a failed
  recogniser's turn is replayed into the next one and transcribed there (frames as
  they came: a G.711 call's own bytes reach the next recogniser too).
- LLM: if nothing was yielded yet, the same step is retried on the next provider;
  if text was already spoken, the step ends where it was and the next step or
  turn uses the next provider.
- TTS: a clause whose voice fails before any audio is spoken by the next voice;
  after some audio, the next voice says only the words not yet voiced (when the
  provider reports them), resampled to the chain's rate. A voice's wire-codec bytes
  (`AudioChunk.payload`) are passed on untouched: they do not depend on the PCM rate.

The wrappers also time every operation (first byte/token/audio, duration, usage
units) into a `CallUsage`. `bind_call` gives a call its own wrappers around the
shared engines, so switches stick for that call only and land on its record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

from voxd.media.audio import StreamResampler
from voxd.media.frame import AudioChunk, AudioFrame
from voxd.providers.base import (
    LanguageModel,
    LLMEvent,
    Message,
    ProviderError,
    SpeechToText,
    STTStream,
    TextDelta,
    TextToSpeech,
    ToolCallsRequested,
    ToolSpec,
    Usage,
)
from voxd.providers.pricing import CallUsage, ProviderMetric, Switch

log = logging.getLogger("voxd.providers")

P = TypeVar("P")
REPLAY_S = 30.0  # turn audio kept for replay into a fallback recogniser
FRAME_S = 0.02  # an AudioFrame's length


def _ms(t0: float, t1: float | None = None) -> float:
    return round(((t1 if t1 is not None else time.perf_counter()) - t0) * 1000, 1)


def _as_provider_error(name: str, e: Exception) -> ProviderError:
    return e if isinstance(e, ProviderError) else ProviderError(name, f"{type(e).__name__}: {e}")


class _Chain:
    """Which provider of the list is in use, and the switch bookkeeping."""

    role = ""

    def __init__(self, providers: Sequence[Any], usage: CallUsage | None, sticky: bool) -> None:
        if not providers:
            raise ValueError("a fallback chain needs at least one provider")
        self.providers = list(providers)
        self.usage = usage
        self.sticky = sticky
        self.index = 0

    def _record(self, m: ProviderMetric) -> None:
        if self.usage is not None:
            self.usage.add(m)

    def _next(self, i: int, err: ProviderError) -> int | None:
        """Abandon provider i; the index to use now, or None when none is left."""
        nxt = i + 1 if i + 1 < len(self.providers) else None
        sw = Switch(self.role, self.providers[i].name, self.providers[nxt].name if nxt is not None else None, str(err))
        if self.usage is not None:
            self.usage.switched(sw)
        else:
            log.warning("%s", sw.message())
        if nxt is not None and self.sticky:
            self.index = max(self.index, nxt)
        return nxt


# ---------------------------------------------------------------- speech to text


class FallbackSTT(_Chain, SpeechToText):
    role = "stt"

    def __init__(self, providers: Sequence[SpeechToText], usage: CallUsage | None = None) -> None:
        super().__init__(providers, usage, sticky=True)
        self.name = self.providers[0].name

    def bind(self, usage: CallUsage) -> FallbackSTT:
        return FallbackSTT(self.providers, usage)

    def stream(self, carried: str | None = None) -> STTStream:
        return FallbackSTTStream(self, carried)

    async def warm_up(self) -> None:
        for p in self.providers:
            await p.warm_up()


class FallbackSTTStream(STTStream):
    def __init__(self, chain: FallbackSTT, carried: str | None = None) -> None:
        self.chain = chain
        self.carried = carried
        self.i = 0
        self._interim: Callable[[str], None] | None = None
        self._turn: deque[AudioFrame] = deque(maxlen=int(REPLAY_S / FRAME_S))
        self._closing: set[asyncio.Task[None]] = set()
        self._reconnects = 0
        self.stream = self._open(0)

    def _open(self, i: int) -> STTStream:
        while True:
            self.i = i
            try:
                s: STTStream = self.chain.providers[i].stream(self.carried)
                s.on_interim = self._interim
                return s
            except ProviderError as e:
                nxt = self.chain._next(i, e)
                if nxt is None:
                    raise
                i = nxt

    @property
    def on_interim(self) -> Callable[[str], None] | None:
        return self._interim

    @on_interim.setter
    def on_interim(self, fn: Callable[[str], None] | None) -> None:
        self._interim = fn
        if hasattr(self, "stream"):
            self.stream.on_interim = fn

    def _switch(self, err: ProviderError) -> bool:
        nxt = self.chain._next(self.i, err)
        if nxt is None:
            return False
        old, self.stream = self.stream, self._open(nxt)
        task = asyncio.ensure_future(old.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        for frame in self._turn:  # the turn so far, into the new recogniser
            self.stream.push(frame)
        return True

    def push(self, frame: AudioFrame) -> None:
        self._turn.append(frame)
        err = getattr(self.stream, "error", None)
        if isinstance(err, ProviderError) and self._switch(err):
            return  # the new stream got this frame with the replayed turn
        try:
            self.stream.push(frame)
        except ProviderError as e:
            self._switch(e)

    def reset(self) -> None:
        self._turn.clear()
        self.stream.reset()

    def speculate(self) -> None:
        self.stream.speculate()

    def drop_speculation(self) -> None:
        self.stream.drop_speculation()

    async def finalize(self) -> str:
        t0 = time.perf_counter()
        audio_s = len(self._turn) * FRAME_S
        while True:
            name = self.chain.providers[self.i].name
            before = getattr(self.stream, "reconnects", 0)
            try:
                text = await self.stream.finalize()
            except ProviderError as e:
                self.chain._record(ProviderMetric("stt", name, None, _ms(t0), {"audio_s": audio_s}, ok=False))
                if not self._switch(e):
                    raise
                continue
            units = {"audio_s": round(audio_s, 3)}
            if getattr(self.stream, "reconnects", 0) > before:
                units["reconnects"] = getattr(self.stream, "reconnects", 0) - before
            self.chain._record(ProviderMetric("stt", name, _ms(t0), _ms(t0), units))
            self._turn.clear()
            return text

    async def aclose(self) -> None:
        await self.stream.aclose()
        for t in list(self._closing):
            with contextlib.suppress(BaseException):
                await t


# ---------------------------------------------------------------- language model


class FallbackLLM(_Chain, LanguageModel):
    role = "llm"

    def __init__(self, providers: Sequence[LanguageModel], usage: CallUsage | None = None) -> None:
        super().__init__(providers, usage, sticky=True)

    @property
    def name(self) -> str:  # type: ignore[override]
        return str(self.providers[self.index].name)

    def bind(self, usage: CallUsage) -> FallbackLLM:
        self.usage = usage  # LLM chains are built per call already
        return self

    async def stream(self, messages: list[Message], tools: list[ToolSpec]) -> AsyncIterator[LLMEvent]:
        i = self.index
        while True:
            provider = self.providers[i]
            t0 = time.perf_counter()
            first: float | None = None
            units: dict[str, float] = {}
            try:
                async for ev in provider.stream(messages, tools):
                    if isinstance(ev, TextDelta | ToolCallsRequested) and first is None:
                        first = time.perf_counter()
                    elif isinstance(ev, Usage):
                        units = {"prompt_tokens": ev.prompt_tokens, "completion_tokens": ev.completion_tokens}
                    yield ev
            except Exception as e:
                err = _as_provider_error(provider.name, e)
                self._record(ProviderMetric("llm", provider.name, _ms(t0, first) if first else None, _ms(t0), units, ok=False))
                nxt = self._next(i, err)
                if first is not None:
                    return  # words were already spoken: end the step there, gracefully
                if nxt is None:
                    raise err from None
                i = nxt
                continue
            self._record(ProviderMetric("llm", provider.name, _ms(t0, first) if first else None, _ms(t0), units))
            return

    async def aclose(self) -> None:
        for p in self.providers:
            with contextlib.suppress(Exception):
                await p.aclose()


# ---------------------------------------------------------------- text to speech


class FallbackTTS(_Chain, TextToSpeech):
    """Shared by calls when unbound (each clause starts at the first voice);
    bound to a call, a switch lasts for the rest of the call."""

    role = "tts"

    def __init__(self, providers: Sequence[TextToSpeech], usage: CallUsage | None = None) -> None:
        super().__init__(providers, usage, sticky=usage is not None)

    @property
    def name(self) -> str:  # type: ignore[override]
        return str(self.providers[self.index].name)

    @property
    def sample_rate(self) -> int:  # type: ignore[override]
        return int(self.providers[0].sample_rate)

    def bind(self, usage: CallUsage) -> FallbackTTS:
        return FallbackTTS(self.providers, usage)

    async def warm_up(self) -> None:
        for p in self.providers:
            await p.warm_up()

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        i = self.index
        remaining = text
        while True:
            provider = self.providers[i]
            t0 = time.perf_counter()
            first: float | None = None
            rs = StreamResampler(provider.sample_rate, self.sample_rate)
            codec: str | None = None  # the voice's wire codec, if its chunks carry one
            try:
                async for chunk in provider.synthesize(remaining):
                    out = rs.process(chunk.pcm)
                    codec = chunk.codec if chunk.payload is not None else None
                    if out or chunk.payload:
                        first = first or time.perf_counter()
                        yield chunk if out is chunk.pcm else AudioChunk(out, chunk.payload, chunk.codec)
                tail = rs.process(b"", last=True)
                if tail:  # PCM of audio already yielded: its codec bytes are all out
                    yield AudioChunk(tail, b"" if codec is not None else None, codec)
            except Exception as e:
                err = _as_provider_error(provider.name, e)
                self._record(ProviderMetric("tts", provider.name, _ms(t0, first) if first else None, _ms(t0),
                                            {"characters": len(remaining)}, ok=False))
                nxt = self._next(i, err)
                if nxt is None:
                    raise err from None
                if first is not None:
                    spoken = getattr(err, "spoken_chars", None)
                    if spoken is None:
                        return  # unknown how much was heard: end the clause rather than repeat it
                    remaining = _rest_after(remaining, spoken)
                    if not remaining:
                        return
                i = nxt
                continue
            self._record(ProviderMetric("tts", provider.name, _ms(t0, first) if first else None, _ms(t0),
                                        {"characters": len(remaining)}))
            return


def _rest_after(text: str, spoken_chars: int) -> str:
    """The words of `text` not yet voiced, starting at a word boundary."""
    if spoken_chars >= len(text.rstrip()):
        return ""
    cut = text.rfind(" ", 0, spoken_chars + 1)
    return text[cut + 1 :].strip() if cut >= 0 else text.strip()


# ---------------------------------------------------------------- per call


def bind_call(
    stt: SpeechToText,
    llm: LanguageModel,
    tts: TextToSpeech,
    *,
    metadata: dict[str, Any],
    on_switch: Callable[[Switch], None] | None = None,
) -> tuple[FallbackSTT, FallbackLLM, FallbackTTS, CallUsage]:
    """Per-call wrappers around the call's engines: provider switches stick for this
    call, and usage/cost and switches are written into `metadata` (the call record's)."""
    usage = CallUsage(metadata, on_switch=on_switch)
    s = (stt if isinstance(stt, FallbackSTT) else FallbackSTT([stt])).bind(usage)
    m = (llm if isinstance(llm, FallbackLLM) else FallbackLLM([llm])).bind(usage)
    t = (tts if isinstance(tts, FallbackTTS) else FallbackTTS([tts])).bind(usage)
    for p in [*s.providers, *m.providers, *t.providers]:
        usage.set_prices(p.name, dict(p.prices))
    return s, m, t, usage
