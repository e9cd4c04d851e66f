"""The analysis written by the packaged local model (llama.cpp) held to the agent's
schema by a grammar: the booking's day and time come out as the schema says."""

from __future__ import annotations

import pytest
from ruamel.yaml import YAML

from tests.analysis.agents import booking_agent, booking_call
from tests.localmodel.test_local_calls import MODEL, needs_model
from voxd.agents.schema import AgentConfig
from voxd.analysis.analyse import analyse
from voxd.analysis.service import structured_model
from voxd.core.secrets import Outbound
from voxd.providers.llm.local import runtime

pytestmark = [pytest.mark.engines, pytest.mark.localmodel, needs_model]


@pytest.mark.timeout(300)
async def test_local_model_fills_the_schema_under_a_grammar() -> None:
    text = booking_agent(llm=f"{{engine: local, model: {MODEL}}}")
    agent = AgentConfig.model_validate(YAML(typ="safe").load(text))
    model, engine = structured_model(agent, Outbound())
    assert engine == "local" and model is not None
    try:
        out = await analyse(booking_call(), agent, model, engine=engine)
    finally:
        await runtime.shutdown()
    assert out["method"] == "llm" and out["validation_error"] is None, out
    assert out["outcome"] in ("booked", "informed", "no_booking")
    assert out["extracted"]["day"] == "Thursday" and out["extracted"]["time"] == "10:00"
    assert out["summary"] and out["cost"]["analysis"]["completion_tokens"] > 0
