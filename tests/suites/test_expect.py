"""Expectation matching on a step's window: each unmet expectation is one readable sentence."""

from __future__ import annotations

from typing import Any

import pytest

from voxd.core.calllog import CallRecord, ToolCallRecord, Turn, TurnLatency
from voxd.suites.expect import ToolSeen, Window, check, mark, same_value, window_since, words
from voxd.suites.judge import parse_verdict
from voxd.suites.model import Step


def step(**kw: Any) -> Step:
    return Step.model_validate({"say": "hi", **kw})


def test_words_ignores_case_and_punctuation() -> None:
    assert words("We're open Monday to Friday, nine A.M.!") == "were open monday to friday nine a m"


@pytest.mark.parametrize(("want", "got", "same"), [
    ("12*7", "12 * 7", True), (84, "84", True), ("84", 84.0, True), ("Tuesday", "tuesday", True),
    ({"a": 1}, {"a": 1, "b": 2}, True), ({"a": 1}, {"b": 1}, False), ([1, 2], [1, 2], True),
    ([1, 2], [2, 1], False), (True, 1, False), ("12*7", "12*8", False), (None, None, True), (None, 0, False),
])
def test_same_value(want: Any, got: Any, same: bool) -> None:
    assert same_value(want, got) is same


def test_tool_expectations() -> None:
    w = Window(replies=["That's 84."], tools=[ToolSeen("calculate", {"expression": "12 * 7"}, 84)])
    assert check(step(expect={"tool": "calculate", "args": {"expression": "12*7"}}), w) == []
    assert check(step(expect={"tool": "get_current_time"}), w) == [
        'expected a call to get_current_time, the bot called calculate({"expression": "12 * 7"})']
    assert check(step(expect={"tool": "calculate", "args": {"expression": "5+3"}}), w) == [
        'calculate was called with {"expression": "12 * 7"}, expected arguments {"expression": "5+3"}']
    assert check(step(expect={"tool": "calculate", "error": True}), w) == [
        "calculate was expected to fail, it returned 84"]
    assert check(step(no_tool=True), w) == ['expected no function call, the bot called calculate({"expression": "12 * 7"})']
    assert check(step(expect={"tool": "end_call", "count": 0}), w) == []


def test_a_tool_run_twice_fails_count_one() -> None:
    w = Window(tools=[ToolSeen("get_current_time", {}), ToolSeen("get_current_time", {})])
    assert check(step(expect={"tool": "get_current_time", "count": 1}), w) == [
        "get_current_time was called 2 times, expected 1"]


def test_tool_error_expectations() -> None:
    w = Window(tools=[ToolSeen("calculate", {"expression": "10/0"}, None, "division by zero")])
    assert check(step(expect={"tool": "calculate", "error": True}), w) == []
    assert check(step(expect={"tool": "calculate", "error": "by zero"}), w) == []
    assert check(step(expect={"tool": "calculate", "error": False}), w) == ["calculate failed: division by zero"]
    assert check(step(expect={"tool": "calculate", "error": "overflow"}), w) == [
        "calculate was expected to fail with 'overflow', got: division by zero"]


def test_reply_expectations() -> None:
    w = Window(replies=["We're open Monday to Friday, nine AM to six PM."])
    assert check(step(reply_contains=["monday", "FRIDAY"], reply_matches=r"nine\s+AM"), w) == []
    assert check(step(reply_contains=["Saturday", "Friday"]), w) == [
        "reply lacks 'Saturday': the bot said \"We're open Monday to Friday, nine AM to six PM.\""]
    assert check(step(reply_not_contains="monday"), w)[0].startswith("reply must not contain 'monday'")
    assert check(step(reply_matches="closed"), w)[0].startswith("reply does not match /closed/")
    assert check(step(no_reply=True), w)[0].startswith("expected no reply: the bot said")
    assert check(step(reply_contains="x"), Window()) == ["reply lacks 'x': the bot said nothing"]


def test_call_expectations() -> None:
    w = Window(transfers=["sip:sales@127.0.0.1"], hung_up=False, latencies_ms=[900.0, 1300.0], interruptions=1)
    assert check(step(transferred=True, hung_up=False, interrupted=True), w) == []
    assert check(step(transferred="sip:sales@127.0.0.1"), w) == []
    assert check(step(transferred="sip:support@127.0.0.1"), w) == [
        "expected a transfer to sip:support@127.0.0.1, got sip:sales@127.0.0.1"]
    assert check(step(transferred=False), w) == ["expected no transfer, the call was transferred to sip:sales@127.0.0.1"]
    assert check(step(hung_up=True), w) == ["expected the bot to hang up, the call is still up"]
    assert check(step(max_latency_ms=1000), w) == [
        "reply latency 1300 ms > 1000 ms (end of caller speech -> first bot audio)"]
    assert check(step(max_latency_ms=2000), w) == []
    assert check(step(max_latency_ms=2000), Window())[0].startswith("max_latency_ms: no reply to a caller turn")
    assert check(step(no_interruption=True), w) == [
        "the bot was interrupted (1 interruption(s)); expected it to carry on"]
    assert check(step(interrupted=True), Window()) == [
        "expected the caller to cut the bot short, the bot was not interrupted"]
    assert check(step(single_turn=True), Window(heard=["What time?", "Is it?"])) == [
        "the caller's words were taken as 2 turns, expected one: 'What time?' | 'Is it?'"]
    assert check(step(single_turn=True), Window(heard=["What time is it?"])) == []
    assert check(step(single_turn=True), Window(heard=["What time?"], bot_over_caller_ms=420)) == [
        "the bot answered before the caller had finished (420 ms of its voice over the caller's words; "
        "heard 'What time?')"]
    assert check(step(hung_up=False), Window(hung_up=True)) == ["the bot hung up, expected the call to go on"]


def test_window_since_a_mark() -> None:
    rec = CallRecord(id="c", agent="a", agent_version="1", transport="harness")
    rec.turns.append(Turn(0, "bot", "Hello!", 0.0, source="greeting"))
    transfers: list[str] = []
    m = mark(rec, transfers)
    rec.turns.append(Turn(1, "caller", "what time is it", 1.0))
    bot = Turn(2, "bot", "It's noon.", 2.0, source="reply",
               latency=TurnLatency(endpoint_ms=400.0, first_audio_ms=350.5))
    bot.tool_calls.append(ToolCallRecord("get_current_time", {}, {"spoken": "noon"}))
    rec.turns.append(bot)
    rec.interruptions = 1
    transfers.append("sip:x@127.0.0.1")
    w = window_since(m, rec, transfers, hung_up=True)
    assert w.heard == ["what time is it"]
    assert w.replies == ["It's noon."]
    assert [t.name for t in w.tools] == ["get_current_time"]
    assert w.latencies_ms == [750.5]
    assert (w.transfers, w.hung_up, w.interruptions) == (["sip:x@127.0.0.1"], True, 1)


@pytest.mark.parametrize(("text", "verdict"), [
    ('{"verdict": "pass", "reason": "it confirmed Tuesday at 3"}', "pass"),
    ('Sure! {"verdict": "FAIL", "reason": "no time was given"}', "fail"),
    ("Pass - the booking was confirmed", "pass"),
    ("no.", "fail"),
    ("I cannot tell", "error"),
])
def test_judge_verdicts(text: str, verdict: str) -> None:
    assert parse_verdict("s", text).verdict == verdict
