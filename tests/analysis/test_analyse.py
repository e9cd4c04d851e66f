"""The analysis of a stored call: with the dialog engine (slots, template, intents) and
with an OpenAI-compatible server's structured output (the local fake server)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.analysis.agents import booking_agent, booking_call
from tests.cloud.fake_openai import FakeOpenAI
from tests.outbound import LOCAL
from voxd.agents.schema import AgentConfig
from voxd.analysis.analyse import analyse, headline
from voxd.analysis.service import structured_model
from voxd.core.secrets import Outbound
from voxd.providers.llm.openai_compat import OpenAICompatibleLLM


def agent(text: str) -> AgentConfig:
    return AgentConfig.model_validate(YAML(typ="safe").load(text))


async def test_dialog_engine_slots_become_extracted() -> None:
    a = agent(booking_agent())
    assert structured_model(a, Outbound()) == (None, None)  # the dialog engine has no structured output
    out = await analyse(booking_call(), a)
    assert out["method"] == "dialog"
    assert out["extracted"] == {"day": "Thursday", "time": "10:00"} and out["validation_error"] is None
    assert out["outcome"] == "booked"
    assert "Thursday" in out["summary"] and "booked" in out["summary"] and "book" in out["summary"]
    assert [t["intent"] for t in out["intents"]["turns"]] == ["book", "book", "book"]
    s = out["sentiment"]
    assert s["method"] == "vader" and [t["index"] for t in s["turns"]] == [1, 3, 5]
    assert s["turns"][0]["score"] > 0.3  # "that would be great"
    q = out["quality"]
    assert q["mos"] is None and "RTP" in q["reason"]  # no RTP counters on this record
    assert q["duration_s"] == 20.0 and q["interruptions"] == 1
    assert q["overlap_s"] == pytest.approx(0.2)  # caller started 0.2 s before the bot's turn ended
    assert q["reply_latency_ms"] == {"p50": 800.0, "p90": 1200.0, "p99": 1200.0, "count": 3}
    assert 0 < q["caller_talk_ratio"] < q["bot_talk_ratio"] < 1
    assert headline(out) == {"outcome": "booked", "sentiment": s["overall"], "mos": None}


async def test_a_slot_missing_from_the_schema_is_a_validation_error_not_a_crash() -> None:
    call = booking_call()
    call["turns"] = call["turns"][:4]  # hung up before saying the time: no booking
    out = await analyse(call, agent(booking_agent()))
    assert out["outcome"] == "no_booking"
    assert out["extracted"] == {"day": "Thursday"}
    assert "time" in out["validation_error"]


async def test_rtp_counters_give_a_mos() -> None:
    rtp = {"received": 950, "sent": 1000, "lost": 50, "jitter_ms": 3.0,
           "rtcp": {"sent": 3, "received": 3, "peer": {"reports": 3, "fraction_lost": 0.0, "jitter_ms": 1.0,
                                                       "rtt_ms": 40.0}}}
    clean = dict(rtp, received=1000, lost=0)
    lossy_q = (await analyse(booking_call(rtp), agent(booking_agent())))["quality"]
    clean_q = (await analyse(booking_call(clean), agent(booking_agent())))["quality"]
    assert clean_q["mos"] > 4.3 > lossy_q["mos"]
    assert lossy_q["loss_pct"] == pytest.approx(5.0) and lossy_q["rtt_ms"] == 40.0 and lossy_q["codec"] == "PCMU"


def _answer(body: dict[str, Any]) -> str:
    """What a model would write: built from the request (the transcript it was sent)."""
    said = body["messages"][-1]["content"]
    day = "Thursday" if "Thursday" in said else "Monday"
    return json.dumps({"summary": f"The caller booked a check-up for {day} at ten.", "outcome": "booked",
                       "extracted": {"day": day, "time": "10:00"}})


async def test_openai_compatible_structured_output() -> None:
    fake = await FakeOpenAI(structured=[_answer]).start()
    try:
        a = agent(booking_agent(llm=f"{{engine: openai-compatible, base_url: '{fake.url}', model: m}}"))
        model = OpenAICompatibleLLM(a.llm, outbound=LOCAL)
        try:
            out = await analyse(booking_call(), a, model, engine="openai-compatible",
                                prices={"openai-compatible": {"prompt_tokens": 1e-6, "completion_tokens": 2e-6}})
        finally:
            await model.aclose()
    finally:
        await fake.stop()
    req = fake.requests[0]
    assert req["stream"] is False
    fmt = req["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["properties"]["outcome"]["enum"] == ["booked", "informed", "no_booking"]
    assert "Caller: Thursday" in req["messages"][-1]["content"]
    assert out["method"] == "llm" and out["attempts"] == 1 and out["validation_error"] is None
    assert out["extracted"] == {"day": "Thursday", "time": "10:00"} and out["outcome"] == "booked"
    assert out["summary"].startswith("The caller booked")
    assert out["cost"]["analysis"]["prompt_tokens"] == 20 and out["cost"]["analysis"]["usd"] > 0
    assert out["sentiment"]["method"] == "vader"  # the default, with the model writing the rest


async def test_invalid_output_is_retried_once_then_stored_with_the_error() -> None:
    bad = json.dumps({"summary": "x", "outcome": "booked", "extracted": {"day": "Someday", "time": "10:00"}})
    good = json.dumps({"summary": "ok", "outcome": "booked", "extracted": {"day": "Friday", "time": "09:30"}})
    fake = await FakeOpenAI(structured=["not json at all", good, bad, bad]).start()
    try:
        a = agent(booking_agent(llm=f"{{engine: openai-compatible, base_url: '{fake.url}'}}"))
        model = OpenAICompatibleLLM(a.llm, outbound=LOCAL)
        try:
            fixed = await analyse(booking_call(), a, model, engine="openai-compatible")
            kept = await analyse(booking_call(), a, model, engine="openai-compatible")
        finally:
            await model.aclose()
    finally:
        await fake.stop()
    assert fixed["attempts"] == 2 and fixed["validation_error"] is None and fixed["extracted"]["day"] == "Friday"
    # the retry told the model what was wrong
    assert "not valid" in fake.requests[1]["messages"][-1]["content"]
    assert kept["attempts"] == 2 and "extracted/day" in kept["validation_error"]
    assert kept["extracted"] == {"day": "Someday", "time": "10:00"} and "Someday" in kept["raw"]


async def test_llm_sentiment_when_configured() -> None:
    fake = await FakeOpenAI(structured=[json.dumps({"summary": "s", "outcome": "no_booking", "extracted": {
        "day": "Monday", "time": "10:00"}, "sentiment": {"overall": -0.4, "turns": [
            {"index": 1, "score": 0.2}, {"index": 3, "score": -0.6}, {"index": 2, "score": 0.9}]}})]).start()
    try:
        a = agent(booking_agent(llm=f"{{engine: openai-compatible, base_url: '{fake.url}'}}").replace(
            "default_outcome: no_booking", "default_outcome: no_booking\n  sentiment: llm"))
        model, engine = structured_model(a, LOCAL)
        assert engine == "openai-compatible" and isinstance(model, OpenAICompatibleLLM)
        try:
            out = await analyse(booking_call(), a, model, engine=engine)
        finally:
            await model.aclose()
    finally:
        await fake.stop()
    schema = fake.requests[0]["response_format"]["json_schema"]
    assert "sentiment" in schema["schema"]["required"] and schema["strict"] is True
    assert "intents" not in schema["schema"]["properties"]  # the dialog engine reads those
    assert out["sentiment"] == {"method": "llm", "overall": -0.4, "label": "negative", "turns": [
        {"index": 1, "score": 0.2, "label": "positive"}, {"index": 3, "score": -0.6, "label": "negative"}]}
    assert out["intents"]["method"] == "dialog"


async def test_llm_classifies_intents_when_there_is_no_dialog() -> None:
    text = """
