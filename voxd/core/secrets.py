"""Secrets agents may use, as the operator declared them (``secrets:`` in voxd.yaml).

An agent never names an environment variable or a file: it names a declared secret
(``api_key_secret: openai``, ``${crm_token}`` in an HTTP function's header), and a
secret is only ever sent to the hosts it is declared for. Three are declared unless the
operator says otherwise, one per hosted vendor, each bound to that vendor's API host.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from voxd.core.egress import EgressPolicy, EgressRefused, parse_target

# name -> (environment variable, hosts): declared unless voxd.yaml overrides or removes them
VENDOR_SECRETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "openai": ("OPENAI_API_KEY", ("api.openai.com",)),
    "deepgram": ("DEEPGRAM_API_KEY", ("api.deepgram.com",)),
    "elevenlabs": ("ELEVENLABS_API_KEY", ("api.elevenlabs.io",)),
}


# ${name} in an HTTP function's header values: a declared secret, by name (or, for files
# written before secrets were declared, by the environment variable it reads)
SECRET_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class SecretRefused(ValueError):
    """The secret is not declared, or may not go to this destination."""


@dataclass(frozen=True)
class DeclaredSecret:
    name: str
    hosts: tuple[str, ...]
    env: str | None = None
    file: str | None = None

    def allows(self, host: str) -> bool:
        h = host.lower().rstrip(".")
        return any(fnmatchcase(h, p.lower().rstrip(".")) for p in self.hosts)

    def where(self) -> str:
        return f"${self.env}" if self.env else f"file {self.file}"

    def read(self) -> str | None:
        """The value, or None when the variable is unset or the file unreadable."""
        if self.env:
            return os.environ.get(self.env) or None
        if self.file:
            try:
                return Path(self.file).read_text(encoding="utf-8").strip() or None
            except OSError:
                return None
        return None


def host_of(url: str) -> str:
    try:
        return parse_target(url).host
    except EgressRefused:
        return ""


@dataclass(frozen=True)
class SecretBook:
    secrets: Mapping[str, DeclaredSecret] = field(default_factory=dict)

    @classmethod
    def vendors(cls) -> SecretBook:
        return cls({n: DeclaredSecret(n, hosts, env=env) for n, (env, hosts) in VENDOR_SECRETS.items()})

    def get(self, name: str) -> DeclaredSecret | None:
        return self.secrets.get(name)

    def by_env(self, env: str) -> DeclaredSecret | None:
        return next((s for s in self.secrets.values() if s.env == env), None)

    def by_file(self, path: str) -> DeclaredSecret | None:
        return next((s for s in self.secrets.values() if s.file and Path(s.file) == Path(path)), None)

    def resolve_ref(self, ref: str) -> DeclaredSecret | None:
        """The secret a reference names: a declared name, else the one reading $ref."""
        return self.secrets.get(ref) or self.by_env(ref)

    def ref_problem(self, ref: str, url: str) -> str | None:
        s = self.resolve_ref(ref)
        if s is None:
            declared = ", ".join(self.names()) or "none"
            return (f"${{{ref}}} is not a declared secret (declared: {declared}); declare it in voxd.yaml "
                    f"as secrets: {{{ref.lower()}: {{env: {ref}, hosts: [<host>]}}}}")
        return self.problem(s.name, url)

    def names(self) -> list[str]:
        return sorted(self.secrets)

    def problem(self, name: str, url: str) -> str | None:
        """Why secret ``name`` may not be sent with a request to ``url``, or None."""
        s = self.secrets.get(name)
        if s is None:
            declared = ", ".join(self.names()) or "none"
            return f"secret {name!r} is not declared in voxd.yaml secrets: (declared: {declared})"
        host = host_of(url)
        if not host or not s.allows(host):
            return (f"secret {name!r} may only be sent to {', '.join(s.hosts)}, not to {host or url!r} "
                    f"(add the host to secrets.{name}.hosts in voxd.yaml if it is meant to go there)")
        return None

    def value_for(self, name: str, url: str) -> str | None:
        """The secret's value for a request to ``url`` (None when unset); SecretRefused when
        it is not declared or not declared for that host."""
        why = self.problem(name, url)
        if why:
            raise SecretRefused(why)
        return self.secrets[name].read()


@dataclass(frozen=True)
class Outbound:
    """What leaves the box on an agent's behalf: where requests may go, and which secrets
    may go with them. Built from voxd.yaml by the daemon; strict when not given."""

    policy: EgressPolicy = field(default_factory=EgressPolicy)
    secrets: SecretBook = field(default_factory=SecretBook.vendors)
