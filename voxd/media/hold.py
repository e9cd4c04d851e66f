"""Hold audio: what a caller hears while voxd holds it (an attended transfer's
consultation).

Either a WAV file of the operator's (any rate, mono or stereo: converted to the
pipeline's 16 kHz mono once, then looped) or, without one, a generated pattern: two
soft tones (440 Hz then 480 Hz, 300 ms each, -20 dBFS peak) every 3 seconds, so the
caller knows the line is alive. Frames are the pipeline's 20 ms `AudioFrame`s.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from voxd.media.audio import FRAME_BYTES, FRAME_SAMPLES, SAMPLE_RATE, read_wav_as
from voxd.media.frame import AudioFrame

PATTERN_S = 3.0
TONES = ((440.0, 0.3), (480.0, 0.3))
LEVEL_DBFS = -20.0


def tone_pattern(rate: int = SAMPLE_RATE) -> np.ndarray:
    """One period of the generated hold pattern (int16): the tones, then silence."""
    amp = 32767 * 10 ** (LEVEL_DBFS / 20)
    parts: list[np.ndarray] = []
    for freq, seconds in TONES:
        n = int(seconds * rate)
        t = np.arange(n) / rate
        ramp = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.01 * rate))  # 10 ms fades
        parts.append(amp * ramp * np.sin(2 * np.pi * freq * t))
    used = sum(len(p) for p in parts)
    parts.append(np.zeros(int(PATTERN_S * rate) - used))
    return np.concatenate(parts).astype(np.int16)


class HoldAudio:
    """Loops one buffer of 16 kHz PCM as 20 ms frames."""

    def __init__(self, pcm: np.ndarray) -> None:
        if pcm.size < FRAME_SAMPLES:
            raise ValueError("hold audio is shorter than one 20 ms frame")
        usable = pcm.size - pcm.size % FRAME_SAMPLES
        self._data = pcm[:usable].astype("<i2").tobytes()
        self._pos = 0
        self.frames = 0  # frames handed out

    @classmethod
    def load(cls, path: str | Path | None) -> HoldAudio:
        """The operator's file, else the generated pattern. A bad file raises ValueError
        naming it (checked when the configuration is loaded)."""
        if path is None:
            return cls(tone_pattern())
        try:
            pcm = read_wav_as(path, SAMPLE_RATE)
        except (OSError, EOFError, ValueError, wave.Error) as e:
            raise ValueError(f"hold audio {path}: {e}") from None
        return cls(pcm)

    def fresh(self) -> HoldAudio:
        """The same audio from its start, for another call."""
        other = HoldAudio.__new__(HoldAudio)
        other._data, other._pos, other.frames = self._data, 0, 0
        return other

    def next_frame(self) -> AudioFrame:
        chunk = self._data[self._pos:self._pos + FRAME_BYTES]
        self._pos = (self._pos + FRAME_BYTES) % len(self._data)
        self.frames += 1
        return AudioFrame(chunk)
