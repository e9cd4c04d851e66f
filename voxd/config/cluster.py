"""Shared state for several voxd nodes: the store's database and Redis (issue 22)."""

from __future__ import annotations

import os
import re
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _with_password(url: str, env: str | None) -> str:
    """``url`` with the password read from the environment variable ``env`` (a URL in a
    config file should carry none)."""
    if not env:
        return url
    password = os.environ.get(env)
    if password is None:
        raise ValueError(f"the environment variable {env} (the password) is not set")
    parts = urlsplit(url)
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class StoreConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        None, description="sqlite:///relative.db, sqlite:////absolute.db or postgresql://user@host:5432/voxd; "
        "default: SQLite at `database` (or <state_dir>/voxd.db). Every node of a cluster names the same "
        "PostgreSQL database.")
    password_env: str | None = Field(None, description="Environment variable holding the database password.")

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str | None) -> str | None:
        if v is not None and urlsplit(v).scheme.lower() not in ("sqlite", "postgresql", "postgres"):
            raise ValueError("store.url must start with sqlite:// or postgresql://")
        return v

    @field_validator("password_env")
    @classmethod
    def _env(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_NAME.fullmatch(v):
            raise ValueError("password_env must be the NAME of an environment variable, not its value")
        return v

    def resolved_url(self) -> str | None:
        return None if self.url is None else _with_password(self.url, self.password_env)


class RedisConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        None, description="redis://host:6379/0: rate-limit buckets shared by every node; without it each "
        "node limits on its own (as one node always does).")
    password_env: str | None = Field(None, description="Environment variable holding the Redis password.")
    timeout_s: float = Field(0.25, gt=0, le=10, description="A Redis call slower than this counts as Redis down.")
    retry_s: float = Field(2.0, gt=0, description="While Redis is down, how often it is tried again.")

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str | None) -> str | None:
        if v is not None and urlsplit(v).scheme.lower() not in ("redis", "rediss", "unix"):
            raise ValueError("redis.url must start with redis://, rediss:// or unix://")
        return v

    @field_validator("password_env")
    @classmethod
    def _env(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_NAME.fullmatch(v):
            raise ValueError("password_env must be the NAME of an environment variable, not its value")
        return v

    def resolved_url(self) -> str | None:
        return None if self.url is None else _with_password(self.url, self.password_env)
