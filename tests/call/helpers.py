from __future__ import annotations

from typing import Any

from voxd.agents.schema import AgentConfig
from voxd.call.events import CallEvent
from voxd.call.ports import Engines, NullControl
from voxd.call.session import CallSession
from voxd.core.calllog import CallRecord, new_call_id
from voxd.providers.base import SpeechToText
from voxd.providers.fakes import FakeLLM, FakeSTT, FakeTTS, Step
from voxd.tools.builtins import default_registry


def make_session(
    agent: dict[str, Any] | None = None,
    transcripts: list[str] | None = None,
    steps: list[Step] | None = None,
    *,
    confirm: bool = True,
    turn_prob: float | None = None,
    stt: SpeechToText | None = None,
) -> tuple[CallSession, NullControl, list[CallEvent], FakeTTS, FakeLLM]:
    cfg = {"name": "t", "greeting": "Hello there.", "tools": ["get_current_time", "calculate", "end_call"]}
    cfg.update(agent or {})
    ac = AgentConfig.model_validate(cfg)
    tts = FakeTTS()
    llm = FakeLLM(steps or [])

    async def always(_: Any) -> float:
        return 1.0 if confirm else 0.0

    async def turn_model(_: Any) -> float:
        assert turn_prob is not None
        return turn_prob

    engines = Engines(
        stt=stt or FakeSTT(transcripts or ["what time is it"]),
        llm=llm,
        tts=tts,
        confirm=always,
        turn_model=turn_model if turn_prob is not None else None,
    )
    control = NullControl()
    events: list[CallEvent] = []
    rec = CallRecord(id=new_call_id(), agent=ac.name, agent_version="1", transport="test")
    s = CallSession(ac, "1", engines, default_registry(), control, rec, on_event=events.append)
    return s, control, events, tts, llm
