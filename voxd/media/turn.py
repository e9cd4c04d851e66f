"""Smart Turn v3: has the caller finished their turn, judged from how they sound.

The model (pipecat's bundled `smart-turn-v3.2-cpu.onnx`, 8 MB) is a Whisper-encoder
classifier. It takes Whisper-style log-mel features of exactly 8 s of 16 kHz audio
(the end of the turn, zero-padded at the front when shorter) and returns the
probability that the speaker has finished. Features are computed here with numpy
(no torch, no transformers); one onnxruntime session is shared by every call and
every inference runs in the inference pool, never on the event loop.

Feature recipe (Whisper's, with an 8 s window): waveform normalised to zero mean and
unit variance; 400-sample periodic-Hann STFT with hop 160, reflect-padded by 200 at
both ends; power spectrum projected onto 80 Slaney-normalised mel filters over
0-8 kHz; log10 with a 1e-10 floor; the last frame dropped; values clamped to 8
below the maximum and mapped by (x + 4) / 4. Shape (80, 800).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from voxd.media.audio import SAMPLE_RATE
from voxd.media.inference import onnx_session, package_file, run_inference

WINDOW_S = 8
WINDOW_SAMPLES = WINDOW_S * SAMPLE_RATE
N_FFT = 400
HOP = 160
N_MELS = 80


def model_path() -> str:
    """Path of the Smart Turn v3 ONNX file inside the pipecat-ai wheel."""
    return package_file(
        "pipecat", "audio", "turn", "smart_turn", "data", "smart-turn-v3.2-cpu.onnx"
    )


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3.0)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * (200.0 / 3.0)
    log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log_part, linear)


def mel_filters(n_mels: int = N_MELS, n_fft: int = N_FFT, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Slaney-normalised triangular filters, shape (n_mels, n_fft // 2 + 1)."""
    bins = np.linspace(0.0, rate / 2, n_fft // 2 + 1)
    top = _hz_to_mel(np.array(rate / 2))
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.array(0.0)), top, n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / (centre - lower)
    falling = (upper - bins[None, :]) / (upper - centre)
    tri = np.clip(np.minimum(rising, falling), 0.0, None)
    area = 2.0 / (edges[2:] - edges[:-2])
    return np.asarray(tri * area[:, None], dtype=np.float32)


_MEL = mel_filters()
_HANN = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)


def log_mel(pcm16k: np.ndarray) -> np.ndarray:
    """Smart Turn input features for the last 8 s of `pcm16k` (int16 or float), (80, 800)."""
    x = np.asarray(pcm16k).reshape(-1)
    x = x.astype(np.float32) / 32768.0 if x.dtype == np.int16 else x.astype(np.float32)
    x = x[-WINDOW_SAMPLES:]
    if x.size < WINDOW_SAMPLES:
        x = np.concatenate([np.zeros(WINDOW_SAMPLES - x.size, dtype=np.float32), x])
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    padded = np.pad(x, N_FFT // 2, mode="reflect")
    frames = sliding_window_view(padded, N_FFT)[::HOP]
    power = np.abs(np.fft.rfft(frames * _HANN, axis=-1)) ** 2  # (801, 201)
    mel = np.log10(np.maximum(power @ _MEL.T, 1e-10)).T[:, :-1]  # (80, 800)
    mel = np.maximum(mel, mel.max() - 8.0)
    return np.asarray((mel + 4.0) / 4.0, dtype=np.float32)


class SmartTurn:
    """End-of-turn probability for the caller's audio so far (16 kHz mono)."""

    def __init__(self, path: str | None = None) -> None:
        self._path = path or model_path()

    def end_probability_sync(self, pcm16k: np.ndarray) -> float:
        """Blocking version of `end_probability` (for the inference pool and benchmarks)."""
        features = log_mel(pcm16k)[np.newaxis]
        (out,) = onnx_session(self._path).run(None, {"input_features": features})
        return float(np.asarray(out).reshape(-1)[0])

    def warm_up_sync(self) -> None:
        self.end_probability_sync(np.zeros(SAMPLE_RATE, dtype=np.int16))

    async def warm_up(self) -> None:
        await run_inference(self.warm_up_sync)

    async def end_probability(self, pcm16k: np.ndarray) -> float:
        """Probability in [0, 1] that the turn in `pcm16k` is complete (the last 8 s
        are used), computed off the event loop."""
        return await run_inference(self.end_probability_sync, np.array(pcm16k, copy=True))
