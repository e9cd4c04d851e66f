"""scripts/bench_turns.py's scoring: voxd's turn-taking over an utterance with a pause,
with scripted models (no engines): a cut-off is counted where the turn ends in the pause."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

from voxd.agents.schema import TurnConfig
from voxd.media.audio import SAMPLE_RATE

SCRIPT = Path(__file__).parents[2] / "scripts" / "bench_turns.py"


def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_turns", SCRIPT)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_turns"] = mod
    spec.loader.exec_module(mod)
    return mod


class Scripted:
    """Silero always says speech; the turn model says `p`; each answer takes `ms`."""

    def __init__(self, p: float, ms: float = 40.0) -> None:
        self.p, self.ms = p, ms

    def confirm(self, window: np.ndarray) -> tuple[float, float]:
        return 1.0, 5.0

    def end_probability(self, audio: np.ndarray) -> tuple[float, float]:
        return self.p, self.ms


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    voiced = 8000 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 4 * t))
    return voiced.astype(np.int16)


def utterance(b: ModuleType, pause_ms: int) -> object:
    lead = np.zeros(SAMPLE_RATE // 5, np.int16)
    a, gap, c = tone(0.8), np.zeros(int(pause_ms * SAMPLE_RATE / 1000), np.int16), tone(0.6)
    pcm = np.concatenate([lead, a, gap, c]) if pause_ms else np.concatenate([lead, a])
    end = len(pcm) / SAMPLE_RATE
    return b.Utterance("fake", "x", pause_ms, pcm, end, 1.0 if pause_ms else None, 1.0 + pause_ms / 1000)


def test_a_confident_turn_model_cuts_a_long_pause_and_silence_does_not() -> None:
    b = bench()
    silence = TurnConfig(detector="silence", min_silence_ms=200, max_silence_ms=1000)
    smart = TurnConfig(detector="smart_turn", min_silence_ms=200, max_silence_ms=1000)
    u = utterance(b, 700)
    assert b.score(u, b.simulate(u, silence, Scripted(0.9)))[0] is False
    cut, _ = b.score(u, b.simulate(u, smart, Scripted(0.9)))
    assert cut is True
    # a turn model that never says "done" waits for the silence cap
    cut, latency = b.score(u, b.simulate(u, smart, Scripted(0.1)))
    assert cut is False and 950 <= latency <= 1100


def test_latency_on_a_complete_utterance_includes_the_model_time() -> None:
    b = bench()
    smart = TurnConfig(detector="smart_turn", min_silence_ms=200, max_silence_ms=1000)
    u = utterance(b, 0)
    fast = b.score(u, b.simulate(u, smart, Scripted(0.9, ms=10)))[1]
    slow = b.score(u, b.simulate(u, smart, Scripted(0.9, ms=300)))[1]
    assert fast is not None and slow is not None
    assert 180 <= fast <= 280 and 260 <= slow - fast <= 320
