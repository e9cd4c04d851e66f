"""Offline instant TTS: libespeak-ng from the `espeakng-loader` wheel, via ctypes.

espeak-ng is a formant synthesiser: robotic, but it produces its first audio within
milliseconds and costs under 1% of a core per second of speech. The library keeps
global state (one voice, one rate, one callback), so every synthesis in the process
runs under one lock, in the inference module's fast lane (it takes milliseconds, so
it never waits behind a whisper decode). It is used in synchronous mode: the library
calls our callback with each buffer of samples as it makes them, and the callback
hands them to the event loop at once, so even a long text starts playing
after the first buffer.
"""

from __future__ import annotations

import asyncio
import ctypes
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from voxd.media.frame import AudioChunk
from voxd.media.inference import package_file, run_fast
from voxd.providers.base import ProviderError, TextToSpeech
from voxd.providers.engines import BuildContext, EngineSpec, Options, register

if TYPE_CHECKING:
    from voxd.agents.schema import VoiceConfig

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_PARAM_PITCH = 3
_DEFAULT_RATE_WPM = 175
_BUFFER_MS = 60  # samples per callback

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class _Engine:
    """The process's one libespeak-ng instance; use only while holding `lock`."""

    lock = threading.Lock()

    def __init__(self) -> None:
        lib_path = package_file("espeakng_loader", "libespeak-ng.so")
        data_dir = Path(package_file("espeakng_loader", "espeak-ng-data", "phontab")).parent
        self.lib = ctypes.CDLL(lib_path)
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        rate = self.lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, str(data_dir.parent).encode(), _INITIALIZE_DONT_EXIT
        )
        if rate <= 0:
            raise ProviderError("espeak", f"espeak_Initialize failed ({rate}) with data {data_dir}")
        self.sample_rate = int(rate)
        self.sink: Callable[[bytes], bool] | None = None
        # Kept on the instance: ctypes must not free the callback while C holds it.
        self._callback = _SYNTH_CALLBACK(self._on_samples)
        self.lib.espeak_SetSynthCallback(self._callback)
        self._voice: str | None = None

    def _on_samples(self, wav: ctypes._Pointer[ctypes.c_short], n: int, _events: int | None) -> int:
        """Called by espeak with each buffer; returning 1 aborts the synthesis."""
        if n <= 0 or not wav or self.sink is None:
            return 0
        keep_going = self.sink(ctypes.string_at(wav, n * 2))
        return 0 if keep_going else 1

    def speak(self, text: str, voice: str, rate_wpm: int, pitch: int | None, sink: Callable[[bytes], bool]) -> None:
        """Synthesise `text`, feeding each buffer to `sink` (False from it aborts)."""
        if voice != self._voice:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ProviderError("espeak", f"unknown voice {voice!r}", retryable=False)
            self._voice = voice
        self.lib.espeak_SetParameter(_PARAM_RATE, rate_wpm, 0)
        if pitch is not None:
            self.lib.espeak_SetParameter(_PARAM_PITCH, pitch, 0)
        data = text.encode("utf-8") + b"\0"
        buf = ctypes.create_string_buffer(data, len(data))
        self.sink = sink
        try:
            status = self.lib.espeak_Synth(buf, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            self.lib.espeak_Synchronize()
        finally:
            self.sink = None
        if status != 0:
            raise ProviderError("espeak", f"espeak_Synth failed with status {status}")


_engine: _Engine | None = None


def _get_engine() -> _Engine:
    """Create the engine once; call while holding `_Engine.lock`."""
    global _engine
    if _engine is None:
        _engine = _Engine()
    return _engine


class EspeakTTS(TextToSpeech):
    """espeak-ng voice (e.g. "en-us", "en-us+f3", "en-gb"); `speed` scales 175 words/min."""

    name = "espeak"
    sample_rate = 22_050

    def __init__(self, voice: str | None = None, *, speed: float = 1.0, pitch: int | None = None) -> None:
        if not 0.3 < speed <= 3.0:
            raise ValueError(f"speed must be in (0.3, 3.0], got {speed}")
        self.voice = voice or "en-us"
        self.rate_wpm = max(80, min(450, round(_DEFAULT_RATE_WPM * speed)))
        self.pitch = pitch

    def synth_sync(self, text: str, sink: Callable[[bytes], bool] | None = None) -> bytes:
        """Synthesise all of `text` (blocking). With `sink`, buffers go there as they come."""
        chunks: list[bytes] = []

        def collect(pcm: bytes) -> bool:
            chunks.append(pcm)
            return True

        with _Engine.lock:
            engine = _get_engine()
            self.sample_rate = engine.sample_rate
            engine.speak(text, self.voice, self.rate_wpm, self.pitch, sink or collect)
        return b"".join(chunks)

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        if not text.strip():
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        cancelled = threading.Event()

        def sink(pcm: bytes) -> bool:
            if cancelled.is_set():
                return False
            loop.call_soon_threadsafe(queue.put_nowait, pcm)
            return True

        def run() -> None:
            try:
                self.synth_sync(text, sink)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        # espeak takes milliseconds: the fast lane keeps it from queuing behind decodes.
        job = asyncio.ensure_future(run_fast(run))
        try:
            while (pcm := await queue.get()) is not None:
                yield AudioChunk(pcm)
            await job  # re-raise a synthesis error
        finally:
            cancelled.set()  # the callback aborts espeak at its next buffer
            if not job.done():
                # Nobody awaits it now: consume its outcome so no error goes unretrieved.
                job.add_done_callback(lambda f: f.cancelled() or f.exception())

    async def warm_up(self) -> None:
        await run_fast(self.synth_sync, "Hello.")


# ---------------------------------------------------------------- registration


class EspeakEngineOptions(Options):
    pitch: int | None = None


def _build(cfg: VoiceConfig, opts: EspeakEngineOptions, ctx: BuildContext) -> EspeakTTS:
    return EspeakTTS(cfg.voice, speed=cfg.speed, **opts.given())


register(EngineSpec("tts", "espeak", _build, options=EspeakEngineOptions))
