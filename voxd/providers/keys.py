"""API keys for hosted engines: from an environment variable or a secrets file named
in the engine's config, never from agent YAML, never logged, redacted in reprs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from voxd.providers.base import ProviderError


class _KeyConfig(Protocol):
    @property
    def api_key_env(self) -> str | None: ...
    @property
    def api_key_file(self) -> str | None: ...


class Secret(str):
    """A str that never shows itself in repr() or str() of containers and logs."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Secret('***')" if self else "Secret('')"

    def reveal(self) -> str:
        return str.__str__(self)


def api_key(cfg: _KeyConfig, provider: str, default_env: str, *, required: bool = True) -> Secret:
    """The key for `provider`: `api_key_file` if set, else `$api_key_env`, else `$default_env`.

    A missing key is a non-retryable ProviderError naming where it was looked for
    (the variable or file name, never a value)."""
    if cfg.api_key_file:
        try:
            return Secret(Path(cfg.api_key_file).read_text().strip())
        except OSError as e:
            raise ProviderError(provider, f"cannot read api_key_file {cfg.api_key_file}: {e.strerror}", retryable=False) from None
    env = cfg.api_key_env or default_env
    value = os.environ.get(env, "")
    if not value and required:
        raise ProviderError(provider, f"no API key: set ${env} (or api_key_file)", retryable=False)
    return Secret(value)
