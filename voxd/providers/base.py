"""Typed interfaces every speech and language engine implements.

The call session sees only these: an STT stream that takes the caller's audio (one
typed 20 ms `AudioFrame` at a time) and returns a transcript when the turn ends, a
language model that streams text and tool calls, and a TTS engine that streams
`AudioChunk`s (PCM, plus the voice's own G.711 bytes when it makes them) for a
piece of text. Local engines
and cloud engines are interchangeable behind them, and all are cancellable: the
session cancels the task that iterates them on barge-in.
"""

from __future__ import annotations

import abc
import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from voxd.media.frame import AudioChunk, AudioFrame

NO_PRICES: Mapping[str, float] = MappingProxyType({})


class ProviderError(Exception):
    """An engine failed. `retryable` says whether trying again (or a fallback) may help."""

    def __init__(self, provider: str, message: str, *, retryable: bool = True) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.retryable = retryable


# ---------------------------------------------------------------- speech to text


class STTStream(abc.ABC):
    """One caller turn's worth of recognition, reused across turns of a call."""

    on_interim: Callable[[str], None] | None = None

    @abc.abstractmethod
    def push(self, frame: AudioFrame) -> None:
        """20 ms of caller audio: `frame.pcm` is 16-bit mono PCM at the pipeline rate
        (16 kHz). Where the transport had them, `frame.payload` holds the same audio as
        the call carried it (`frame.codec`, e.g. "PCMU": G.711 mu-law, 8 kHz): an engine
        that takes that codec sends those bytes as they are (`frame.payload_in("PCMU")`)
        instead of resampling and re-encoding the PCM."""

    @abc.abstractmethod
    async def finalize(self) -> str:
        """The caller's turn ended: return the final transcript of the audio since the
        last finalize/reset, and start a new utterance."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Drop buffered audio (speech that turned out not to be a turn)."""

    def speculate(self) -> None:  # noqa: B027 - optional hook
        """The caller paused; the turn may be over. An engine that decodes whole
        utterances may start on the audio so far, so that `finalize()` has it sooner
        when only this pause's silence follows."""

    def drop_speculation(self) -> None:  # noqa: B027 - optional hook
        """The caller spoke again: whatever `speculate()` started no longer covers the turn."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release per-call resources."""


class SpeechToText(abc.ABC):
    name: str = "stt"
    # per-engine price overrides (USD per unit) from agent YAML; the list prices are the
    # engine's registration (voxd.providers.engines), set by the factory, read by CallUsage
    prices: ClassVar[Mapping[str, float]] = NO_PRICES

    @abc.abstractmethod
    def stream(self, carried: str | None = None) -> STTStream:
        """A recogniser for one call. `carried` is the codec the call's wire carries (its
        SDP name, as in `AudioFrame.codec`: "PCMU" for a PCMU SIP call, Twilio, Telnyx),
        for an engine that can take that audio as is; None when there is none."""

    async def warm_up(self) -> None:  # noqa: B027 - optional hook
        """Load models before the first call (off the event loop)."""


# ---------------------------------------------------------------- language model


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]
    raw_arguments: str = ""


@dataclass
class Message:
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None


def tool_call_from_json(call_id: str, name: str, raw: str) -> ToolCall:
    """Parse streamed tool-call arguments; bad JSON becomes an argument error the
    registry will report back to the LLM."""
    try:
        args: Any = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError:
        args = {"__invalid_json__": raw[:200]}
    if not isinstance(args, dict):
        args = {"__invalid_json__": raw[:200]}
    return ToolCall(call_id, name, args, raw)


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCallsRequested:
    calls: tuple[ToolCall, ...]


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


LLMEvent = TextDelta | ToolCallsRequested | Usage


@runtime_checkable
class StructuredOutput(Protocol):
    """A language model that can be held to a JSON Schema (response_format json_schema,
    a sampling grammar): the post-call analysis asks it for one JSON document."""

    async def complete_json(self, messages: list[Message], schema: dict[str, Any], name: str) -> tuple[str, Usage]:
        """The model's reply (text that should be JSON of ``schema``) and its usage;
        raises ProviderError."""
        ...


class LanguageModel(abc.ABC):
    """Streams one assistant step. If the step ends in tool calls, the session runs
    them, appends the results to `messages`, and calls `stream` again."""

    name: str = "llm"
    prices: ClassVar[Mapping[str, float]] = NO_PRICES  # as SpeechToText.prices

    @abc.abstractmethod
    def stream(self, messages: list[Message], tools: list[ToolSpec]) -> AsyncIterator[LLMEvent]: ...

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        pass


# ---------------------------------------------------------------- text to speech


class TextToSpeech(abc.ABC):
    name: str = "tts"
    prices: ClassVar[Mapping[str, float]] = NO_PRICES  # as SpeechToText.prices
    sample_rate: int = 16_000

    @abc.abstractmethod
    def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        """Yield `text` as speech, first chunk as soon as possible: `chunk.pcm` is 16-bit
        mono PCM at `self.sample_rate`; a voice whose output is a wire codec (G.711
        mu-law) also sets `chunk.payload`/`chunk.codec` to its own bytes, which a leg
        carrying that codec sends untouched."""

    async def warm_up(self) -> None:  # noqa: B027 - optional hook
        pass
