"""Build speech engines from an agent's configuration, one instance per distinct config.

Engines are stateless between calls (per-call state lives in STT streams and TTS
iterators; model sessions are shared process-wide by voxd.media.inference), so every
agent with the same `stt:` or `voice:` block gets the same engine object.

Engine names: stt "whisper", "deepgram"; voice "piper", "espeak", "elevenlabs". The
"fake" engines used by timing tests live in `voxd.providers.fakes` and are imported
only when asked for. A config with a `fallback:` list becomes a chain
(`voxd.providers.fallback`) of the engines it names.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from voxd.agents.schema import STTConfig, VoiceConfig
from voxd.core.secrets import Outbound
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


def _build_stt(cfg: STTConfig, out: Outbound) -> SpeechToText:
    if cfg.engine == "whisper":
        from voxd.providers.stt.whisper import WhisperSTT

        opts = _options(cfg.options, {"beam_size", "threads", "compute_type"}, "stt")
        return WhisperSTT(cfg.model, language=cfg.language, **opts)
    if cfg.engine == "deepgram":
        from voxd.providers.keys import api_key
        from voxd.providers.stt.deepgram import DeepgramOptions, DeepgramSTT

        allowed = {"interim_results", "endpointing", "utterance_end_ms", "vad_events", "smart_format",
                   "punctuate", "keepalive_s", "finalize_timeout_s", "settled_grace_s", "max_reconnects",
                   "encoding", "extra"}
        opts = _options(cfg.options, allowed, "stt")
        model = cfg.model if "model" in cfg.model_fields_set else "nova-3"
        dg = DeepgramSTT(api_key(cfg, "deepgram", out),
                         DeepgramOptions(model=model, language=cfg.language, **opts), base_url=cfg.base_url,
                         policy=out.policy)
        dg.prices = dict(cfg.prices)  # type: ignore[attr-defined]
        return dg
    raise ValueError(f"stt.engine: unknown engine {cfg.engine!r}")


def _build_tts(cfg: VoiceConfig, out: Outbound) -> TextToSpeech:
    if cfg.engine == "piper":
        from voxd.providers.tts.piper import PiperTTS

        opts = _options(cfg.options, {"min_clause_words", "first_max_words"}, "voice")
        return PiperTTS(cfg.voice, speed=cfg.speed, **opts)
    if cfg.engine == "espeak":
        from voxd.providers.tts.espeak import EspeakTTS

        opts = _options(cfg.options, {"pitch"}, "voice")
        return EspeakTTS(cfg.voice, speed=cfg.speed, **opts)
    if cfg.engine == "elevenlabs":
        from voxd.providers.keys import api_key
        from voxd.providers.tts.elevenlabs import ElevenLabsTTS

        opts = _options(cfg.options, {"stability", "similarity_boost", "chunk_length_schedule", "idle_timeout_s"}, "voice")
        assert cfg.voice_id
        el = ElevenLabsTTS(api_key(cfg, "elevenlabs", out), cfg.voice_id, model=cfg.model,
                           output_format=cfg.output_format, base_url=cfg.base_url, speed=cfg.speed,
                           first_audio_timeout_s=cfg.first_audio_timeout_s, policy=out.policy, **opts)
        el.prices = dict(cfg.prices)  # type: ignore[attr-defined]
        return el
    raise ValueError(f"voice.engine: unknown engine {cfg.engine!r}")


def _chain(role: str, cfgs: list[Any], build: Callable[[Any], T]) -> list[T]:
    """The engines of a fallback chain; one that cannot be built at all (no key) is
    skipped with an error in the log, unless it is the only one."""
    from voxd.providers.base import ProviderError

    engines: list[T] = []
    for i, c in enumerate(cfgs):
        try:
            engines.append(build(c.model_copy(update={"fallback": []})))
        except ProviderError as e:
            if i == len(cfgs) - 1 and not engines:
                raise
            logging.getLogger("voxd.providers").error("%s engine %s left out of the chain: %s", role, c.engine, e)
    return engines


def make_stt(cfg: STTConfig, outbound: Outbound | None = None) -> SpeechToText:
    """The speech recogniser for this config (shared with every identical config under the
    same outbound policy; fakes, which hold a script, are built fresh each time)."""
    out = outbound or Outbound()
    if cfg.fallback:
        from voxd.providers.fallback import FallbackSTT

        return FallbackSTT(_chain("stt", [cfg, *cfg.fallback], lambda c: make_stt(c, out)))
    if cfg.engine == "fake":
        fakes = _fakes()
        build = getattr(fakes, "make_stt", None)
        stt: SpeechToText = build(cfg) if build else fakes.FakeSTT(**cfg.options)
        return stt
    return _cached(f"stt:{cfg.model_dump_json()}:{out!r}", lambda: _build_stt(cfg, out))


def make_tts(cfg: VoiceConfig, outbound: Outbound | None = None) -> TextToSpeech:
    """The voice for this config (shared with every identical config under the same
    outbound policy; fakes are built fresh each time)."""
    out = outbound or Outbound()
    if cfg.fallback:
        from voxd.providers.fallback import FallbackTTS

        return FallbackTTS(_chain("voice", [cfg, *cfg.fallback], lambda c: make_tts(c, out)))
    if cfg.engine == "fake":
        fakes = _fakes()
        build = getattr(fakes, "make_tts", None)
        tts: TextToSpeech = build(cfg) if build else fakes.FakeTTS(**cfg.options)
        return tts
    return _cached(f"tts:{cfg.model_dump_json()}:{out!r}", lambda: _build_tts(cfg, out))


def clear_cache() -> None:
    """Forget built engines (tests). Loaded models stay in the inference module."""
    with _lock:
        _cache.clear()
