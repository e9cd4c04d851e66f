"""Where an agent's texts take ``{placeholders}``: checked when the agent is loaded, filled
per call with its variables.

Each text field knows which names it may use: the agent's declared variables
everywhere, plus what that field gets at run time (a dialog reply its intent's slots
and ``{result}``/``{result.field}``, a slot prompt the slots, a collection's confirm
``{digits}``, an HTTP function's URL and body its parameters). At call start the
variables are filled in; run-time names are left for later (``partial`` filling), so
``{{`` stays a literal brace through both steps.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from voxd.agents.schema import AgentConfig, Collect, DialogConfig, DtmfConfig, Intent, Menu
from voxd.core.placeholders import fill, names

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Unknown:
    loc: Loc
    placeholder: str
    allowed: tuple[str, ...]

    def message(self) -> str:
        known = ", ".join(f"{{{n}}}" for n in self.allowed) or "none (declare them under variables:)"
        return (f"unknown placeholder {{{self.placeholder}}}; this field may use {known}. "
                "Declare it under variables:, or write {{ and }} for literal braces")


def _texts(cfg: AgentConfig) -> Iterator[tuple[Loc, str, set[str], bool]]:
    """(location, text, run-time names it may use, whether dotted result.* names count)."""
    for field in ("greeting", "prompt", "goodbye", "filler"):
        text = getattr(cfg, field)
        if text:
            yield (field,), text, set(), False
    yield ("dialog", "fallback"), cfg.dialog.fallback, set(), False
    for i, intent in enumerate(cfg.dialog.intents):
        slots = {s.name for s in intent.slots}
        if intent.reply:
            yield ("dialog", "intents", i, "reply"), intent.reply, slots | {"result"}, True
        for j, slot in enumerate(intent.slots):
            yield ("dialog", "intents", i, "slots", j, "prompt"), slot.prompt, slots, False
        for k, v in intent.arguments.items():
            if isinstance(v, str) and not v.startswith("$"):
                yield ("dialog", "intents", i, "arguments", k), v, set(), False
    for m, menu in cfg.dtmf.menus.items():
        yield ("dtmf", "menus", m, "prompt"), menu.prompt, set(), False
        yield ("dtmf", "menus", m, "invalid"), menu.invalid, set(), False
        for key, opt in menu.options.items():
            if opt.say:
                yield ("dtmf", "menus", m, "options", key, "say"), opt.say, set(), False
    for c, col in cfg.dtmf.collect.items():
        yield ("dtmf", "collect", c, "prompt"), col.prompt, set(), False
        if col.confirm:
            yield ("dtmf", "collect", c, "confirm"), col.confirm, {"digits"}, False
    for i, fn in enumerate(cfg.functions):
        if fn.http is None:
            continue
        params = set(fn.parameters.get("properties") or {})
        yield ("functions", i, "http", "url"), fn.http.url, params, False
        for loc, text in _strings(fn.http.body, ("functions", i, "http", "body")):
            yield loc, text, params, False


def _strings(value: Any, loc: Loc) -> Iterator[tuple[Loc, str]]:
    if isinstance(value, str):
        yield loc, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, (*loc, str(k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, (*loc, i))


def unknown_placeholders(cfg: AgentConfig) -> list[Unknown]:
    """Every placeholder that names neither a declared variable nor a run-time value."""
    declared = set(cfg.variables)
    out = []
    for loc, text, runtime, dotted_result in _texts(cfg):
        allowed = declared | runtime
        for name in names(text):
            head = name.split(".", 1)[0]
            ok = name in allowed or (dotted_result and head == "result")
            if not ok:
                shown = sorted(allowed) + (["result.<field>"] if dotted_result else [])
                out.append(Unknown(loc, name, tuple(shown)))
    return out


# ------------------------------------------------------------------ per call


def for_call(cfg: AgentConfig, values: Mapping[str, str]) -> AgentConfig:
    """The agent as one call runs it: its texts with ``values`` filled in. HTTP function
    templates are filled when the function runs (the call's variables are in its context)."""
    if not cfg.variables and not values:
        return cfg
    v = dict(values)

    def final(text: str | None) -> str | None:
        return None if text is None else fill(text, v)

    def later(text: str) -> str:
        return fill(text, v, partial=True)

    return cfg.model_copy(update={
        "greeting": final(cfg.greeting), "prompt": fill(cfg.prompt, v), "goodbye": final(cfg.goodbye),
        "filler": fill(cfg.filler, v), "dialog": _dialog(cfg.dialog, v), "dtmf": _dtmf(cfg.dtmf, v),
    })


def _dialog(d: DialogConfig, v: dict[str, str]) -> DialogConfig:
    def intent(i: Intent) -> Intent:
        slots = [s.model_copy(update={"prompt": fill(s.prompt, v, partial=True)}) for s in i.slots]
        args = {k: (fill(a, v) if isinstance(a, str) and not a.startswith("$") else a) for k, a in i.arguments.items()}
        reply = None if i.reply is None else fill(i.reply, v, partial=True)
        return i.model_copy(update={"reply": reply, "slots": slots, "arguments": args})

    return d.model_copy(update={"fallback": fill(d.fallback, v, partial=True),
                                "intents": [intent(i) for i in d.intents]})


def _dtmf(d: DtmfConfig, v: dict[str, str]) -> DtmfConfig:
    def menu(m: Menu) -> Menu:
        opts = {k: o.model_copy(update={"say": None if o.say is None else fill(o.say, v)}) for k, o in m.options.items()}
        return m.model_copy(update={"prompt": fill(m.prompt, v), "invalid": fill(m.invalid, v), "options": opts})

    def collect(c: Collect) -> Collect:
        confirm = None if c.confirm is None else fill(c.confirm, v, partial=True)
        return c.model_copy(update={"prompt": fill(c.prompt, v), "confirm": confirm})

    return d.model_copy(update={"menus": {k: menu(m) for k, m in d.menus.items()},
                                "collect": {k: collect(c) for k, c in d.collect.items()}})

