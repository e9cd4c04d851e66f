"""Silero confirms speech onsets; Smart Turn tells a finished question from a cut one."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from voxd.media.audio import SAMPLE_RATE
from voxd.media.silero import SileroVAD
from voxd.media.turn import SmartTurn, log_mel

from . import speech

pytestmark = pytest.mark.engines


async def test_silero_speech_versus_silence_and_noise() -> None:
    vad = SileroVAD()
    onset = int((0.2 + 0.3) * SAMPLE_RATE)  # fixtures start with 200 ms of silence
    probs = [await vad.speech_probability(speech.load(v, "what_time")[:onset]) for v in speech.voices()]
    assert min(probs) > 0.5, probs
    rng = np.random.default_rng(3)
    assert await vad.speech_probability(np.zeros(SAMPLE_RATE // 2, dtype=np.int16)) < 0.1
    for level in (100, 1000, 5000):
        noise = (rng.standard_normal(SAMPLE_RATE // 2) * level).astype(np.int16)
        assert await vad.speech_probability(noise) < 0.3, level
    # Shorter than one 32 ms model step still works (padded), as does float input.
    assert 0.0 <= await vad.speech_probability(np.zeros(100, dtype=np.float32)) <= 1.0


async def test_smart_turn_complete_question_beats_cut_off_sentence() -> None:
    turn = SmartTurn()
    complete = {v: await turn.end_probability(speech.load(v, "what_time")) for v in speech.voices()}
    cut = {v: await turn.end_probability(speech.load(v, "speak_to_sales.cut")) for v in speech.voices()}
    assert statistics.mean(complete.values()) > statistics.mean(cut.values()) + 0.3, (complete, cut)
    assert sum(complete[v] > cut[v] for v in complete) >= len(complete) - 1, (complete, cut)


@pytest.mark.xfail(strict=True, reason="with the packages the registry serves on 2026-12-02 the cut sentence scores "
                   "0.83-0.95 against 0.98 whole (piper-joe, festival-kal), at the last landed commit too and with "
                   "onnxruntime 1.23: a dependency of feature extraction or resampling moved; issue 18's turn work "
                   "must find which and pin or adapt. strict: this fails again once it is fixed")
async def test_smart_turn_scores_a_cut_sentence_below_the_whole_one() -> None:
    turn = SmartTurn()
    # The same sentence, whole vs. stopped after "Can I speak to", on natural voices. A line
    # never delivers the same samples twice, and on one sample the cut sentence's score swings
    # from 0.15 to 0.9 with 2 LSB of noise (or with the CPU's SIMD kernels: AVX2 and AVX-512
    # builds of onnxruntime disagree on it), so judge the mean over copies with line noise.
    rng = np.random.default_rng(7)
    for voice in ("piper-joe", "festival-kal", "flite-awb"):
        whole = [await turn.end_probability(_line_noise(speech.load(voice, "speak_to_sales"), rng)) for _ in range(8)]
        part = [await turn.end_probability(_line_noise(speech.load(voice, "speak_to_sales.cut"), rng)) for _ in range(8)]
        assert min(whole) > 0.9, (voice, whole)
        assert statistics.mean(part) < statistics.mean(whole) - 0.35, (voice, whole, part)


def _line_noise(pcm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noisy = pcm.astype(np.int32) + rng.integers(-2, 3, pcm.size)
    return np.clip(noisy, -32768, 32767).astype(np.int16)


def test_features_are_whisper_log_mel_of_the_last_8_seconds() -> None:
    rng = np.random.default_rng(5)
    long = (rng.standard_normal(12 * SAMPLE_RATE) * 2000).astype(np.int16)
    feats = log_mel(long)
    assert feats.shape == (80, 800) and feats.dtype == np.float32
    assert np.allclose(feats, log_mel(long[-8 * SAMPLE_RATE :]))
    assert float(feats.max() - feats.min()) <= 2.0 + 1e-5
