"""Adding an engine is one module: tests/providers/parrot_engine.py registers a speech
recogniser, and agent YAML uses it with no other edit."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.synth import silence, voiced
from voxd.agents.loader import AgentLoadError, parse_agent
from voxd.call.driver import drive, frames_of
from voxd.call.manager import CallManager
from voxd.call.ports import NullControl
from voxd.config import EnginesConfig
from voxd.providers import engines, factory
from voxd.tools.builtins import default_registry

AGENT = """\
name: parrot-desk
greeting: null
turn: {detector: silence, max_silence_ms: 300}
stt:
  engine: parrot
  language: fr
  options: {transcript: "what time is it", shout: true}
  prices: {audio_s: 1.0}
llm: {engine: fake, options: {steps: ["It is noon."]}}
voice: {engine: fake}
"""


@pytest.fixture
def parrot() -> Iterator[engines.EngineSpec]:
    from tests.providers import parrot_engine

    engines.register(parrot_engine.SPEC)  # again, should an earlier test have removed it
    factory.clear_cache()
    yield parrot_engine.SPEC
    engines.unregister("stt", "parrot")
    factory.clear_cache()


def test_unknown_until_registered() -> None:
    engines.unregister("stt", "parrot")
    with pytest.raises(AgentLoadError, match="unknown engine 'parrot'"):
        parse_agent(AGENT)


def test_its_options_are_validated_at_load(parrot: engines.EngineSpec) -> None:
    with pytest.raises(AgentLoadError, match=r"unknown option\(s\) \['volume'\]"):
        parse_agent(AGENT.replace("shout: true", "volume: 3"))
    with pytest.raises(AgentLoadError, match="shout"):
        parse_agent(AGENT.replace("shout: true", "shout: [1]"))
    assert "parrot" in engines.names("stt")


async def test_a_call_hears_it_and_prices_it(parrot: engines.EngineSpec) -> None:
    agent = parse_agent(AGENT)
    manager = CallManager(default_registry(), EnginesConfig(silero_confirm=False, preload=False))
    session = manager.create(agent, NullControl())
    assert type(manager.engines_for(agent).stt).__name__ == "ParrotSTT"
    await drive(session, frames_of(voiced(0.6) + silence(1.5)), tail_s=0.5)
    assert [(t.speaker, t.text) for t in session.record.turns][:2] == [("caller", "WHAT TIME IS IT"),
                                                                       ("bot", "It is noon.")]
    assert session.usage.prices["parrot"] == {"audio_s": 1.0}  # its list price, overridden by the YAML
    await session.close("test", ended_by="system")
    assert engines.list_prices()["parrot"] == {"audio_s": 0.25}
