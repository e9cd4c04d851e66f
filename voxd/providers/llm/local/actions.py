"""What the local model may write, and how it is read: one JSON action object per step.

    {"say": "words for the caller"}              speak, the turn is done
    {"tool": "calculate", "arguments": {...}}    call a function, then speak its result

`action_schema` builds the JSON Schema of that object from the agent's functions, with
each function's argument schema inlined, so the sampler (a grammar compiled from the
schema) cannot write anything else. `ActionReader` reads the object as it streams and
hands out the `say` text character by character, so speech starts with the first
clause instead of waiting for the closing brace. `check_arguments` validates a call's
arguments against the function's own schema before anything runs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import jsonschema

from voxd.providers.base import ToolSpec

_SAY_HEAD = re.compile(r'\s*\{\s*"say"\s*:\s*"')
_OTHER_HEAD = re.compile(r'\s*\{\s*"(?:[^s]|s[^a]|sa[^y]|say[^"])|\s*[^\s{]')
_ESCAPES = {"n": " ", "t": " ", "r": "", "b": "", "f": "", '"': '"', "\\": "\\", "/": "/"}


def _strip(schema: Any) -> Any:
    """Argument schema for the grammar: descriptions and titles change nothing there."""
    if isinstance(schema, dict):
        return {k: _strip(v) for k, v in schema.items() if k not in ("description", "title", "examples", "default")}
    if isinstance(schema, list):
        return [_strip(v) for v in schema]
    return schema


def say_schema() -> dict[str, Any]:
    return {"type": "object", "properties": {"say": {"type": "string", "minLength": 1}},
            "required": ["say"], "additionalProperties": False}


def action_schema(tools: list[ToolSpec], *, allow_tools: bool = True) -> dict[str, Any]:
    options: list[dict[str, Any]] = [say_schema()]
    if allow_tools:
        for t in tools:
            args = _strip(t.parameters) or {"type": "object"}
            options.append({
                "type": "object",
                "properties": {"tool": {"const": t.name}, "arguments": args},
                "required": ["tool", "arguments"],
                "additionalProperties": False,
            })
    return options[0] if len(options) == 1 else {"oneOf": options}


@dataclass(frozen=True)
class Action:
    say: str | None = None
    tool: str | None = None
    arguments: dict[str, Any] | None = None


def parse_action(text: str) -> Action | None:
    """The finished object, or None when it is not one valid action."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("say"), str) and set(obj) == {"say"}:
        return Action(say=obj["say"])
    if isinstance(obj.get("tool"), str) and isinstance(obj.get("arguments", {}), dict):
        return Action(tool=obj["tool"], arguments=dict(obj.get("arguments") or {}))
    return None


class ActionReader:
    """Feed the model's output as it arrives; `feed` returns the `say` text decoded so far
    (new characters only). Escapes split across pieces wait for their end."""

    def __init__(self) -> None:
        self.text = ""
        self.mode = "head"  # head -> say -> tail, or head -> other
        self.pos = 0

    def feed(self, piece: str) -> str:
        self.text += piece
        if self.mode == "head":
            m = _SAY_HEAD.match(self.text)
            if m:
                self.mode, self.pos = "say", m.end()
            elif _OTHER_HEAD.match(self.text):
                self.mode = "other"
        if self.mode != "say":
            return ""
        out: list[str] = []
        buf = self.text
        while self.pos < len(buf):
            c = buf[self.pos]
            if c == '"':
                self.mode = "tail"
                self.pos += 1
                break
            if c == "\\":
                if self.pos + 1 >= len(buf):
                    break
                e = buf[self.pos + 1]
                if e == "u":
                    if self.pos + 6 > len(buf):
                        break
                    try:
                        ch = chr(int(buf[self.pos + 2 : self.pos + 6], 16))
                    except ValueError:
                        ch = ""
                    out.append("" if 0xD800 <= ord(ch or " ") <= 0xDFFF else ch)
                    self.pos += 6
                    continue
                out.append(_ESCAPES.get(e, e))
                self.pos += 2
                continue
            out.append(c)
            self.pos += 1
        return "".join(out)

    @property
    def saying(self) -> bool:
        return self.mode in ("say", "tail")


def check_arguments(tool: ToolSpec, arguments: dict[str, Any]) -> str | None:
    """None when the arguments fit the function's schema, else what is wrong (for the model)."""
    errors = sorted(jsonschema.Draft202012Validator(tool.parameters).iter_errors(arguments), key=lambda e: e.path)
    if not errors:
        return None
    e = errors[0]
    where = "/".join(str(p) for p in e.path) or "arguments"
    return f"{where}: {e.message}"
