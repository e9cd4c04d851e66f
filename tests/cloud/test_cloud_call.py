"""Whole calls through the call session with Deepgram, OpenAI and ElevenLabs (all
faked locally, real SDKs), healthy and misbehaving. Each asserts what the caller
heard (the texts the voice server turned into audio, and the bot audio itself) and
what the call record says."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.cloud.fake_elevenlabs import MS_PER_CHAR
from tests.cloud.fake_openai import FakeOpenAI
from tests.cloud.helpers import KEYS, CloudCall, cloud_agent, cloud_servers, make_cloud_call
from tests.synth import silence, voiced
from voxd.call.driver import DriveResult, drive, frames_of
from voxd.call.events import EngineError

CALLER = silence(2.5) + voiced(1.2, f0=140) + silence(4.0) + voiced(1.0, f0=220) + silence(4.0)
SCRIPT = [[("calculate", {"expression": "6*7"})], "Six times seven is 42.", "You're welcome. Goodbye!"]


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)


def bot_seconds(res: DriveResult) -> float:
    pcm = np.frombuffer(bytes(res.bot_audio), "<i2").reshape(-1, 320).astype(np.float64)
    return float((np.sqrt((pcm**2).mean(axis=1)) > 100).sum() * 0.02)


async def run(call: CloudCall) -> DriveResult:
    try:
        return await drive(call.session, frames_of(CALLER), tail_s=1.0, max_s=40)
    finally:
        await call.session.close("test_end")
        await call.session.engines.llm.aclose()  # the session does not close per-call LLM clients yet


async def test_whole_conversation_with_three_cloud_providers() -> None:
    async with cloud_servers(list(SCRIPT)) as s:
        call = make_cloud_call(cloud_agent(s))
        res = await run(call)
        rec = call.record
        assert call.said("caller") == ["What is six times seven?", "Thanks, that's all. Goodbye."]
        assert call.said("bot") == ["Hello, this is Acme.", "Six times seven is 42.", "You're welcome. Goodbye!"]
        # what the caller heard: exactly these clauses were voiced, and all of their audio was played
        assert s.elevenlabs.texts == ["Hello, this is Acme.", "Six times seven is 42.", "You're welcome.", "Goodbye!"]
        voiced_chars = sum(len(x.spoken) for x in s.elevenlabs.sessions)
        assert abs(bot_seconds(res) - voiced_chars * MS_PER_CHAR / 1000) < 0.1
        tc = rec.turns[2].tool_calls[0]
        assert (tc.name, tc.arguments, tc.result) == ("calculate", {"expression": "6*7"}, 42)
        # the LLM saw the tool result within the turn, and the transcript of each turn
        assert [m["role"] for m in s.openai.requests[1]["messages"][-3:]] == ["user", "assistant", "tool"]
        assert s.openai.requests[2]["messages"][-1] == {"role": "user", "content": "Thanks, that's all. Goodbye."}
        # one Deepgram socket for the whole call, finalized per turn, closed cleanly
        conn = s.deepgram.conns[0]
        assert len(s.deepgram.conns) == 1 and conn.messages.count("Finalize") == 2 and conn.messages[-1] == "CloseStream"
        usage = rec.metadata["usage"]
        p = usage["providers"]
        assert p["deepgram"]["requests"] == 2 and p["deepgram"]["units"]["audio_s"] > 2.0
        assert p["openai"]["requests"] == 3 and p["openai"]["units"]["completion_tokens"] == 21
        assert p["elevenlabs"]["units"]["characters"] == sum(map(len, s.elevenlabs.texts))
        assert usage["cost_usd"]["total"] > 0 and set(usage["cost_usd"]) == {"deepgram", "openai", "elevenlabs", "total"}
        assert all(t["first_byte_ms"] is not None for t in usage["turns"])
        assert "provider_switches" not in rec.metadata and not [e for e in call.events if isinstance(e, EngineError)]
        json.dumps(rec.to_dict())  # the record stays serialisable
        blob = json.dumps(rec.to_dict()) + repr(call.session.engines)
        assert not any(k in blob for k in ("dg-test-key", "sk-test-key", "xi-test-key"))


async def test_deepgram_1011_mid_utterance_reconnects_and_the_turn_survives() -> None:
    async with cloud_servers(list(SCRIPT), dg={"drop_after_s": 1.0}) as s:
        call = make_cloud_call(cloud_agent(s))
        await run(call)
        assert s.deepgram.conns[0].close_code == 1011 and len(s.deepgram.conns) == 2
        assert call.said("caller") == ["What is six times seven?", "Thanks, that's all. Goodbye."]
        assert s.elevenlabs.texts[1] == "Six times seven is 42."
        assert call.record.metadata["usage"]["providers"]["deepgram"]["units"]["reconnects"] == 1
        assert "provider_switches" not in call.record.metadata


async def test_deepgram_down_falls_back_to_local_recogniser_with_the_turn_replayed() -> None:
    async with cloud_servers(list(SCRIPT), dg={"reject_status": 503}) as s:
        stt = [{"engine": "deepgram", "base_url": s.deepgram.url, "options": {"max_reconnects": 1}},
               {"engine": "fake", "options": {"transcripts": ["what is six times seven", "thanks goodbye"]}}]
        call = make_cloud_call(cloud_agent(s, stt=stt))
        await run(call)
        assert call.said("caller") == ["what is six times seven", "thanks goodbye"]
        assert s.elevenlabs.texts[1:] == ["Six times seven is 42.", "You're welcome.", "Goodbye!"]
        sw = call.record.metadata["provider_switches"]
        assert [(x["role"], x["from_provider"], x["to_provider"]) for x in sw] == [("stt", "deepgram", "fake-stt")]
        errs = [e for e in call.events if isinstance(e, EngineError)]
        assert len(errs) == 1 and errs[0].role == "stt" and errs[0].detail["fallback"] == "fake-stt"


@pytest.mark.parametrize("fault", ["stall", "429x3", "500x3"])
async def test_llm_failing_before_first_token_is_answered_by_the_backup(fault: str) -> None:
    faults = ["stall"] if fault == "stall" else [fault[:3]] * 3
    backup = await FakeOpenAI([[("calculate", {"expression": "6*7"})], "It's 42, from the backup.", "Bye now!"]).start()
    async with cloud_servers(list(SCRIPT), oa_faults=faults) as s:
        s.extra.append(backup)
        llm = [{"engine": "openai", "base_url": s.openai.url, "first_token_timeout_s": 0.5, "max_retries": 2},
               {"engine": "openai-compatible", "base_url": backup.url, "model": "local"}]
        call = make_cloud_call(cloud_agent(s, llm=llm))
        await run(call)
        # the caller hears no apology and no dead-air filler: the backup's answer, then the rest of the call on it
        assert s.elevenlabs.texts == ["Hello, this is Acme.", "It's 42, from the backup.", "Bye now!"]
        assert call.said("bot")[1:] == ["It's 42, from the backup.", "Bye now!"]
        sw = call.record.metadata["provider_switches"]
        assert [(x["role"], x["from_provider"], x["to_provider"]) for x in sw] == [("llm", "openai", "openai-compatible")]
        assert len(s.openai.requests) == (1 if fault == "stall" else 3)
        assert call.record.metadata["usage"]["providers"]["openai"]["errors"] == 1


async def test_llm_stream_breaking_mid_sentence_ends_the_step_gracefully() -> None:
    backup = await FakeOpenAI(["You're welcome, goodbye!"]).start()
    async with cloud_servers([[("calculate", {"expression": "6*7"})], "That is forty two, my friend, truly."],
                             oa_faults=[None, "garbage"]) as s:  # type: ignore[list-item]
        s.extra.append(backup)
        llm = [{"engine": "openai", "base_url": s.openai.url}, {"engine": "openai-compatible", "base_url": backup.url}]
        call = make_cloud_call(cloud_agent(s, llm=llm))
        await run(call)
        # "That is" was streamed before the garbage: it is spoken, nothing odd is added, the next turn uses the backup
        assert call.said("bot") == ["Hello, this is Acme.", "That is", "You're welcome, goodbye!"]
        assert s.elevenlabs.texts == ["Hello, this is Acme.", "That is", "You're welcome, goodbye!"]
        assert call.record.metadata["provider_switches"][0]["reason"] == "openai: malformed JSON in stream"


@pytest.mark.parametrize("fault", ["reject", "stall", "drop", "quota"])
async def test_voice_failing_switches_to_the_backup_voice(fault: str) -> None:
    async with cloud_servers(list(SCRIPT), el_faults=[fault]) as s:
        voice = [{"engine": "elevenlabs", "base_url": s.elevenlabs.url, "voice_id": "voice123", "first_audio_timeout_s": 0.5},
                 {"engine": "fake"}]
        call = make_cloud_call(cloud_agent(s, voice=voice, greeting="Hello there, this is Acme calling you back."))
        res = await run(call)
        tts = call.session.engines.tts
        backup = tts.providers[1]  # type: ignore[attr-defined]
        if fault == "drop":  # the first three words were voiced by ElevenLabs; the backup says only the rest
            assert s.elevenlabs.sessions[0].spoken == "Hello there, this "
            assert backup.texts[0] == "is Acme calling you back."
        else:
            assert backup.texts[0] == "Hello there, this is Acme calling you back."
        # the rest of the call stays on the backup voice
        assert backup.texts[1:] == ["Six times seven is 42.", "You're welcome.", "Goodbye!"]
        assert len(s.elevenlabs.sessions) == (0 if fault == "reject" else 1)  # never asked again
        assert bot_seconds(res) > 3.0
        sw = call.record.metadata["provider_switches"]
        assert [(x["role"], x["from_provider"], x["to_provider"]) for x in sw] == [("tts", "elevenlabs", "fake-tts")]
        assert [e.role for e in call.events if isinstance(e, EngineError)] == ["tts"]
