"""What happened in one step of a scenario, and whether it is what the step expected.

Pure functions over plain data: the audio and text runners fill a `Window` from the
call record; `check` returns one readable sentence per unmet expectation.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from voxd.core.calllog import CallRecord
from voxd.suites.model import Step, ToolExpect


@dataclass
class ToolSeen:
    name: str
    arguments: dict[str, Any]
    result: Any = None
    error: str | None = None


@dataclass
class Window:
    """Everything the bot did between the start of a step and the start of the next."""

    replies: list[str] = field(default_factory=list)
    tools: list[ToolSeen] = field(default_factory=list)
    transfers: list[str] = field(default_factory=list)
    hung_up: bool = False
    latencies_ms: list[float] = field(default_factory=list)
    interruptions: int = 0
    interrupted_replies: int = 0
    heard: list[str] = field(default_factory=list)  # what the recogniser heard the caller say
    bot_over_caller_ms: float = 0.0  # the bot's sound while the caller was still saying this step's words
    # the bot's own text for its replies, when `replies` is what a recogniser heard on the wire (SIP)
    texts: list[str] = field(default_factory=list)

    @property
    def reply(self) -> str:
        return " ".join(r for r in self.replies if r)

    def to_dict(self) -> dict[str, Any]:
        return {
            "replies": self.replies, "heard": self.heard,
            "tools": [{"name": t.name, "arguments": t.arguments, "error": t.error,
                       "result": _jsonable(t.result)} for t in self.tools],
            "transfers": self.transfers, "hung_up": self.hung_up, "latencies_ms": self.latencies_ms,
            "interruptions": self.interruptions, "interrupted_replies": self.interrupted_replies,
            "bot_over_caller_ms": self.bot_over_caller_ms, **({"texts": self.texts} if self.texts else {}),
        }


def _jsonable(v: Any) -> Any:
    try:
        json.dumps(v)
        return v
    except (TypeError, ValueError):
        return str(v)


@dataclass
class Mark:
    """Where a record stood when a step began."""

    turns: int
    tool_calls: int
    interruptions: int
    transfers: int


def mark(record: CallRecord, transfers: list[str]) -> Mark:
    return Mark(len(record.turns), sum(len(t.tool_calls) for t in record.turns), record.interruptions, len(transfers))


def window_since(m: Mark, record: CallRecord, transfers: list[str], hung_up: bool) -> Window:
    """The window from mark ``m`` to now. Tool calls are counted across all turns, since
    a reply's turn may have begun before the step (a tool finishing late)."""
    w = Window(transfers=list(transfers[m.transfers:]), hung_up=hung_up,
               interruptions=record.interruptions - m.interruptions)
    all_tools = [tc for t in record.turns for tc in t.tool_calls]
    w.tools = [ToolSeen(tc.name, dict(tc.arguments), tc.result, tc.error) for tc in all_tools[m.tool_calls:]]
    for t in record.turns[m.turns:]:
        if t.speaker == "caller":
            w.heard.append(t.text)
            continue
        w.replies.append(t.text)
        if t.interrupted:
            w.interrupted_replies += 1
        la = t.latency
        if la is not None and la.endpoint_ms is not None and la.first_audio_ms is not None:
            w.latencies_ms.append(round(la.endpoint_ms + la.first_audio_ms, 1))
    # a reply that began before this step and was cut short in it
    if m.turns and record.turns[m.turns - 1].speaker == "bot" and record.turns[m.turns - 1].interrupted \
            and w.interruptions:
        w.interrupted_replies += 1
    return w


def words(text: str) -> str:
    """Lower case, punctuation gone, single spaces: "Nine A.M.!" -> "nine a m"."""
    return " ".join(re.sub(r"[^\w']+", " ", text.lower()).replace("'", "").split())


