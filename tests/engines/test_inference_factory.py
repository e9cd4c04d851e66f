"""The shared inference pool and the engine factory."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from voxd.agents.schema import STTConfig, VoiceConfig
from voxd.media import inference
from voxd.providers.factory import make_stt, make_tts
from voxd.providers.stt.whisper import WhisperSTT
from voxd.providers.tts.espeak import EspeakTTS
from voxd.providers.tts.piper import PiperTTS

pytestmark = pytest.mark.engines


async def test_inference_runs_off_the_event_loop() -> None:
    loop_thread = threading.current_thread().name
    names = await asyncio.gather(*(inference.run_inference(lambda: threading.current_thread().name) for _ in range(4)))
    assert all(n.startswith("voxd-infer") and n != loop_thread for n in names)
    assert inference.pool_size() >= 1


def test_shared_builds_once_under_concurrency() -> None:
    built: list[int] = []

    def build() -> object:
        time.sleep(0.05)
        built.append(1)
        return object()

    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(inference.shared("test:once", build))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 1 and all(r is results[0] for r in results)


def test_factory_shares_engines_per_config() -> None:
    stt = make_stt(STTConfig())
    assert isinstance(stt, WhisperSTT) and make_stt(STTConfig()) is stt
    assert make_stt(STTConfig(options={"beam_size": 2})) is not stt
    piper = make_tts(VoiceConfig())
    assert isinstance(piper, PiperTTS) and make_tts(VoiceConfig()) is piper
    espeak = make_tts(VoiceConfig(engine="espeak", voice="en-gb", speed=1.2))
    assert isinstance(espeak, EspeakTTS) and espeak.voice == "en-gb" and espeak.rate_wpm == 210
    with pytest.raises(ValueError, match="unknown option"):
        make_tts(VoiceConfig(engine="espeak", options={"volume": 3}))


def test_factory_fake_engines_come_from_fakes() -> None:
    from voxd.providers import fakes

    assert isinstance(make_stt(STTConfig(engine="fake")), fakes.FakeSTT)
    assert isinstance(make_tts(VoiceConfig(engine="fake")), fakes.FakeTTS)
