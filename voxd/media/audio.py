"""PCM helpers shared by every layer: frame constants, resampling, WAV I/O, levels.

The call pipeline runs on 16-bit mono PCM at 16 kHz in 20 ms frames. Transports
convert at their edge (G.711 8 kHz, Opus 48 kHz); engines convert at theirs.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import soxr

SAMPLE_RATE = 16_000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000
FRAME_BYTES = FRAME_SAMPLES * 2
SILENCE_FRAME = bytes(FRAME_BYTES)


def frame_samples(rate: int, ms: int = FRAME_MS) -> int:
    return rate * ms // 1000


def to_int16(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2")


def resample(pcm: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Resample a whole int16 buffer (soxr, no per-sample Python)."""
    if src_rate == dst_rate or pcm.size == 0:
        return pcm.astype(np.int16, copy=False)
    out = soxr.resample(pcm.astype(np.int16, copy=False), src_rate, dst_rate, quality="HQ")
    return np.asarray(out, dtype=np.int16)


class StreamResampler:
    """Streaming int16 resampler that keeps filter state across frames."""

    def __init__(self, src_rate: int, dst_rate: int) -> None:
        self.src_rate = src_rate
        self.dst_rate = dst_rate
        self._rs = (
            None
            if src_rate == dst_rate
            else soxr.ResampleStream(src_rate, dst_rate, 1, dtype="int16", quality="QQ")
        )

    def process(self, pcm: bytes, last: bool = False) -> bytes:
        if self._rs is None:
            return pcm
        out = self._rs.resample_chunk(np.frombuffer(pcm, dtype="<i2"), last=last)
        return bytes(np.asarray(out, dtype="<i2").tobytes())


class FrameSplitter:
    """Cuts arbitrary-length PCM into fixed-size frames, carrying the remainder."""

    def __init__(self, frame_bytes: int = FRAME_BYTES) -> None:
        self.frame_bytes = frame_bytes
        self._buf = bytearray()

    def push(self, pcm: bytes) -> list[bytes]:
        self._buf += pcm
        n = len(self._buf) // self.frame_bytes
        frames = [bytes(self._buf[i * self.frame_bytes : (i + 1) * self.frame_bytes]) for i in range(n)]
        del self._buf[: n * self.frame_bytes]
        return frames

    def flush(self) -> bytes | None:
        """Return the remainder padded with silence to a whole frame, if any."""
        if not self._buf:
            return None
        out = bytes(self._buf) + bytes(self.frame_bytes - len(self._buf))
        self._buf.clear()
        return out


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a mono or stereo 16-bit (or 8-bit/32-bit) WAV; returns mono int16 and its rate."""
    with wave.open(str(path), "rb") as w:
        rate = w.getframerate()
        channels = w.getnchannels()
        width = w.getsampwidth()
        raw = w.readframes(w.getnframes())
    if width == 2:
        data = np.frombuffer(raw, dtype="<i2")
    elif width == 1:
        data = ((np.frombuffer(raw, dtype=np.uint8).astype(np.int16) - 128) << 8).astype(np.int16)
    elif width == 4:
        data = (np.frombuffer(raw, dtype="<i4") >> 16).astype(np.int16)
    else:
        raise ValueError(f"{path}: unsupported sample width {width} bytes")
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return data, rate


def read_wav_as(path: str | Path, rate: int = SAMPLE_RATE) -> np.ndarray:
    data, src = read_wav(path)
    return resample(data, src, rate)


def write_wav(path: str | Path, pcm: np.ndarray | bytes, rate: int = SAMPLE_RATE) -> None:
    raw = pcm if isinstance(pcm, bytes) else np.asarray(pcm, dtype="<i2").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(raw)


def dbfs(pcm: bytes | np.ndarray) -> float:
    """RMS level in dBFS; -inf-safe (returns -120 for digital silence)."""
    a = to_int16(pcm) if isinstance(pcm, bytes) else pcm
    if a.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(a.astype(np.float32)))))
    if rms < 1e-6:
        return -120.0
    return 20.0 * float(np.log10(rms / 32768.0))
