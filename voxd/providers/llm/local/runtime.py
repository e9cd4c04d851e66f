"""The process-wide table of running local models: one `Runtime` per packaged model,
shared by all calls, configured once from voxd.yaml (``local_llm:``) by the daemon.
Without a daemon (``voxd call``, tests) the defaults apply and the models folder is
$VOXD_MODELS_DIR, else <state dir>/models."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

from voxd.config.local_llm import LocalLLMConfig
from voxd.providers.base import ProviderError
from voxd.providers.llm.local import catalog
from voxd.providers.llm.local.supervisor import NAME, Runtime

log = logging.getLogger("voxd.providers.local_llm")

_settings = LocalLLMConfig()
_state_dir: Path | None = None
_runtimes: dict[str, Runtime] = {}


def configure(settings: LocalLLMConfig, state_dir: Path) -> None:
    global _settings, _state_dir
    _settings, _state_dir = settings, state_dir


def settings() -> LocalLLMConfig:
    return _settings


def models_dir() -> Path:
    if _settings.models_dir:
        return Path(_settings.models_dir)
    env = os.environ.get("VOXD_MODELS_DIR")
    if env:
        return Path(env)
    from voxd.config import resolve_state_dir

    return (_state_dir or resolve_state_dir(None)) / "models"


def runtime(model: str) -> Runtime:
    """The running (or starting) runtime of `model`; ProviderError when it is not installed."""
    rt = _runtimes.get(model)
    loop = asyncio.get_running_loop()
    if rt is not None and rt.loop is loop:
        return rt
    if rt is not None:  # left over from another event loop (tests): its tasks are gone
        for p in rt.procs:
            p.restart("event loop changed")
    try:
        path = catalog.installed(models_dir(), model)
    except catalog.ModelError as e:
        raise ProviderError(NAME, str(e), retryable=False) from None
    if path is None:
        raise ProviderError(NAME, f"model {model} is not installed in {models_dir()} "
                            f"(voxd models install {model})", retryable=True)
    rt = _runtimes[model] = Runtime(model, path, _settings)
    rt.start()
    return rt


def health() -> dict[str, Any]:
    return {name: rt.health() for name, rt in _runtimes.items()}


def ready() -> bool:
    """Every model in use has at least one slot that can generate."""
    return all(rt.health()["ready"] for rt in _runtimes.values())


async def shutdown() -> None:
    for rt in list(_runtimes.values()):
        try:
            await rt.stop()
        except Exception:
            log.exception("stopping local model %s", rt.name)
    _runtimes.clear()
