"""Summary, outcome and extracted fields from the agent's language model, held to a schema.

The model gets the transcript and the agent's instructions and must answer one JSON
object ``{summary, outcome, extracted[, sentiment]}`` whose ``extracted`` is the agent's
``analysis.schema``; the engine enforces the shape where it can (``response_format``
``json_schema`` for an OpenAI-compatible server, a grammar for the local model). The reply
is validated here in any case: an invalid one goes back once with the validator's
message; a second invalid one is kept with the error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from voxd.agents.schema import AgentConfig
from voxd.providers.base import Message, StructuredOutput, Usage

SCHEMA_NAME = "call_analysis"
MAX_TRANSCRIPT_CHARS = 24_000


def _object(props: dict[str, Any]) -> dict[str, Any]:
    """An object schema by the strict structured-output rules (all required, no others)."""
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def response_schema(agent: AgentConfig, with_sentiment: bool, with_intents: bool = False) -> dict[str, Any]:
    """What the model must answer; with_sentiment/with_intents add the per-turn readings
    the model makes instead of VADER / the dialog engine (turns by their [index])."""
    a = agent.analysis
    extracted = a.fields_schema or {"type": "object", "properties": {}, "additionalProperties": False}
    props: dict[str, Any] = {
        "summary": {"type": "string", "description": "Two or three sentences about the call."},
        "outcome": {"type": "string", "enum": a.outcome_labels()},
        "extracted": extracted,
    }
    score = {"type": "number", "minimum": -1, "maximum": 1}
    if with_sentiment:
        props["sentiment"] = _object({
            "overall": score | {"description": "The caller's overall sentiment, -1 (negative) to 1 (positive)."},
            "turns": {"type": "array", "items": _object({"index": {"type": "integer"}, "score": score})}})
    if with_intents:
        props["intents"] = {"type": "array", "description": "What the caller wanted in each of their turns.",
                            "items": _object({"index": {"type": "integer"},
                                              "intent": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,40}$"}})}
    return _object(props)


def transcript_text(call: dict[str, Any]) -> str:
    lines = [f"[{t.get('index')}] {'Caller' if t.get('speaker') == 'caller' else 'Agent'}: {t.get('text', '')}"
             for t in call.get("turns") or [] if (t.get("text") or "").strip()]
    text = "\n".join(lines)
    return text[-MAX_TRANSCRIPT_CHARS:]


def messages_for(agent: AgentConfig, call: dict[str, Any], schema: dict[str, Any]) -> list[Message]:
    a = agent.analysis
    system = ("You analyse a finished phone call of a voice agent and answer with one JSON object only, "
              f"matching this JSON Schema:\n{json.dumps(schema)}\n"
              f"outcome is one of: {', '.join(a.outcome_labels())}. Put in extracted only what the caller said. "
              "Turns are numbered [index]; per-turn readings name the caller's turns by that index.")
    if a.instructions:
        system += "\n" + a.instructions
    return [Message("system", system), Message("user", "Transcript:\n" + transcript_text(call))]


@dataclass
class Structured:
    value: dict[str, Any] | None
    error: str | None
    attempts: int
    raw: str = ""
    usage: list[Usage] = field(default_factory=list)


def problem(text: str, schema: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """The parsed reply, or why it is not valid."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        return None, f"not JSON: {e.msg} at {e.pos}"
    err = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(value))
    if err is not None:
        where = "/".join(str(p) for p in err.absolute_path) or "(top)"
        return value if isinstance(value, dict) else None, f"{where}: {err.message}"
    return value, None


async def ask(model: StructuredOutput, agent: AgentConfig, call: dict[str, Any], *,
              with_sentiment: bool = False, with_intents: bool = False) -> Structured:
    """Ask, validate, ask once more with the reason if invalid."""
    schema = response_schema(agent, with_sentiment, with_intents)
    messages = messages_for(agent, call, schema)
    out = Structured(None, None, 0)
    for _ in range(2):
        out.attempts += 1
        text, usage = await model.complete_json(messages, schema, SCHEMA_NAME)
        out.usage.append(usage)
        out.raw = text[:4000]
        value, err = problem(text, schema)
        if err is None:
            out.value, out.error = value, None
            return out
        out.value, out.error = value, err
        messages = [*messages, Message("assistant", text[:4000]),
                    Message("user", f"That reply is not valid: {err}. Answer again with one valid JSON object.")]
    return out
