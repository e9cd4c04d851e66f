"""One call's analysis from its stored record: the ``analysis`` object of the call.

``analyse`` composes the parts: quality (E-model, talk time, latency), sentiment (VADER
or the model), intents and slots (the dialog engine over the transcript), and summary,
outcome and extracted fields (the agent's model with structured output, or the dialog's
slots and a template), and the call's provider cost rolled up.
"""

from __future__ import annotations

import time
from typing import Any

from voxd.agents.schema import AgentConfig
from voxd.analysis import dialog, sentiment, structured
from voxd.analysis.quality import quality
from voxd.providers.base import StructuredOutput
from voxd.providers.pricing import cost_of

VERSION = 1


def cost(call: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The call's ``metadata["usage"]`` rolled up: USD per provider, per role, in total,
    and the units used; ``extra`` (the analysis's own model use) is added."""
    usage = (call.get("metadata") or {}).get("usage") or {}
    providers = usage.get("providers") or {}
    priced = usage.get("cost_usd") or {}
    by_role: dict[str, float] = {}
    units: dict[str, float] = {}
    for name, p in providers.items():
        role = str(p.get("role") or "other")
        by_role[role] = round(by_role.get(role, 0.0) + float(priced.get(name) or 0.0), 6)
        for unit, n in (p.get("units") or {}).items():
            units[unit] = round(units.get(unit, 0.0) + float(n), 3)
    total = float(priced.get("total") or sum(float(v) for k, v in priced.items() if k != "total"))
    out: dict[str, Any] = {"total_usd": round(total, 6), "by_provider": {k: v for k, v in priced.items() if k != "total"},
                           "by_role": by_role, "units": units,
                           "requests": sum(int(p.get("requests") or 0) for p in providers.values())}
    if extra:
        out["analysis"] = extra
        out["total_usd"] = round(out["total_usd"] + float(extra.get("usd") or 0.0), 6)
    return out


def _model_cost(engine: str, usages: list[Any], prices: dict[str, dict[str, float]]) -> dict[str, Any]:
    p = sum(u.prompt_tokens for u in usages)
    c = sum(u.completion_tokens for u in usages)
    return {"engine": engine, "prompt_tokens": p, "completion_tokens": c,
            "usd": round(cost_of({"prompt_tokens": p, "completion_tokens": c}, prices.get(engine, {})), 6)}


async def analyse(call: dict[str, Any], agent: AgentConfig, model: StructuredOutput | None = None, *,
                  engine: str | None = None, model_error: str | None = None,
                  prices: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """``model``: the agent's LLM when it supports structured output and the agent wants
    it; ``model_error``: why it was given up (the dialog fills in, the error is kept)."""
    q = quality(call)
    replay = dialog.read_dialog(agent, call)
    out: dict[str, Any] = {"version": VERSION, "analysed_at": round(time.time(), 3), "quality": q,
                           "intents": {"method": "dialog", "turns": replay["intents"]}}
    llm_sentiment = agent.analysis.sentiment == "llm" and model is not None
    llm_intents = model is not None and not agent.dialog.intents  # no dialog to recognise them
    extra: dict[str, Any] | None = None
    if model is not None:
        got = await structured.ask(model, agent, call, with_sentiment=llm_sentiment, with_intents=llm_intents)
        value = got.value or {}
        out.update(method="llm", engine=engine, attempts=got.attempts, validation_error=got.error,
                   summary=value.get("summary") if isinstance(value.get("summary"), str) else None,
                   outcome=value.get("outcome") if isinstance(value.get("outcome"), str) else None,
                   extracted=value.get("extracted") if isinstance(value.get("extracted"), dict) else {})
        if got.error is not None:
            out["raw"] = got.raw
        extra = _model_cost(engine or "llm", got.usage, prices or {})
        callers = {t.get("index") for t in call.get("turns") or [] if t.get("speaker") == "caller"}
        if llm_sentiment:
            s: dict[str, Any] = value["sentiment"] if isinstance(value.get("sentiment"), dict) else {}
            overall = _number(s.get("overall"))
            turns = [{"index": t["index"], "score": _number(t.get("score")), "label": sentiment.label(_number(t.get("score")) or 0.0)}
                     for t in _items(s.get("turns")) if t.get("index") in callers]
            out["sentiment"] = {"method": "llm", "overall": overall, "turns": turns,
                                "label": None if overall is None else sentiment.label(overall)}
        if llm_intents:
            out["intents"] = {"method": "llm", "turns": [
                {"index": t["index"], "intent": str(t.get("intent"))} for t in _items(value.get("intents"))
                if t.get("index") in callers]}
    else:
        outcome = dialog.outcome_of(agent, call, replay["completed"])
        extracted = dialog.extracted_from(agent, replay["slots"])
        err = None
        if agent.analysis.fields_schema is not None:
            _, err = structured.problem(_dumps(extracted), agent.analysis.fields_schema)
        out.update(method="dialog", engine="dialog", attempts=1, validation_error=err, outcome=outcome,
                   extracted=extracted,
                   summary=dialog.template_summary(agent, call, replay["intents"], outcome, extracted,
                                                   q["duration_s"]))
        if model_error:
            out["model_error"] = model_error
    if "sentiment" not in out:
        out["sentiment"] = sentiment.caller_sentiment(call.get("turns") or [])
    out["cost"] = cost(call, extra)
    return out


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _items(v: Any) -> list[dict[str, Any]]:
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


def _dumps(v: Any) -> str:
    import json

    return json.dumps(v, default=str)


def headline(analysis: dict[str, Any]) -> dict[str, Any]:
    """The columns the store indexes for filtering: outcome, overall sentiment, MOS."""
    s = analysis.get("sentiment") or {}
    q = analysis.get("quality") or {}
    return {"outcome": analysis.get("outcome"), "sentiment": s.get("overall"), "mos": q.get("mos")}
