from __future__ import annotations

import numpy as np

from voxd.media.audio import SAMPLE_RATE


def voiced(seconds: float, f0: float = 140.0, level: float = 3000.0) -> bytes:
    """A speech-like harmonic signal that webrtcvad classifies as voice."""
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    f = f0 + 20 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(f) / SAMPLE_RATE
    sig = sum(np.sin(k * phase) / k for k in range(1, 20))
    env = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    return (sig * env * level).astype("<i2").tobytes()


def silence(seconds: float) -> bytes:
    return bytes(int(seconds * SAMPLE_RATE) * 2)


