"""Build speech engines from an agent's configuration, one instance per distinct config.

Engines are stateless between calls (per-call state lives in STT streams and TTS
iterators; model sessions are shared process-wide by voxd.media.inference), so every
agent with the same `stt:` or `voice:` block gets the same engine object.

Engine names: stt "whisper"; voice "piper", "espeak". The "fake" engines used by
timing tests live in `voxd.providers.fakes` and are imported only when asked for.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from voxd.agents.schema import STTConfig, VoiceConfig
from voxd.providers.base import SpeechToText, TextToSpeech

T = TypeVar("T")

_lock = threading.Lock()
_cache: dict[str, Any] = {}


def _cached(key: str, build: Callable[[], T]) -> T:
    with _lock:
        if key not in _cache:
            _cache[key] = build()
        return _cache[key]  # type: ignore[no-any-return]


def _fakes() -> Any:
    """The scripted test engines (another module's; imported only for engine: fake).

    A `make_stt(cfg)` / `make_tts(cfg)` there wins; otherwise the config's options are
    passed to FakeSTT / FakeTTS."""
    return importlib.import_module("voxd.providers.fakes")


def _options(options: dict[str, Any], allowed: set[str], where: str) -> dict[str, Any]:
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(
            f"{where}.options: unknown option(s) {sorted(unknown)}; expected some of {sorted(allowed)}"
        )
    return dict(options)


def _build_stt(cfg: STTConfig) -> SpeechToText:
    if cfg.engine == "whisper":
        from voxd.providers.stt.whisper import WhisperSTT

        opts = _options(cfg.options, {"beam_size", "threads", "compute_type"}, "stt")
        return WhisperSTT(cfg.model, language=cfg.language, **opts)
    raise ValueError(f"stt.engine: unknown engine {cfg.engine!r}")


def _build_tts(cfg: VoiceConfig) -> TextToSpeech:
    if cfg.engine == "piper":
        from voxd.providers.tts.piper import PiperTTS

        opts = _options(cfg.options, {"min_clause_words", "first_max_words"}, "voice")
        return PiperTTS(cfg.voice, speed=cfg.speed, **opts)
    if cfg.engine == "espeak":
        from voxd.providers.tts.espeak import EspeakTTS

        opts = _options(cfg.options, {"pitch"}, "voice")
        return EspeakTTS(cfg.voice, speed=cfg.speed, **opts)
    raise ValueError(f"voice.engine: unknown engine {cfg.engine!r}")


def make_stt(cfg: STTConfig) -> SpeechToText:
    """The speech recogniser for this config (shared with every identical config;
    fakes, which hold a script, are built fresh each time)."""
    if cfg.engine == "fake":
        fakes = _fakes()
        build = getattr(fakes, "make_stt", None)
        stt: SpeechToText = build(cfg) if build else fakes.FakeSTT(**cfg.options)
        return stt
    return _cached("stt:" + cfg.model_dump_json(), lambda: _build_stt(cfg))


def make_tts(cfg: VoiceConfig) -> TextToSpeech:
    """The voice for this config (shared with every identical config; fakes are built
    fresh each time)."""
    if cfg.engine == "fake":
        fakes = _fakes()
        build = getattr(fakes, "make_tts", None)
        tts: TextToSpeech = build(cfg) if build else fakes.FakeTTS(**cfg.options)
        return tts
    return _cached("tts:" + cfg.model_dump_json(), lambda: _build_tts(cfg))


def clear_cache() -> None:
    """Forget built engines (tests). Loaded models stay in the inference module."""
    with _lock:
        _cache.clear()
