"""One bot reply: LLM steps with tool calls, streamed clause by clause into TTS.

The LLM producer and the TTS consumer run as two tasks joined by a clause queue,
so speech starts while the LLM is still writing. The whole reply is one
cancellable unit: barge-in cancels it and the playout is cleared by the session.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from voxd.call.text import ClauseSplitter, strip_for_speech
from voxd.core.calllog import ToolCallRecord, Turn
from voxd.core.redact import default_redactor
from voxd.media.audio import SAMPLE_RATE, StreamResampler
from voxd.media.playout import Playout
from voxd.providers.base import (
    LanguageModel,
    Message,
    ProviderError,
    TextDelta,
    TextToSpeech,
    ToolCall,
    ToolCallsRequested,
    ToolSpec,
    Usage,
)
from voxd.tools.registry import ToolResult

MAX_TOOL_ROUNDS = 5

ToolRunner = Callable[[ToolCall], Awaitable[ToolResult]]


@dataclass
class ReplyMetrics:
    started: float = field(default_factory=time.perf_counter)
    first_token: float | None = None
    first_audio: float | None = None
    usage: Usage | None = None

    def ms(self, t: float | None) -> float | None:
        return None if t is None else (t - self.started) * 1000


async def synthesize_into(
    tts: TextToSpeech, text: str, playout: Playout, metrics: ReplyMetrics | None = None
) -> None:
    """Synthesise one clause and queue it for playout at the pipeline rate. A voice's
    own wire bytes (a mu-law voice) are kept when they are in the codec the call's leg
    carries (`playout.carries`): the leg then sends them untouched."""
    seg = playout.open_segment(text)
    rs = StreamResampler(tts.sample_rate, SAMPLE_RATE)
    try:
        async for chunk in tts.synthesize(text):
            pcm = rs.process(chunk.pcm)
            payload = chunk.payload_in(playout.carries)
            if pcm or payload:
                if metrics is not None and metrics.first_audio is None:
                    metrics.first_audio = time.perf_counter()
                playout.push(seg, pcm, payload, chunk.codec if payload is not None else None)
        tail = rs.process(b"", last=True)
        if tail:  # the resampler's last samples: PCM of audio already queued, bytes and all
            playout.push(seg, tail, b"" if seg.payload is not None else None, seg.codec)
    finally:
        playout.finish_segment(seg)


Voice = Callable[[str, Playout], Awaitable[None]]  # text -> queued on that playout (a call's TTS)


def voice_of(tts: TextToSpeech) -> Voice:
    """The call's voice, for audio that is not a reply of its own (an attended transfer's summary)."""

    async def say(text: str, playout: Playout) -> None:
        try:
            await synthesize_into(tts, text, playout)
        except ProviderError as e:
            raise VoiceError(str(e)) from e

    return say


class VoiceError(Exception):
    """The voice could not say it (its provider failed)."""


class ClauseSink(Protocol):
    """Where a reply's clauses go: a ``Speaker`` (audio) or a text conversation's transcript."""

    metrics: ReplyMetrics

    def say(self, clause: str) -> None: ...


class Speaker:
    """Turns a stream of clauses into queued audio, one clause at a time."""

    def __init__(self, tts: TextToSpeech, playout: Playout, metrics: ReplyMetrics) -> None:
        self.tts = tts
        self.playout = playout
        self.metrics = metrics
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.spoken: list[str] = []

    def say(self, clause: str) -> None:
        clause = strip_for_speech(clause)
        if clause:
            self.queue.put_nowait(clause)

    def done(self) -> None:
        self.queue.put_nowait(None)

    async def run(self) -> None:
        while (clause := await self.queue.get()) is not None:
            self.spoken.append(clause)
            await synthesize_into(self.tts, clause, self.playout, self.metrics)


@dataclass
class ToolPolicy:
    """How tools behave inside a reply: the filler line for slow ones, and which may be
    cancelled by barge-in (the others finish in the background, via `keep`)."""

    filler_after_s: float = 1.5
    filler: str = "One moment while I check that."
    interruptible: Callable[[str], bool] = lambda name: True
    keep: Callable[[asyncio.Future[Any]], None] = lambda fut: None


def _record(turn: Turn, call: ToolCall, res: ToolResult) -> None:
    turn.tool_calls.append(
        ToolCallRecord(
            name=res.name,
            arguments=default_redactor(res.arguments),
            result=res.result,
            error=res.error,
            started_at=time.time() - res.duration_ms / 1000,
            duration_ms=round(res.duration_ms, 2),
            call_id=call.id,
        )
    )


async def run_tools(
    calls: tuple[ToolCall, ...],
    run_tool: ToolRunner,
    speaker: ClauseSink,
    messages: list[Message],
    turn: Turn,
    policy: ToolPolicy | None = None,
) -> bool:
    """Run one round of tool calls concurrently; results go into `messages` in order.

    A round still running after `filler_after_s` gets the filler line, once. If the
    reply is cancelled (barge-in), interruptible tools are cancelled and their result
    says so; the others finish in the background and fill in their result in place,
    so the LLM context stays well-formed and keeps what they did.
    """
    p = policy or ToolPolicy()
    tasks = [asyncio.ensure_future(run_tool(c)) for c in calls]
    slots = [Message("tool", json.dumps({"pending": True}), tool_call_id=c.id, name=c.name) for c in calls]
    messages.extend(slots)
    filled = False
    try:
        if p.filler_after_s > 0 and p.filler:
            _, pending = await asyncio.wait(tasks, timeout=p.filler_after_s)
            if pending:
                speaker.say(p.filler)
                filled = True
        await asyncio.wait(tasks)  # unlike gather, cancelling this wait leaves the tools running
        results = [t.result() for t in tasks]
    except asyncio.CancelledError:
        for call, task, slot in zip(calls, tasks, slots, strict=True):
            if task.done() and not task.cancelled():
                slot.content = task.result().for_llm()
                _record(turn, call, task.result())
            elif p.interruptible(call.name):
                task.cancel()
                slot.content = json.dumps({"error": "cancelled: the caller interrupted"})
            else:
                task.add_done_callback(_fill(turn, call, slot))
                p.keep(task)
        raise
    for call, res, slot in zip(calls, results, slots, strict=True):
        slot.content = res.for_llm()
        _record(turn, call, res)
    return filled


def _fill(turn: Turn, call: ToolCall, slot: Message) -> Callable[[asyncio.Future[ToolResult]], None]:
    def done(task: asyncio.Future[ToolResult]) -> None:
        if task.cancelled() or task.exception() is not None:
            slot.content = json.dumps({"error": "the function did not complete"})
            return
        slot.content = task.result().for_llm()
        _record(turn, call, task.result())

    return done


async def run_llm_reply(
    llm: LanguageModel,
    messages: list[Message],
    tools: list[ToolSpec],
    speaker: ClauseSink,
    turn: Turn,
    run_tool: ToolRunner,
    policy: ToolPolicy | None = None,
) -> str:
    """Drive the LLM until it stops asking for tools. Appends the tool exchange to
    `messages` as it happens; returns the full text the LLM produced for speech."""
    splitter = ClauseSplitter()
    text_parts: list[str] = []
    for _ in range(MAX_TOOL_ROUNDS + 1):
        calls: tuple[ToolCall, ...] = ()
        step_text: list[str] = []
        async for ev in llm.stream(messages, tools):
            if isinstance(ev, TextDelta):
                if speaker.metrics.first_token is None:
                    speaker.metrics.first_token = time.perf_counter()
                step_text.append(ev.text)
                for clause in splitter.push(ev.text):
                    speaker.say(clause)
            elif isinstance(ev, ToolCallsRequested):
                if speaker.metrics.first_token is None:
                    speaker.metrics.first_token = time.perf_counter()
                calls = ev.calls
            elif isinstance(ev, Usage):
                speaker.metrics.usage = ev
        for clause in splitter.flush():
            speaker.say(clause)
        text_parts.append("".join(step_text))
        if not calls:
            break
        messages.append(Message("assistant", "".join(step_text), tool_calls=list(calls)))
        if await run_tools(calls, run_tool, speaker, messages, turn, policy):
            text_parts.append((policy or ToolPolicy()).filler)
    else:
        raise ProviderError(llm.name, f"more than {MAX_TOOL_ROUNDS} tool rounds in one turn", retryable=False)
    return " ".join(p.strip() for p in text_parts if p.strip())
