"""API keys for hosted engines: a secret the operator declared in voxd.yaml (``secrets:``),
sent only to the hosts declared for it; never from agent YAML, never logged, redacted in
reprs. An engine names its secret with ``api_key_secret`` (or, in files written before
secrets were declared, with the variable or file a declared secret reads); without one it
sends its vendor's secret (openai, deepgram, elevenlabs) when the endpoint is that vendor's."""

from __future__ import annotations

from voxd.agents.schema import _Cloud
from voxd.core.secrets import Outbound, SecretRefused, host_of
from voxd.providers.base import ProviderError


class Secret(str):
    """A str that never shows itself in repr() or str() of containers and logs."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Secret('***')" if self else "Secret('')"

    def reveal(self) -> str:
        return str.__str__(self)


def api_key(cfg: _Cloud, provider: str, outbound: Outbound | None = None, *, required: bool = True) -> Secret:
    """The key ``provider`` sends to its endpoint, checked against the declared secrets.

    A missing or refused key is a non-retryable ProviderError naming where it was looked
    for (the secret and its variable or file name, never a value)."""
    book = (outbound or Outbound()).secrets
    url = cfg.endpoint() or ""
    named = cfg.api_key_secret or cfg.api_key_env or cfg.api_key_file
    if named and cfg.named_secret(book) is None:
        raise ProviderError(provider, f"{named!r} is not a secret declared in voxd.yaml (secrets:); an agent "
                            "may only name declared secrets (api_key_secret)", retryable=False)
    name = cfg.key_secret(book)
    if name is None:
        if required:
            raise ProviderError(provider, f"no API key for {host_of(url) or url}: declare a secret for that host in "
                                "voxd.yaml (secrets:) and name it with api_key_secret", retryable=False)
        return Secret("")
    try:
        value = book.value_for(name, url)
    except SecretRefused as e:
        raise ProviderError(provider, str(e), retryable=False) from None
    if not value and required:
        declared = book.get(name)
        where = declared.where() if declared else name
        raise ProviderError(provider, f"no API key: set {where} (secret {name!r})", retryable=False)
    return Secret(value or "")
