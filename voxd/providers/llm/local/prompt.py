"""The prompt the local model reads, in Qwen's ChatML layout.

A prompt is a *prefix* that never changes for an agent version (its system prompt,
the action format, its functions and a few-shot block made from its dialog
examples), then the call's turns. The prefix is evaluated once per model process
and kept (llama.cpp prompt cache), so a turn costs only its new tokens. `History`
drops the oldest turns in large steps when the context would fill: the kept part
then stays the same from turn to turn and is found in the cache again, so a long
call answers as fast at minute twenty as at minute one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from voxd.agents.schema import DialogConfig, Intent
from voxd.providers.base import Message, ToolSpec
from voxd.providers.llm.extract import EXTRACTORS

START, END = "<|im_start|>", "<|im_end|>"
OPEN_MENU = "open_keypad_menu"  # the session's keypad-menu function
MAX_SHOTS = 14
TOOL_TEXT_MAX = 600
CHARS_PER_TOKEN = 3.2  # English and JSON for Qwen's tokenizer, on the safe side

FORMAT = """Every reply is ONE JSON object and nothing else, either
{"tool": "<function>", "arguments": {...}}  - call a function whenever the request fits one of the functions below; you then get its result, or
{"say": "<words spoken to the caller>"}  - to answer from the facts above, ask for what is missing, or confirm; one or two short sentences.
If you don't know, say so briefly. Never invent facts."""


def _signature(t: ToolSpec) -> str:
    props: dict[str, Any] = t.parameters.get("properties", {}) or {}
    required = set(t.parameters.get("required", []) or [])
    args = []
    for name, sch in props.items():
        kind = sch.get("type", "any") if isinstance(sch, dict) else "any"
        if isinstance(sch, dict) and "enum" in sch:
            kind = "|".join(str(x) for x in sch["enum"])
        args.append(f"{name}{'' if name in required else '?'}: {kind}")
    return f"- {t.name}({', '.join(args)}): {t.description}"


def _shot_arguments(intent: Intent, text: str) -> dict[str, Any] | None:
    args: dict[str, Any] = {}
    for k, v in intent.arguments.items():
        if isinstance(v, str) and v.startswith("$"):
            key = v[1:]
            slot = next((s for s in intent.slots if s.name == key), None)
            extract = EXTRACTORS.get(slot.extract if slot else key)
            value = extract(text) if extract else None
            if value is None:
                return None
            args[k] = value
        else:
            args[k] = v
    return args


def few_shots(dialog: DialogConfig, tool_names: set[str], per_intent: int = 2) -> list[tuple[str, str]]:
    """(caller words, action) pairs from the agent's dialog intents: the first examples of
    each intent whose action can be written down exactly (a tool with arguments taken
    from the example, or a reply with no blanks)."""
    shots: list[tuple[str, str]] = []
    for intent in dialog.intents:
        for ex in intent.examples[:per_intent]:
            action: dict[str, Any] | None = None
            if intent.tool:
                if intent.tool not in tool_names:
                    continue
                args = _shot_arguments(intent, ex)
                if args is not None:
                    action = {"tool": intent.tool, "arguments": args}
                elif intent.slots and "{" not in intent.slots[0].prompt:  # ask for what is missing
                    action = {"say": intent.slots[0].prompt}
            elif intent.menu and OPEN_MENU in tool_names:
                action = {"tool": OPEN_MENU, "arguments": {"menu": intent.menu}}
            elif intent.reply and "{" not in intent.reply:
                action = {"say": intent.reply}
            if action is not None:
                shots.append((ex, json.dumps(action)))
    return shots[:MAX_SHOTS]


def reply_templates(dialog: DialogConfig) -> dict[str, str]:
    """Function -> the agent's own reply template for its result (dialog intents)."""
    out: dict[str, str] = {}
    for intent in dialog.intents:
        if intent.tool and intent.reply and intent.tool not in out:
            out[intent.tool] = intent.reply
    return out


def system_text(base: str, tools: list[ToolSpec]) -> str:
    parts = [base.strip(), "", FORMAT]
    if tools:
        parts += ["", "Functions:", *(_signature(t) for t in tools)]
    return "\n".join(parts)


def prefix(system: str, shots: list[tuple[str, str]] | None = None) -> str:
    """The system prompt, then the few-shot examples as earlier turns (small models follow
    turns they have seen far better than examples described in the system prompt)."""
    out = f"{START}system\n{system}{END}\n"
    for said, action in shots or []:
        out += f"{START}user\n{said}{END}\n{START}assistant\n{action}{END}\n"
    return out


def render(m: Message) -> str:
    if m.role == "user":
        return f"{START}user\n{m.content}{END}\n"
    if m.role == "assistant":
        out = ""
        if m.content.strip():
            out += f"{START}assistant\n{json.dumps({'say': m.content.strip()})}{END}\n"
        for c in m.tool_calls:
            out += f"{START}assistant\n{json.dumps({'tool': c.name, 'arguments': c.arguments})}{END}\n"
        return out
    if m.role == "tool":
        text = m.content if len(m.content) <= TOOL_TEXT_MAX else m.content[:TOOL_TEXT_MAX] + "..."
        return f"{START}user\n[result of {m.name or 'the function'}] {text}{END}\n"
    return ""


def assistant_open() -> str:
    return f"{START}assistant\n"


@dataclass
class History:
    """The call's turns as the model sees them, cut at a point that moves only in jumps."""

    budget_chars: int
    cut: int = 1  # index of the first kept message (0 is the system prompt)
    dropped: int = field(default=0)

    def render(self, messages: list[Message]) -> str:
        body = messages[self.cut :]
        texts = [render(m) for m in body]
        if sum(map(len, texts)) > self.budget_chars:
            # drop the oldest turns until half the budget is left, at a caller turn
            keep, total = len(texts), 0
            for i in range(len(texts) - 1, -1, -1):
                total += len(texts[i])
                if total > self.budget_chars // 2:
                    break
                keep = i
            while keep < len(body) and body[keep].role != "user":
                keep += 1
            keep = min(keep, len(body) - 1)
            self.dropped += keep
            self.cut += keep
            texts = texts[keep:]
        note = f"{START}user\n(The first part of this call is no longer shown.){END}\n" if self.dropped else ""
        return note + "".join(texts)


def history_budget(context_tokens: int, prefix_chars: int, reply_tokens: int) -> int:
    room = context_tokens - reply_tokens - int(prefix_chars / CHARS_PER_TOKEN) - 64
    return max(400, int(room * CHARS_PER_TOKEN))
