"""The offline "brain": a YAML-driven dialog engine behind the LanguageModel interface.

Intents are matched against the caller's words (regular expressions, keywords and
fuzzy similarity to example phrases); an intent can fill slots (asking for what is
missing), call a tool with arguments taken from the utterance, answer from a
template, or hand the caller to a keypad menu. It streams its answers word by word
and asks for tools exactly as an LLM does, so the session cannot tell the two apart.
"""

from __future__ import annotations

import difflib
import itertools
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from voxd.agents.schema import DialogConfig, Intent, LLMConfig
from voxd.core.placeholders import fill
from voxd.providers.base import (
    LanguageModel,
    LLMEvent,
    Message,
    TextDelta,
    ToolCall,
    ToolCallsRequested,
    ToolSpec,
)
from voxd.providers.engines import BuildContext, EngineSpec, FreeOptions, register
from voxd.providers.llm.extract import EXTRACTORS, normalise, words_to_numbers

OPEN_MENU = "open_keypad_menu"
_STOP = {"a", "an", "the", "is", "it", "to", "i", "you", "me", "my", "please", "can", "could", "would", "do", "of", "what", "what's", "whats"}


def _tokens(text: str) -> set[str]:
    return {w for w in normalise(text).split() if w not in _STOP}


def score_intent(intent: Intent, text: str) -> float:
    norm = normalise(text)
    if not norm:
        return 0.0
    for pat in intent.patterns:
        if re.search(pat, text, re.IGNORECASE):
            return 1.0
    best = 0.0
    toks = _tokens(norm)
    for ex in intent.examples:
        exn = normalise(ex)
        ratio = difflib.SequenceMatcher(None, norm, exn).ratio()
        ext = _tokens(exn)
        overlap = len(toks & ext) / len(ext) if ext else 0.0
        best = max(best, ratio, 0.9 * overlap)
    if intent.keywords:
        words = set(norm.split())
        hits = sum(1 for k in intent.keywords if (k.lower() in words if " " not in k else k.lower() in norm))
        if hits:
            best = max(best, min(1.0, 0.6 + 0.2 * hits))
    return best


def render(template: str, values: dict[str, Any]) -> str:
    """Fill {name} and {name.field} from values ({{ and }}: braces); unknown names render empty.
    The call's variables were filled in when the call started (voxd.agents.templates)."""
    return fill(template, values)


@dataclass
class _Pending:
    intent: Intent
    slots: dict[str, Any] = field(default_factory=dict)
    asked: str | None = None
    awaiting_tool: bool = False


class DialogEngine(LanguageModel):
    name = "dialog"

    def __init__(self, cfg: DialogConfig) -> None:
        self.cfg = cfg
        self._pending: _Pending | None = None
        self._ids = itertools.count(1)

    def match(self, text: str) -> tuple[Intent | None, float]:
        best: tuple[Intent | None, float] = (None, 0.0)
        for intent in self.cfg.intents:
            s = score_intent(intent, text)
            if s > best[1]:
                best = (intent, s)
        return best if best[1] >= self.cfg.threshold else (None, best[1])

    async def stream(self, messages: list[Message], tools: list[ToolSpec]) -> AsyncIterator[LLMEvent]:
        last = messages[-1] if messages else None
        if last is not None and last.role == "tool":
            for ev in self._after_tool(messages):
                yield ev
            return
        text = last.content if last is not None and last.role == "user" else ""
        for ev in self._on_user(text, {t.name for t in tools}):
            yield ev

    # -- turn handling
    def _on_user(self, text: str, tools: set[str]) -> list[LLMEvent]:
        pending = self._pending
        if pending is not None and pending.asked:
            value = self._extract(pending.intent, pending.asked, text)
            if value is not None:
                pending.slots[pending.asked] = value
                pending.asked = None
                return self._advance(pending, text, tools)
            # not an answer to our question: maybe a new request
            intent, _ = self.match(text)
            if intent is None or intent is pending.intent:
                slot = next(s for s in pending.intent.slots if s.name == pending.asked)
                return _say(render(slot.prompt, pending.slots))
        intent, _ = self.match(text)
        if intent is None:
            self._pending = None
            return _say(render(self.cfg.fallback, {}))
        pending = _Pending(intent)
        for slot in intent.slots:
            value = self._extract(intent, slot.name, text)
            if value is not None:
                pending.slots[slot.name] = value
        self._pending = pending
        return self._advance(pending, text, tools)

    def _advance(self, p: _Pending, text: str, tools: set[str]) -> list[LLMEvent]:
        for slot in p.intent.slots:
            if slot.required and slot.name not in p.slots:
                p.asked = slot.name
                return _say(render(slot.prompt, p.slots))
        intent = p.intent
        if intent.tool and intent.tool in tools:
            args = self._arguments(intent, p.slots, text)
            p.awaiting_tool = True
            return [ToolCallsRequested((ToolCall(f"dlg_{next(self._ids)}", intent.tool, args, json.dumps(args)),))]
        if intent.menu and OPEN_MENU in tools:
            self._pending = None
            events: list[LLMEvent] = _say(render(intent.reply, p.slots)) if intent.reply else []
            call = ToolCall(f"dlg_{next(self._ids)}", OPEN_MENU, {"menu": intent.menu})
            return [*events, ToolCallsRequested((call,))]
        self._pending = None
        return _say(render(intent.reply or self.cfg.fallback, p.slots))

    def _after_tool(self, messages: list[Message]) -> list[LLMEvent]:
        p, self._pending = self._pending, None
        if p is None or not p.awaiting_tool:
            return []  # e.g. after open_keypad_menu: the menu speaks next
        try:
            payload = json.loads(messages[-1].content)
        except json.JSONDecodeError:
            payload = {"error": "bad tool output"}
        if "error" in payload:
            return _say(f"Sorry, I couldn't do that: {payload['error']}.")
        values = {**p.slots, "result": payload.get("result")}
        return _say(render(p.intent.reply or "Done.", values))

    def _extract(self, intent: Intent, slot_name: str, text: str) -> Any:
        slot = next((s for s in intent.slots if s.name == slot_name), None)
        if slot is None:
            return None
        return EXTRACTORS[slot.extract](text)

    def _arguments(self, intent: Intent, slots: dict[str, Any], text: str) -> dict[str, Any]:
        args: dict[str, Any] = {}
        for k, v in intent.arguments.items():
            if isinstance(v, str) and v.startswith("$"):
                key = v[1:]
                if key in slots:
                    args[k] = slots[key]
                elif key in EXTRACTORS:  # "$expression": extract directly from the utterance
                    val = EXTRACTORS[key](text)
                    args[k] = val if val is not None else words_to_numbers(normalise(text))
                elif key == "utterance":
                    args[k] = text
            else:
                args[k] = v
        return args


def _say(text: str) -> list[LLMEvent]:
    words = text.split(" ")
    return [TextDelta(w + (" " if i < len(words) - 1 else "")) for i, w in enumerate(words)]


# ---------------------------------------------------------------- registration


def _build(cfg: LLMConfig, opts: FreeOptions, ctx: BuildContext) -> DialogEngine:
    assert ctx.agent is not None, "the dialog engine reads the agent's dialog: block"
    return DialogEngine(ctx.agent.dialog)


register(EngineSpec("llm", "dialog", _build))
