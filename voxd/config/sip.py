"""Carrier settings in `voxd.yaml`: registrations (`sip.registrations[]`) and outbound
trunks (`sip.trunks[].outbound`). Passwords are never YAML text: each names where it is
read from (an environment variable, a file, or a secret declared under `secrets:`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from voxd.core.secrets import SecretBook

SrtpPolicy = Literal["off", "optional", "required"]  # the same words as voxd.proto.sdes.Policy
NAME_RE = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
ENV_RE = r"[A-Za-z_][A-Za-z0-9_]*"
_NO_PLAIN = ("passwords never go in voxd.yaml: name where it is read from with password_env "
             "(a variable's NAME), password_file (a path) or password_secret (a declared secret)")


# codec names a preference may use, as SDP spells them (voxd.proto.negotiate.KNOWN)
CODECS = ("PCMU", "PCMA", "G722", "opus")


def codec_list(names: list[str], where: str) -> list[str]:
    """A codec preference with each name as SDP spells it ("g722" -> "G722"), in order,
    once each; a clear error for an unknown name or an empty list."""
    by_upper = {c.upper(): c for c in CODECS}
    out: list[str] = []
    for name in names:
        known = by_upper.get(str(name).upper())
        if known is None:
            raise ValueError(f"{where}: unknown codec {name!r} (known: {', '.join(CODECS)})")
        if known not in out:
            out.append(known)
    if not out:
        raise ValueError(f"{where}: name at least one codec ({', '.join(CODECS)})")
    return out


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PasswordSource(_Model):
    """Exactly one of password_env / password_file / password_secret (or none: no digest)."""

    password_env: str | None = Field(None, description="Environment variable holding the password (its NAME).")
    password_file: str | None = Field(None, description="File holding the password (a mounted secret, a systemd credential).")
    password_secret: str | None = Field(
        None, description="A secret declared under secrets: whose hosts include the registrar's or proxy's host.")

    @model_validator(mode="before")
    @classmethod
    def _no_plain_password(cls, data: Any) -> Any:
        if isinstance(data, dict) and ("password" in data or "secret" in data):
            raise ValueError(_NO_PLAIN)
        return data

    @model_validator(mode="after")
    def _one_source(self) -> PasswordSource:
        given = [x for x in (self.password_env, self.password_file, self.password_secret) if x is not None]
        if len(given) > 1:
            raise ValueError("give one of password_env, password_file, password_secret")
        if self.password_env is not None and not re.fullmatch(ENV_RE, self.password_env):
            raise ValueError("password_env must be the NAME of an environment variable, not its value")
        return self

    @property
    def has_password(self) -> bool:
        return any(x is not None for x in (self.password_env, self.password_file, self.password_secret))

    def password_where(self) -> str:
        if self.password_env:
            return f"${self.password_env}"
        if self.password_file:
            return f"file {self.password_file}"
        return f"secret {self.password_secret}" if self.password_secret else "nowhere"

    def read_password(self, book: SecretBook, host: str) -> str | None:
        """The password, or None when unset/unreadable/refused (the caller logs where from)."""
        import os

        if self.password_env:
            return os.environ.get(self.password_env) or None
        if self.password_file:
            try:
                return Path(self.password_file).read_text(encoding="utf-8").strip() or None
            except OSError:
                return None
        if self.password_secret:
            secret = book.get(self.password_secret)
            if secret is None or not secret.allows(host):
                return None
            return secret.read()
        return None


_SIP_URI = re.compile(r"sips?:(?:(?P<user>[^@:;?\s<>]+)@)?(?P<host>[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])"
                      r"(?::(?P<port>[0-9]{1,5}))?(?:;[^\s<>?]*)?")


def _sip_uri(v: str, what: str, *, user: bool) -> str:
    m = _SIP_URI.fullmatch(v.strip())
    if m is None or (m["port"] is not None and not 0 < int(m["port"]) < 65536):
        raise ValueError(f"{what}: expected a SIP URI like sip:{'user@' if user else ''}carrier.example.com[:5060]")
    if user and not m["user"]:
        raise ValueError(f"{what}: needs a user part (sip:user@domain)")
    return v.strip()


class RegistrationConfig(PasswordSource):
    """voxd registers `aor` at `registrar` (RFC 3261 §10) and answers calls to it with `agent`."""

    name: str = Field(pattern=f"^{NAME_RE}$")
    registrar: str = Field(description="Registrar URI, e.g. sip:sip.carrier.example (a port: sip:host:5070).")
    aor: str = Field(description="Address of record, e.g. sip:+15550001@sip.carrier.example.")
    username: str | None = Field(None, description="Digest user (default: the AOR's user part).")
    transport: Literal["udp", "tcp", "tls"] = Field(
        "udp", description="tls: a verified TLS connection (system CAs or sip.tls.ca_file), kept and reused.")
    expires: int = Field(600, ge=60, le=86400, description="Expiry asked for; the registrar's answer wins.")
    agent: str | None = Field(None, description="Agent answering calls to this AOR (default: default_agent); "
                              "<org>/<agent> for an agent of another organisation (agents/<org>/).")

    @field_validator("registrar")
    @classmethod
    def _registrar(cls, v: str) -> str:
        return _sip_uri(v, "registrar", user=False)

    @field_validator("aor")
    @classmethod
    def _aor(cls, v: str) -> str:
        return _sip_uri(v, "aor", user=True)


class SipTlsConfig(_Model):
    """SIP over TLS (RFC 3261 §26): a listener beside UDP/TCP, certificate and key from
    files, re-read on SIGHUP (a broken pair keeps the running one)."""

    enabled: bool = False
    port: int = Field(5061, ge=0, le=65535)
    cert_file: str | None = Field(None, description="PEM certificate chain presented to peers.")
    key_file: str | None = Field(None, description="PEM private key of the certificate.")
    ca_file: str | None = Field(
        None, description="PEM CA bundle for verifying peers' certificates: servers voxd connects to over TLS "
        "(instead of the system store) and clients that present one.")

    @model_validator(mode="after")
    def _files(self) -> SipTlsConfig:
        if self.enabled and not (self.cert_file and self.key_file):
            raise ValueError("sip.tls.enabled needs cert_file and key_file")
        return self


class SipDnsConfig(_Model):
    """How SIP host names are resolved (RFC 3263: NAPTR, SRV, then A/AAAA; voxd/net/sip_dns.py)."""

    nameservers: list[str] = Field(
        default_factory=list, description="DNS servers asked, as host:port (e.g. 192.0.2.53:53, [2001:db8::53]:53); "
        "empty: the system resolver (/etc/resolv.conf; A/AAAA through getaddrinfo, so /etc/hosts applies).")
    timeout_s: float = Field(3.0, gt=0, le=30, description="Time allowed for one DNS question (all servers).")

    @field_validator("nameservers")
    @classmethod
    def _nameservers(cls, v: list[str]) -> list[str]:
        for item in v:
            parse_hostport(item)
        return v


def parse_hostport(text: str) -> tuple[str, int]:
    """``192.0.2.53:53``, ``[2001:db8::53]:53`` or a bare address (port 53)."""
    import ipaddress

    m = re.fullmatch(r"\[(?P<v6>[0-9A-Fa-f:.]+)\](?::(?P<p6>[0-9]{1,5}))?|(?P<v4>[0-9.]+)(?::(?P<p4>[0-9]{1,5}))?|"
                     r"(?P<bare>[0-9A-Fa-f:]+)", text.strip())
    if m is None:
        raise ValueError(f"nameserver {text!r}: expected an address and port, e.g. 192.0.2.53:53 or [::1]:53")
    host = m["v6"] or m["v4"] or m["bare"]
    port = int(m["p6"] or m["p4"] or 53)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"nameserver {text!r}: {host} is not an IP address") from None
    if not 0 < port < 65536:
        raise ValueError(f"nameserver {text!r}: port out of range")
    return host, port


class SessionTimerConfig(_Model):
    """Session timers (RFC 4028): the peer or voxd refreshes the session with a re-INVITE
    or UPDATE at half the interval; a session nobody refreshed ends with BYE (end reason
    session_expired)."""

    expires_s: int = Field(1800, ge=0, le=86400,
                           description="Interval voxd asks for in its INVITEs and the largest it grants; "
                                       "0: ask for none (still answered when a peer asks).")
    min_se_s: int = Field(90, ge=90, le=86400, description="Shortest interval accepted (shorter: 422 with Min-SE).")


class SipTraceConfig(_Model):
    """Per-call SIP trace: every SIP message of a call, both directions, credentials masked,
    kept with the call record (`GET /api/v1/calls/{id}/sip-trace`, text or pcap)."""

    enabled: bool = True
    retention_hours: float = Field(72.0, gt=0, le=24 * 365, description="Traces older than this are deleted.")
    max_messages: int = Field(500, ge=10, le=100000, description="Messages kept per call (the first ones).")


class TrunkOutboundConfig(PasswordSource):
    """Calls placed through a carrier: `POST /api/v1/calls {"to": "+15551234567", "trunk": NAME}`."""

    domain: str = Field(description="Host of the Request-URI: sip:<number>@<domain>.")
    proxy: str | None = Field(
        None, description="Outbound proxy (sip:host[:port]); requests go there with a Route (loose routing).")
    port: int | None = Field(None, ge=1, le=65535, description="Port at `domain` when there is no proxy (default 5060).")
    transport: Literal["udp", "tcp", "tls"] = Field(
        "udp", description="tls: a verified TLS connection (system CAs or sip.tls.ca_file), kept and reused.")
    username: str | None = Field(None, description="Digest user for 401/407 challenges.")
    from_user: str | None = Field(None, description="Caller ID: the From user (a number, e.g. +15550001).")
    from_display: str | None = Field(None, max_length=64, description="Caller ID: the From display name.")
    asserted_identity: str | None = Field(
        None, description="P-Asserted-Identity (RFC 3325), e.g. sip:+15550001@carrier.example or tel:+15550001.")
    privacy: list[Literal["id", "header", "user", "none"]] = Field(
        default_factory=list, description="Privacy header values (RFC 3323/3325), e.g. [id] to hide the caller ID.")
    number_format: Literal["e164", "e164_no_plus", "as_dialled"] = Field(
        "e164", description="How a dialled number is written: +15551234567, 15551234567, or unchanged.")
    country_code: str | None = Field(
        None, pattern=r"^[1-9][0-9]{0,2}$", description="Added to national numbers (without +) to make them E.164.")
    dial_prefix: str = Field("", pattern=r"^[0-9*#+]*$", description="Put before the formatted number (e.g. 9, or a tech prefix).")
    max_calls: int = Field(0, ge=0, description="Concurrent outbound calls on this trunk; 0: no cap.")
    calls_per_second: float = Field(0.0, ge=0, description="New outbound calls per second on this trunk; 0: no cap.")

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, v: str | None) -> str | None:
        return None if v is None else _sip_uri(v, "proxy", user=False)

    @field_validator("domain")
    @classmethod
    def _domain(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+", v):
            raise ValueError("domain: a host name or address, e.g. sip.carrier.example")
        return v
