"""Daemon-wide settings for the function library (the ``tools:`` block of config/voxd.yaml).

Part of the daemon's configuration (``voxd.config``), which imports no layer above
``voxd.core``; the function library (``voxd.tools``) reads it.

Agents may override the non-secret fields of a built-in per agent through
``tools: [{name: send_email, options: {...}}]``; secrets are never written in YAML,
only the NAME of an environment variable or a file that holds them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from voxd.core.errors import ToolError

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Secret(_Model):
    password_env: str | None = Field(None, description="Environment variable holding the password (never the password).")
    password_file: str | None = Field(None, description="File holding the password (e.g. a mounted secret).")

    @field_validator("password_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_NAME.match(v):
            raise ValueError("password_env must be the NAME of an environment variable")
        return v

    def password(self) -> str | None:
        return read_secret(self.password_env, self.password_file)


class WeatherConfig(_Model):
    geocoding_url: str = Field("https://geocoding-api.open-meteo.com/v1/search", description="Open-Meteo style place search.")
    forecast_url: str = Field("https://api.open-meteo.com/v1/forecast", description="Open-Meteo style forecast endpoint.")
    units: Literal["celsius", "fahrenheit"] = "celsius"
    timeout_s: float = Field(5.0, gt=0, le=30)


class EmailConfig(_Secret):
    host: str | None = Field(None, description="SMTP server; send_email fails clearly when unset.")
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = Field("starttls", description="STARTTLS on 587, implicit TLS on 465, or plain (tests, local relays).")
    username: str | None = None
    from_addr: str | None = Field(None, description="Envelope and From: address.")
    allowed_domains: list[str] = Field(default_factory=list, description="If set, recipients must be in one of these domains.")
    ca_file: str | None = Field(None, description="CA bundle for a server with a private certificate.")
    timeout_s: float = Field(15.0, gt=0, le=120)


class CalendarConfig(_Secret):
    url: str | None = Field(None, description="CalDAV calendar collection URL; without one, events go to voxd's own store.")
    username: str | None = None
    timeout_s: float = Field(15.0, gt=0, le=120)
    default_duration_min: int = Field(30, ge=1, le=24 * 60)


class KnowledgeConfig(_Model):
    chunk_words: int = Field(120, ge=20, le=2000, description="Target passage length in words.")
    overlap_words: int = Field(30, ge=0, le=500)
    results: int = Field(3, ge=1, le=20)
    embeddings: bool = Field(True, description="Blend sentence embeddings with BM25 when the model package is installed.")
    roots: list[str] = Field(
        default_factory=list,
        description="Folders knowledge bases may live under (default: voxd's base folder, the parent of config/).",
    )


class ToolsConfig(_Model):
    weather: WeatherConfig = Field(default_factory=lambda: WeatherConfig())
    email: EmailConfig = Field(default_factory=lambda: EmailConfig())
    calendar: CalendarConfig = Field(default_factory=lambda: CalendarConfig())
    knowledge: KnowledgeConfig = Field(default_factory=lambda: KnowledgeConfig())
    plugin_paths: list[str] = Field(default_factory=list, description="Folders Python functions ('module:function') are loaded from.")
    function_env: list[str] = Field(
        default_factory=list,
        description="Removed: HTTP functions' ${NAME} header references now name secrets declared in "
        "voxd.yaml's secrets: block, each bound to its hosts. Must be empty.",
    )
    signing_secret_env: str | None = Field(None, description="Variable holding the whsec_ secret custom HTTP functions are signed with.")
    signing_secret_file: str | None = Field(None, description="File holding it; default <state_dir>/function-signing.key, created on first start.")
    stored_refresh_s: float = Field(2.0, gt=0, description="How often functions created through the API are picked up.")


    @field_validator("function_env")
    @classmethod
    def _replaced_by_secrets(cls, v: list[str]) -> list[str]:
        if v:
            raise ValueError(
                "tools.function_env is replaced by secrets: declare each variable with the hosts it may be "
                "sent to, e.g. secrets: {orders: {env: ORDERS_TOKEN, hosts: [crm.example.com]}}, and leave "
                "function_env empty; ${ORDERS_TOKEN} (or ${orders}) in function headers then uses it")
        return v


def read_secret(env: str | None, file: str | None) -> str | None:
    if env:
        value = os.environ.get(env)
        if value is None:
            raise ToolError(f"environment variable {env} is not set")
        return value
    if file:
        try:
            return Path(file).read_text(encoding="utf-8").strip()
        except OSError:
            raise ToolError(f"cannot read secret file {file}") from None
    return None


def merged(base: _Model, options: dict[str, Any], fields: tuple[str, ...] | None = None) -> Any:
    """The daemon's settings with one agent's options laid over them, validated again.
    Only ``fields`` (default: all but *_env/*_file) may be overridden, so an agent cannot
    send the daemon's credentials to a server of its choosing."""
    allowed = fields or tuple(k for k in type(base).model_fields if not k.endswith(("_env", "_file")))
    safe = {k: v for k, v in options.items() if k in allowed}
    if not safe:
        return base
    return type(base).model_validate(base.model_dump() | safe)
