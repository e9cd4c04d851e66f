"""Build speech engines from an agent's configuration, one instance per distinct config.

Engines are stateless between calls (per-call state lives in STT streams and TTS
iterators; model sessions are shared process-wide by voxd.media.inference), so every
agent with the same `stt:` or `voice:` block gets the same engine object.

Which engine a name builds, with which options, is the engine's own registration
(`voxd.providers.engines`): this module only shares, chains and type-checks them. A
config with a `fallback:` list becomes a chain (`voxd.providers.fallback`) of the
engines it names. Engines registered with ``shared=False`` (the scripted fakes, which
hold a script) are built fresh each time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from voxd.agents.schema import STTConfig, VoiceConfig
from voxd.core.secrets import Outbound
from voxd.providers import engines
from voxd.providers.base import SpeechToText, TextToSpeech
from voxd.providers.engines import BuildContext

T = TypeVar("T")

_lock = threading.Lock()
_cache: dict[str, Any] = {}


def _cached(key: str, build: Callable[[], T]) -> T:
    with _lock:
        if key not in _cache:
            _cache[key] = build()
        return _cache[key]  # type: ignore[no-any-return]


def _chain(role: str, cfgs: list[Any], build: Callable[[Any], T]) -> list[T]:
    """The engines of a fallback chain; one that cannot be built at all (no key) is
    skipped with an error in the log, unless it is the only one."""
    from voxd.providers.base import ProviderError

    out: list[T] = []
    for i, c in enumerate(cfgs):
        try:
            out.append(build(c.model_copy(update={"fallback": []})))
        except ProviderError as e:
            if i == len(cfgs) - 1 and not out:
                raise
            logging.getLogger("voxd.providers").error("%s engine %s left out of the chain: %s", role, c.engine, e)
    return out


def _not_a(cfg: Any, engine: object, kind: str) -> TypeError:
    return TypeError(f"engine {cfg.engine!r} built a {type(engine).__name__}, not a {kind}")


def _build_stt(cfg: STTConfig, out: Outbound) -> SpeechToText:
    engine = engines.build("stt", cfg, BuildContext(out))
    if not isinstance(engine, SpeechToText):
        raise _not_a(cfg, engine, "SpeechToText")
    return engine


def _build_tts(cfg: VoiceConfig, out: Outbound) -> TextToSpeech:
    engine = engines.build("tts", cfg, BuildContext(out))
    if not isinstance(engine, TextToSpeech):
        raise _not_a(cfg, engine, "TextToSpeech")
    return engine


def make_stt(cfg: STTConfig, outbound: Outbound | None = None) -> SpeechToText:
    """The speech recogniser for this config (shared with every identical config under the
    same outbound policy, unless its engine is registered unshared)."""
    out = outbound or Outbound()
    if cfg.fallback:
        from voxd.providers.fallback import FallbackSTT

        return FallbackSTT(_chain("stt", [cfg, *cfg.fallback], lambda c: make_stt(c, out)))
    if not engines.spec("stt", cfg.engine).shared:
        return _build_stt(cfg, out)
    return _cached(f"stt:{cfg.model_dump_json()}:{out!r}", lambda: _build_stt(cfg, out))


def make_tts(cfg: VoiceConfig, outbound: Outbound | None = None) -> TextToSpeech:
    """The voice for this config (shared with every identical config under the same
    outbound policy, unless its engine is registered unshared)."""
    out = outbound or Outbound()
    if cfg.fallback:
        from voxd.providers.fallback import FallbackTTS

        return FallbackTTS(_chain("voice", [cfg, *cfg.fallback], lambda c: make_tts(c, out)))
    if not engines.spec("tts", cfg.engine).shared:
        return _build_tts(cfg, out)
    return _cached(f"tts:{cfg.model_dump_json()}:{out!r}", lambda: _build_tts(cfg, out))


def clear_cache() -> None:
    """Forget built engines (tests). Loaded models stay in the inference module."""
    with _lock:
        _cache.clear()
