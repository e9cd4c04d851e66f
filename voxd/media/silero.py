"""Silero VAD as a second opinion: confirms that a cheap webrtcvad onset is speech.

The model is pipecat's bundled `silero_vad.onnx`, run with onnxruntime through one
session shared by every call in the process. It is not run per frame: when the
per-frame VAD reports an onset, the session asks `speech_probability` about the
last ~250 ms, which is run from a fresh recurrent state (so calls never leak state
into each other and the session needs no per-call object) off the event loop.

The model takes 512-sample windows at 16 kHz, each preceded by the previous
window's last 64 samples as context, and a (2, batch, 128) recurrent state.
"""

from __future__ import annotations

import numpy as np

from voxd.media.audio import SAMPLE_RATE
from voxd.media.inference import onnx_session, package_file, run_fast, run_inference

WINDOW = 512  # samples per model step at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous step prepended to each step
_STATE_SHAPE = (2, 1, 128)


def model_path() -> str:
    """Path of the Silero VAD ONNX file inside the pipecat-ai wheel."""
    return package_file("pipecat", "audio", "vad", "data", "silero_vad.onnx")


def _as_float(pcm: np.ndarray) -> np.ndarray:
    if pcm.dtype == np.int16:
        return pcm.astype(np.float32) / 32768.0
    return np.asarray(pcm, dtype=np.float32)


class SileroVAD:
    """Speech probability of a short stretch of 16 kHz audio.

    `window_ms` is how much of the end of the given audio is scored (rounded up to
    32 ms model steps); the result is the highest per-step probability.
    """

    def __init__(self, window_ms: int = 256) -> None:
        if window_ms < 32:
            raise ValueError(f"window_ms must be at least 32 (one model step), got {window_ms}")
        self.steps = -(-window_ms * SAMPLE_RATE // 1000 // WINDOW)
        self._path = model_path()

    def warm_up_sync(self) -> None:
        """Load the shared session and run it once (blocking: call off-loop)."""
        self.probability_sync(np.zeros(WINDOW, dtype=np.int16))

    async def warm_up(self) -> None:
        await run_inference(self.warm_up_sync)

    def probability_sync(self, pcm16k: np.ndarray) -> float:
        """Blocking version of `speech_probability` (for the inference pool and benchmarks)."""
        session = onnx_session(self._path)
        x = _as_float(np.asarray(pcm16k).reshape(-1))
        need = self.steps * WINDOW
        if x.size >= need:
            x = x[-need:]
        else:
            # Score what there is; pad the front so the model sees whole steps.
            n = max(1, -(-x.size // WINDOW)) * WINDOW
            x = np.concatenate([np.zeros(n - x.size, dtype=np.float32), x])
        state = np.zeros(_STATE_SHAPE, dtype=np.float32)
        sr = np.array(SAMPLE_RATE, dtype=np.int64)
        context = np.zeros(CONTEXT, dtype=np.float32)
        best = 0.0
        for i in range(0, x.size, WINDOW):
            chunk = x[i : i + WINDOW]
            inp = np.concatenate([context, chunk])[np.newaxis, :]
            out, state = session.run(None, {"input": inp, "state": state, "sr": sr})
            best = max(best, float(np.asarray(out).reshape(-1)[0]))
            context = chunk[-CONTEXT:]
        return best

    async def speech_probability(self, pcm16k: np.ndarray) -> float:
        """Highest speech probability over the last `window_ms` of `pcm16k` (int16 or
        float in [-1, 1], 16 kHz mono), computed off the event loop in the fast lane
        (never queued behind long decodes)."""
        return await run_fast(self.probability_sync, np.array(pcm16k, copy=True))
