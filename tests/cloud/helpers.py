"""Run a call session with cloud engines built by the real factories, pointed at the
local fake servers, on the virtual media clock (see voxd.call.driver)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.cloud.fake_deepgram import FakeDeepgram
from tests.cloud.fake_elevenlabs import FakeElevenLabs
from tests.cloud.fake_openai import FakeOpenAI, Reply
from tests.outbound import LOCAL
from voxd.agents.schema import AgentConfig
from voxd.call.events import CallEvent, EngineError
from voxd.call.ports import Engines, NullControl
from voxd.call.session import CallSession
from voxd.core.calllog import CallRecord, new_call_id
from voxd.providers import factory
from voxd.providers.fallback import bind_call
from voxd.providers.llm.factory import make_llm
from voxd.providers.pricing import CallUsage, Switch
from voxd.tools.builtins import default_registry

WORDS = {140: "What is six times seven?", 220: "Thanks, that's all. Goodbye."}
KEYS = {"DEEPGRAM_API_KEY": "dg-test-key", "OPENAI_API_KEY": "sk-test-key", "ELEVENLABS_API_KEY": "xi-test-key"}


@dataclass
class Servers:
    deepgram: FakeDeepgram
    openai: FakeOpenAI
    elevenlabs: FakeElevenLabs
    extra: list[Any] = field(default_factory=list)


@asynccontextmanager
async def cloud_servers(script: list[Reply], *, dg: dict[str, Any] | None = None, oa_faults: list[str] | None = None,
                        el_faults: list[str] | None = None) -> AsyncIterator[Servers]:
    s = Servers(await FakeDeepgram(WORDS, **(dg or {})).start(), await FakeOpenAI(script, oa_faults).start(),
                await FakeElevenLabs(el_faults).start())
    try:
        yield s
    finally:
        for x in [s.deepgram, s.openai, s.elevenlabs, *s.extra]:
            await x.stop()


def cloud_agent(s: Servers, **override: Any) -> AgentConfig:
    cfg: dict[str, Any] = {
        "name": "cloud",
        "greeting": "Hello, this is Acme.",
        "tools": ["calculate", "end_call"],
        "turn": {"detector": "silence", "min_silence_ms": 200, "max_silence_ms": 600},
        "stt": {"engine": "deepgram", "base_url": s.deepgram.url, "options": {"finalize_timeout_s": 2.0}},
        "llm": {"engine": "openai", "base_url": s.openai.url, "api_key_env": "OPENAI_API_KEY", "model": "gpt-4o-mini",
                "first_token_timeout_s": 1.0, "max_retries": 2},
        "voice": {"engine": "elevenlabs", "base_url": s.elevenlabs.url, "voice_id": "voice123",
                  "first_audio_timeout_s": 1.0},
    }
    cfg.update(override)
    return AgentConfig.model_validate(cfg)


@dataclass
class CloudCall:
    session: CallSession
    control: NullControl
    events: list[CallEvent]
    usage: CallUsage

    @property
    def record(self) -> CallRecord:
        return self.session.record

    def said(self, speaker: str = "bot") -> list[str]:
        return [t.text for t in self.record.turns if t.speaker == speaker]


def make_cloud_call(agent: AgentConfig) -> CloudCall:
    """What CallManager.engines_for + the session hook do (see docs/cloud-providers.md)."""
    factory.clear_cache()
    rec = CallRecord(id=new_call_id(), agent=agent.name, agent_version="1", transport="test")
    events: list[CallEvent] = []
    holder: dict[str, CallSession] = {}

    def on_switch(sw: Switch) -> None:  # the session would emit this as error.occurred
        holder["s"]._emit(EngineError(rec, sw.role, sw.message(), {"provider": sw.from_provider, "fallback": sw.to_provider}))

    stt, llm, tts, usage = bind_call(factory.make_stt(agent.stt, LOCAL), make_llm(agent, LOCAL), factory.make_tts(agent.voice, LOCAL),
                                     metadata=rec.metadata, on_switch=on_switch)

    async def confirm(_: Any) -> float:
        return 1.0

    control = NullControl()
    s = CallSession(agent, "1", Engines(stt=stt, llm=llm, tts=tts, confirm=confirm), default_registry(), control, rec,
                    on_event=events.append)
    holder["s"] = s
    return CloudCall(s, control, events, usage)
