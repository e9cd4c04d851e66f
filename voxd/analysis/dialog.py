"""The analysis without a model: the agent's dialog engine read over the stored transcript.

The dialog engine is deterministic, so matching the caller's turns again, in order, with
its own scorer and slot extractors gives the intents it recognised and the slots it
filled, from the stored record alone (the analysis also runs after a restart, when the
call's engine is long gone). A function the dialog called is on the record with its
arguments: those are the slot values it acted on, and they win over the re-reading.
"""

from __future__ import annotations

from typing import Any

from voxd.agents.schema import AgentConfig, Intent
from voxd.providers.llm.dialog import render, score_intent
from voxd.providers.llm.extract import EXTRACTORS


def _match(intents: list[Intent], text: str, threshold: float) -> tuple[Intent | None, float]:
    best: tuple[Intent | None, float] = (None, 0.0)
    for intent in intents:
        s = score_intent(intent, text)
        if s > best[1]:
            best = (intent, s)
    return best if best[1] >= threshold else (None, best[1])


def read_dialog(agent: AgentConfig, call: dict[str, Any]) -> dict[str, Any]:
    """``{"intents": [{index, intent, score}], "slots": {...}, "completed": [intent names]}``."""
    cfg = agent.dialog
    per_turn: list[dict[str, Any]] = []
    slots: dict[str, Any] = {}
    pending: Intent | None = None
    asked: str | None = None
    completed: list[str] = []
    tool_calls = [tc for t in call.get("turns") or [] for tc in t.get("tool_calls") or []]
    for turn in call.get("turns") or []:
        if turn.get("speaker") != "caller" or turn.get("source") not in ("speech", None):
            continue
        text = turn.get("text") or ""
        intent, score = _match(cfg.intents, text, cfg.threshold)
        if pending is not None and asked is not None:
            slot = next(s for s in pending.slots if s.name == asked)
            value = EXTRACTORS[slot.extract](text)
            if value is not None and (intent is None or intent is pending):
                slots[asked] = value
                intent, score = pending, max(score, cfg.threshold)
        elif intent is not None:
            pending = intent
            for slot in intent.slots:
                value = EXTRACTORS[slot.extract](text)
                if value is not None:
                    slots[slot.name] = value
        per_turn.append({"index": turn.get("index"), "intent": None if intent is None else intent.name,
                         "score": round(score, 3)})
        if pending is not None:
            missing = [s.name for s in pending.slots if s.required and s.name not in slots]
            asked = missing[0] if missing else None
            if not missing and not pending.tool:
                completed.append(pending.name)
                pending = None
    for intent in cfg.intents:  # a function the dialog called: its arguments are the slots it used
        for tc in tool_calls:
            if intent.tool and tc.get("name") == intent.tool and not tc.get("error"):
                for arg, ref in intent.arguments.items():
                    if isinstance(ref, str) and ref.startswith("$") and arg in (tc.get("arguments") or {}):
                        slots[ref[1:]] = tc["arguments"][arg]
                completed.append(intent.name)
    return {"intents": per_turn, "slots": slots, "completed": list(dict.fromkeys(completed))}


def outcome_of(agent: AgentConfig, call: dict[str, Any], completed: list[str]) -> str:
    """The first listed outcome whose intent completed; ``transferred`` for a transferred
    call when listed; else the default."""
    a = agent.analysis
    for label, intent in a.outcomes.items():
        if intent is not None and intent in completed:
            return label
    if call.get("end_reason") == "transferred" and "transferred" in a.outcomes:
        return "transferred"
    return a.default_outcome


def extracted_from(agent: AgentConfig, slots: dict[str, Any]) -> dict[str, Any]:
    """The slots the schema declares (all of them without a schema)."""
    schema = agent.analysis.fields_schema
    props = (schema or {}).get("properties")
    if not isinstance(props, dict):
        return dict(slots)
    return {k: v for k, v in slots.items() if k in props}


def template_summary(agent: AgentConfig, call: dict[str, Any], intents: list[dict[str, Any]], outcome: str,
                     extracted: dict[str, Any], duration_s: float) -> str:
    names = list(dict.fromkeys(i["intent"] for i in intents if i["intent"]))
    details = "".join(f" {k.replace('_', ' ')}: {v}." for k, v in extracted.items())
    minutes, seconds = divmod(round(duration_s), 60)
    return render(agent.analysis.summary_template, {
        "agent": call.get("agent", agent.name), "turns": len(call.get("turns") or []),
        "duration": f"{minutes} min {seconds} s" if minutes else f"{seconds} s",
        "intents": ", ".join(n.replace("_", " ") for n in names) or "nothing the agent recognised",
        "outcome": outcome.replace("_", " "), "details": details,
    }).strip()
