"""Shared state for several voxd nodes: the store's database and Redis (issue 22)."""

from __future__ import annotations

import os
import re
from typing import ClassVar
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _ServerUrl(BaseModel):
    """A server named by URL, its password (if any) read from an environment variable."""

    model_config = ConfigDict(extra="forbid")
    schemes: ClassVar[tuple[str, ...]] = ()

    url: str | None = None
    password_env: str | None = Field(None, description="Environment variable holding the password.")

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str | None) -> str | None:
        if v is not None and urlsplit(v).scheme.lower() not in cls.schemes:
            raise ValueError(f"the url must start with {' or '.join(s + '://' for s in cls.schemes)}")
        return v

    @field_validator("password_env")
    @classmethod
    def _env(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_NAME.fullmatch(v):
            raise ValueError("password_env must be the NAME of an environment variable, not its value")
        return v

    def resolved_url(self) -> str | None:
        """The url with the password from ``password_env`` (a URL in a config file should carry none)."""
        if self.url is None or not self.password_env:
            return self.url
        password = os.environ.get(self.password_env)
        if password is None:
            raise ValueError(f"the environment variable {self.password_env} (the password) is not set")
        parts = urlsplit(self.url)
        netloc = (f"{quote(parts.username or '', safe='')}:{quote(password, safe='')}@{parts.hostname or ''}"
                  + (f":{parts.port}" if parts.port else ""))
        return urlunsplit(parts._replace(netloc=netloc))


class StoreConfig(_ServerUrl):
    schemes = ("sqlite", "postgresql", "postgres")

    url: str | None = Field(
        None, description="sqlite:///relative.db, sqlite:////absolute.db or postgresql://user@host:5432/voxd; "
        "default: SQLite at `database` (or <state_dir>/voxd.db). Every node of a cluster names the same "
        "PostgreSQL database.")


class RedisConfig(_ServerUrl):
    schemes = ("redis", "rediss", "unix")

    url: str | None = Field(
        None, description="redis://host:6379/0: rate-limit buckets shared by every node; without it each "
        "node limits on its own (as one node always does).")
    timeout_s: float = Field(0.25, gt=0, le=10, description="A Redis call slower than this counts as Redis down.")
    retry_s: float = Field(2.0, gt=0, description="While Redis is down, how often it is tried again.")