_DIGIT_WORDS = {w: str(i) for i, w in enumerate(
    ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"])}


def folded(text: str) -> str:
    """`words` with small numbers as digits ("nine to hang up" -> "9 to hang up"): a
    recogniser writes "nine" where the agent's text said "9", and the other way round."""
    return " ".join(_DIGIT_WORDS.get(w, w) for w in words(text).split())


def contains(reply: str, want: str) -> bool:
    """``want`` occurs in ``reply`` as words, or as words with small numbers folded."""
    w = words(want)
    return bool(w) and (w in words(reply) or folded(want) in folded(reply))


def _as_list(v: str | list[str] | None) -> list[str]:
    return [] if v is None else [v] if isinstance(v, str) else list(v)


def same_value(want: Any, got: Any) -> bool:
    """Argument equality as a tester means it: numbers by value ("84" == 84), strings
    without case or spacing ("12 * 7" == "12*7"), mappings as subsets, lists in order."""
    if isinstance(want, dict):
        return isinstance(got, dict) and all(k in got and same_value(v, got[k]) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(got, list) and len(want) == len(got) and all(map(same_value, want, got))
    if isinstance(want, bool) or isinstance(got, bool):
        return type(want) is type(got) and want == got
    wn, gn = _number(want), _number(got)
    if wn is not None and gn is not None:
        return abs(wn - gn) < 1e-9
    if want is None or got is None:
        return want is got
    return "".join(str(want).lower().split()) == "".join(str(got).lower().split())


def _number(v: Any) -> float | None:
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            return None
    return None


def _tool_problem(want: ToolExpect, seen: list[ToolSeen]) -> str | None:
    named = [t for t in seen if t.name == want.tool]
    called = ", ".join(f"{t.name}({json.dumps(t.arguments, default=str)})" for t in seen) or "nothing"
    if not named:
        if want.count == 0:
            return None
        return f"expected a call to {want.tool}, the bot called {called}"
    matching = [t for t in named if want.args is None or same_value(want.args, t.arguments)]
    if not matching:
        args = "; ".join(json.dumps(t.arguments, default=str) for t in named)
        return f"{want.tool} was called with {args}, expected arguments {json.dumps(want.args, default=str)}"
    if want.count is not None and len(matching) != want.count:
        return f"{want.tool} was called {len(matching)} times, expected {want.count}"
    if want.error is True and not any(t.error for t in matching):
        return f"{want.tool} was expected to fail, it returned {json.dumps(_jsonable(matching[0].result))}"
    if want.error is False and any(t.error for t in matching):
        return f"{want.tool} failed: {next(t.error for t in matching if t.error)}"
    if isinstance(want.error, str) and not any(t.error and want.error.lower() in t.error.lower() for t in matching):
        errs = "; ".join(t.error or "no error" for t in matching)
        return f"{want.tool} was expected to fail with {want.error!r}, got: {errs}"
    return None


def check(step: Step, w: Window) -> list[str]:
    """One readable sentence per expectation of ``step`` that ``w`` does not meet."""
    out: list[str] = []
    for want in step.tool_expects:
        problem = _tool_problem(want, w.tools)
        if problem:
            out.append(problem)
    if step.no_tool and w.tools:
        out.append("expected no function call, the bot called "
                   + ", ".join(f"{t.name}({json.dumps(t.arguments, default=str)})" for t in w.tools))
    said = f"the bot said {w.reply!r}" if w.reply else "the bot said nothing"
    text = " ".join(t for t in w.texts if t)
    if text and words(text) != words(w.reply):
        said += f" (heard on the line; its text was {text!r})"
    missing = [s for s in _as_list(step.reply_contains) if not contains(w.reply, s)]
    if missing:
        out.append(f"reply lacks {', '.join(repr(s) for s in missing)}: {said}")
    present = [s for s in _as_list(step.reply_not_contains) if contains(w.reply, s)]
    if present:
        out.append(f"reply must not contain {', '.join(repr(s) for s in present)}: {said}")
    if step.reply_matches is not None and not re.search(step.reply_matches, w.reply, re.IGNORECASE):
        out.append(f"reply does not match /{step.reply_matches}/: {said}")
    if step.no_reply and w.reply:
        out.append(f"expected no reply: {said}")
    if step.transferred is not None:
        if step.transferred is False and w.transfers:
            out.append(f"expected no transfer, the call was transferred to {w.transfers[0]}")
        elif step.transferred is True and not w.transfers:
            out.append(f"expected a transfer, there was none ({said})")
        elif isinstance(step.transferred, str) and step.transferred not in w.transfers:
            out.append(f"expected a transfer to {step.transferred}, got "
                       + (", ".join(w.transfers) if w.transfers else f"none ({said})"))
    if step.hung_up is not None and step.hung_up != w.hung_up:
        out.append("expected the bot to hang up, the call is still up" if step.hung_up
                   else "the bot hung up, expected the call to go on")
    if step.max_latency_ms is not None:
        slow = [ms for ms in w.latencies_ms if ms > step.max_latency_ms]
        if slow:
            out.append(f"reply latency {max(slow):.0f} ms > {step.max_latency_ms:.0f} ms "
                       "(end of caller speech -> first bot audio)")
        elif not w.latencies_ms:
            out.append(f"max_latency_ms: no reply to a caller turn was measured ({said})")
    if step.no_interruption and (w.interruptions or w.interrupted_replies):
        out.append(f"the bot was interrupted ({w.interruptions} interruption(s)); expected it to carry on")
    if step.interrupted is True and not (w.interruptions or w.interrupted_replies):
        out.append("expected the caller to cut the bot short, the bot was not interrupted")
    if step.single_turn and len(w.heard) != 1:
        pieces = " | ".join(repr(h) for h in w.heard) or "nothing"
        out.append(f"the caller's words were taken as {len(w.heard)} turns, expected one: {pieces}")
    elif step.single_turn and w.bot_over_caller_ms:
        out.append(f"the bot answered before the caller had finished ({w.bot_over_caller_ms:.0f} ms of its voice "
                   f"over the caller's words; heard {' | '.join(repr(h) for h in w.heard)})")
    if step.interrupted is False and (w.interruptions or w.interrupted_replies):
        out.append("the bot was interrupted, expected it not to be")
    return out