name: plain
llm: {engine: openai-compatible, base_url: '{url}'}
analysis:
  instructions: Did the caller buy?
  outcomes: {bought: null}
"""
    reply = {"summary": "Asked for the price, then bought.", "outcome": "bought", "extracted": {},
             "intents": [{"index": 1, "intent": "ask_price"}, {"index": 3, "intent": "buy"}, {"index": 4, "intent": "x"}]}
    fake = await FakeOpenAI(structured=[json.dumps(reply)]).start()
    try:
        a = agent(text.replace("{url}", fake.url))
        model, engine = structured_model(a, LOCAL)
        assert isinstance(model, OpenAICompatibleLLM)
        try:
            out = await analyse(booking_call(), a, model, engine=engine)
        finally:
            await model.aclose()
    finally:
        await fake.stop()
    assert "intents" in fake.requests[0]["response_format"]["json_schema"]["schema"]["required"]
    assert "[3] Caller: Thursday" in fake.requests[0]["messages"][-1]["content"]
    assert out["intents"] == {"method": "llm", "turns": [{"index": 1, "intent": "ask_price"},
                                                         {"index": 3, "intent": "buy"}]}  # 4 is the bot's
    assert out["outcome"] == "bought" and out["validation_error"] is None


def test_the_schema_itself_is_validated_at_load() -> None:
    from voxd.agents.loader import AgentLoadError, parse_agent

    good = booking_agent()
    parse_agent(good, "front.yaml")
    for broken, why in ((good.replace("type: string, enum", "type: strng, enum"), "properties/day/type"),
                        (good.replace("outcomes: {booked: book,", "outcomes: {booked: nope,"), "nope"),
                        (good.replace("    type: object\n", "    type: array\n", 1), "object schema")):
        with pytest.raises(AgentLoadError) as e:
            parse_agent(broken, "front.yaml")
        assert why in str(e.value)
