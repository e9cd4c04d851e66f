"""Per-frame voice activity: the cheap first stage (webrtcvad).

webrtcvad costs microseconds per 20 ms frame and runs on the event loop. It is
twitchy on noise, so the call session asks Silero (`voxd.media.silero`, shared
ONNX session, off the loop) to confirm each onset before treating it as speech.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import webrtcvad

from voxd.media.audio import FRAME_BYTES, SAMPLE_RATE


class FrameVAD:
    """Classifies 20 ms 16 kHz frames as voiced or not, with a level gate.

    The level gate skips webrtcvad for near-silent frames (cheaper, and avoids its
    habit of flagging low-level hiss on some trunks).
    """

    def __init__(self, aggressiveness: int = 2, min_dbfs: float = -50.0) -> None:
        self._vad = webrtcvad.Vad(aggressiveness)
        # int16 mean-square threshold equivalent to min_dbfs
        self._min_ms = (32768.0 * 10 ** (min_dbfs / 20.0)) ** 2

    def is_voiced(self, frame: bytes) -> bool:
        if len(frame) != FRAME_BYTES:
            return False
        # cheap energy gate over every 4th sample
        a = np.frombuffer(frame, dtype="<i2")[::4].astype(np.int32)
        if float(np.dot(a, a)) / a.size < self._min_ms:
            return False
        return bool(self._vad.is_speech(frame, SAMPLE_RATE))


class Preroll:
    """Keeps the last few frames so speech captured after an onset decision
    still includes its first syllable."""

    def __init__(self, frames: int = 15) -> None:
        self._buf: deque[bytes] = deque(maxlen=frames)

    def push(self, frame: bytes) -> None:
        self._buf.append(frame)

    def take(self) -> list[bytes]:
        out = list(self._buf)
        self._buf.clear()
        return out

    def peek(self, frames: int) -> bytes:
        return b"".join(list(self._buf)[-frames:])
