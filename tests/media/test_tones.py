"""In-band DTMF: Goertzel detector against generated tones, noise and real speech."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from voxd.media.tones import DtmfDetector, generate_dtmf

SPEECH = Path(__file__).resolve().parent.parent / "data" / "speech"


def detect(pcm: np.ndarray, rate: int = 8000, chunk_ms: int = 20) -> str:
    det = DtmfDetector(rate)
    step = rate * chunk_ms // 1000
    return "".join(d for i in range(0, len(pcm), step) for d in det.feed(pcm[i : i + step]))


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("chunk_ms", [10, 20, 37])
def test_all_sixteen_digits_once_each(rate, chunk_ms):
    digits = "0123456789*#ABCD"
    assert detect(generate_dtmf(digits, rate), rate, chunk_ms) == digits


def test_long_key_press_is_one_digit():
    assert detect(generate_dtmf("8", tone_ms=1500, gap_ms=200)) == "8"


def test_repeated_digit_needs_a_gap():
    assert detect(generate_dtmf("55", tone_ms=60, gap_ms=45)) == "55"
    # a 5 ms dropout inside one press does not double the digit
    pcm = generate_dtmf("5", tone_ms=200, gap_ms=0)
    pcm[800:840] = 0
    assert detect(pcm) == "5"


@pytest.mark.parametrize(("tone_ms", "expected"), [(15, ""), (20, ""), (45, "9"), (60, "9")])
def test_minimum_duration(tone_ms, expected):
    assert detect(generate_dtmf("9", tone_ms=tone_ms, gap_ms=100)) == expected


def test_level_and_twist_limits():
    assert detect(generate_dtmf("3", level_dbfs=-30)) == "3"
    assert detect(generate_dtmf("3", level_dbfs=-50)) == ""
    assert detect(generate_dtmf("3", twist_db=4)) == "3"
    assert detect(generate_dtmf("3", twist_db=14)) == ""
    assert detect(generate_dtmf("3", twist_db=-14)) == ""


def test_single_tones_and_noise_are_not_digits():
    rng = np.random.default_rng(7)
    t = np.arange(8000) / 8000
    for freq in (697, 1209, 1000, 1336):
        assert detect((8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)) == ""
    assert detect(rng.normal(0, 4000, 8000 * 3).astype(np.int16)) == ""


def test_digits_survive_noise_and_mulaw():
    from voxd.proto.g711 import ulaw_decode, ulaw_encode

    rng = np.random.default_rng(3)
    pcm = generate_dtmf("147*", level_dbfs=-12).astype(np.float64)
    pcm += rng.normal(0, 300, len(pcm))
    coded = ulaw_decode(ulaw_encode(np.clip(pcm, -32768, 32767).astype(np.int16)))
    assert detect(coded) == "147*"


def _speech_files() -> list[Path]:
    return sorted(SPEECH.glob("*/*.8k.wav")) + sorted(SPEECH.glob("*/*.16k.wav"))


@pytest.mark.skipif(not _speech_files(), reason="speech fixtures not present")
def test_no_talk_off_on_real_speech_and_digits_over_speech():
    for path in _speech_files():
        with wave.open(str(path)) as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        if rate not in (8000, 16000):
            continue
        assert detect(pcm, rate, chunk_ms=200) == "", path.name
    with wave.open(str(_speech_files()[0])) as w:
        speech = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float64)
    tones = generate_dtmf("42", tone_ms=100, gap_ms=300, level_dbfs=-6).astype(np.float64)
    mixed = speech[: len(tones)] * 0.1 + tones
    assert detect(np.clip(mixed, -32768, 32767).astype(np.int16)) == "42"


def test_generator_rejects_bad_digit_and_detector_bad_rate():
    with pytest.raises(ValueError):
        generate_dtmf("x")
    with pytest.raises(ValueError):
        DtmfDetector(44100)
