"""Slow functions inside a turn: the filler line, and barge-in while a function runs.
These run on the real-time clock (the function sleeps in real time)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.call.helpers import make_session
from tests.synth import silence, voiced
from voxd.call.driver import drive, frames_of
from voxd.providers.base import ToolCall
from voxd.tools.registry import Tool, ToolContext


def slow_tool(seconds: float, interruptible: bool, log: list[str]) -> Tool:
    async def handler(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        log.append("started")
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            log.append("cancelled")
            raise
        log.append("finished")
        return {"order": "shipped"}

    return Tool("lookup_order", "Look up an order", {"type": "object", "properties": {}}, handler,
                timeout_s=10, interruptible=interruptible)


AGENT = {"greeting": None, "tools": ["lookup_order"], "filler_after_ms": 200,
         "turn": {"detector": "silence", "max_silence_ms": 300}, "interruption": {"min_speech_ms": 200}}


def session_with(tool: Tool, steps: list[Any], transcripts: list[str]) -> Any:
    s, _control, _events, tts, llm = make_session(AGENT, transcripts=transcripts, steps=steps)
    s.tools.registry.register(tool)
    return s, tts, llm


async def test_filler_is_said_once_while_a_slow_function_runs() -> None:
    log: list[str] = []
    s, tts, _ = session_with(slow_tool(0.8, True, log), [[ToolCall("t1", "lookup_order", {})], "Your order has shipped."],
                             ["where is my order"])
    await drive(s, frames_of(voiced(0.6) + silence(4.0)), virtual=False, tail_s=0.5)
    assert tts.texts == ["One moment while I check that.", "Your order has shipped."]
    bot = s.record.turns[-1]
    assert bot.text == "One moment while I check that. Your order has shipped."
    assert [(t.name, t.result) for t in bot.tool_calls] == [("lookup_order", {"order": "shipped"})]
    assert log == ["started", "finished"]


async def test_fast_function_gets_no_filler() -> None:
    s, tts, _ = session_with(slow_tool(0.01, True, []), [[ToolCall("t1", "lookup_order", {})], "Shipped."], ["order"])
    await drive(s, frames_of(voiced(0.6) + silence(2.0)), virtual=False, tail_s=0.3)
    assert tts.texts == ["Shipped."]


async def barge_in_during_tool(interruptible: bool) -> tuple[Any, list[str], Any]:
    log: list[str] = []
    s, _tts, llm = session_with(
        slow_tool(1.5, interruptible, log),
        [[ToolCall("t1", "lookup_order", {})], "Sure, go ahead."],
        ["where is my order", "actually wait"],
    )
    # question, turn ends ~0.9 s, tool runs to ~2.4 s; the caller talks over the filler at 1.4 s
    caller = voiced(0.6) + silence(0.8) + voiced(0.8) + silence(3.0)
    await drive(s, frames_of(caller), virtual=False, tail_s=0.5)
    return s, log, llm


async def test_barge_in_cancels_an_interruptible_function() -> None:
    s, log, llm = await barge_in_during_tool(True)
    assert log == ["started", "cancelled"]
    first_bot = next(t for t in s.record.turns if t.speaker == "bot")
    assert first_bot.interrupted and not first_bot.tool_calls
    # the context stays well formed: the tool call has an answer saying it was cancelled
    slot = next(m for m in s.messages if m.role == "tool")
    assert json.loads(slot.content) == {"error": "cancelled: the caller interrupted"}
    assert s.record.turns[-1].text == "Sure, go ahead."
    roles = [m.role for m in llm.calls[-1]]
    assert roles[-4:] == ["assistant", "tool", "assistant", "user"] or roles[-3:] == ["assistant", "tool", "user"]


async def test_barge_in_lets_a_non_interruptible_function_finish() -> None:
    s, log, _ = await barge_in_during_tool(False)
    assert log == ["started", "finished"]
    first_bot = next(t for t in s.record.turns if t.speaker == "bot")
    assert first_bot.interrupted
    assert [(t.name, t.result) for t in first_bot.tool_calls] == [("lookup_order", {"order": "shipped"})]
    slot = next(m for m in s.messages if m.role == "tool")
    assert json.loads(slot.content) == {"result": {"order": "shipped"}}
