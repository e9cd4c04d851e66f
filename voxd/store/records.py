"""What the store's repositories take and return: plain data, the same for every store.

The SQLite repositories (``voxd.store.*``) and any other implementation of
``voxd.store.repos`` share these types and helpers; nothing here touches a database.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from voxd.core.sealing import Sealer

# ---------------------------------------------------------------- API keys
# A key looks like ``vx_live_<32 base62><6 base62 checksum>``; only its hash is stored.

KEY_PREFIX = "vx_live_"
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
SECRET_LEN = 32
CHECKSUM_LEN = 6
KEY_LEN = len(KEY_PREFIX) + SECRET_LEN + CHECKSUM_LEN
DISPLAY_LEN = len(KEY_PREFIX) + 8  # "vx_live_" and the first 8 secret characters


def _base62(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(BASE62[r])
    return "".join(reversed(out))


def _checksum(secret: str) -> str:
    return _base62(zlib.crc32(secret.encode()), CHECKSUM_LEN)


def generate_key() -> str:
    secret = "".join(secrets.choice(BASE62) for _ in range(SECRET_LEN))
    return KEY_PREFIX + secret + _checksum(secret)


def well_formed(raw: str) -> bool:
    """Shape and checksum only; says nothing about whether the key exists."""
    if len(raw) != KEY_LEN or not raw.startswith(KEY_PREFIX):
        return False
    body = raw[len(KEY_PREFIX):]
    if any(c not in BASE62 for c in body):
        return False
    secret, check = body[:SECRET_LEN], body[SECRET_LEN:]
    return hmac.compare_digest(_checksum(secret), check)


def hash_key(raw: str, pepper: str = "") -> str:
    if pepper:
        return hmac.new(pepper.encode(), raw.encode(), hashlib.sha256).hexdigest()
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_by: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    last_used_at: float | None
    rate_limit_per_minute: int | None
    quota_per_day: int | None
    quota_per_month: int | None
    org: str = "default"

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or time.time())

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "prefix": self.prefix, "scopes": list(self.scopes),
            "created_by": self.created_by, "created_at": self.created_at,
            "expires_at": self.expires_at, "revoked_at": self.revoked_at,
            "last_used_at": self.last_used_at,
            "rate_limit_per_minute": self.rate_limit_per_minute,
            "quota_per_day": self.quota_per_day, "quota_per_month": self.quota_per_month,
            "org": self.org,
        }


def utc_day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


# ---------------------------------------------------------------- webhooks

HEALTHY, FAILING, DISABLED = "healthy", "failing", "disabled"
PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"


def new_endpoint_id() -> str:
    return "wh_" + secrets.token_hex(8)


def new_delivery_id() -> str:
    return "dlv_" + secrets.token_hex(10)


@dataclass(frozen=True)
class Endpoint:
    id: str
    url: str
    description: str
    events: list[str]
    agents: list[str] | None
    enabled: bool
    secret: str
    previous_secret: str | None
    previous_secret_until: float | None
    headers: dict[str, str]
    timeout_s: float | None
    retry_schedule: list[float] | None
    health: str
    consecutive_failures: int
    disabled_reason: str | None
    created_by: str
    created_at: float
    updated_at: float

    def secrets(self, now: float | None = None) -> list[str]:
        """The secrets that sign a request now: the current one, and the previous one
        while its overlap window lasts."""
        out = [self.secret]
        if self.previous_secret and (self.previous_secret_until or 0) > (now or time.time()):
            out.append(self.previous_secret)
        return out

    def wants(self, event_type: str, agent: str | None) -> bool:
        if not self.enabled:
            return False
        if "*" not in self.events and event_type not in self.events:
            return False
        return not (self.agents and agent is not None and agent not in self.agents)

    @classmethod
    def from_row(cls, r: Any, sealer: Sealer | None = None) -> Endpoint:
        """An endpoint from its row; with ``sealer``, its secrets opened (without, they stay
        as stored: enough for the outbox's fan-out, which never signs)."""
        def secret(value: str | None) -> str | None:
            return value if value is None or sealer is None else sealer.open(value, f"webhook:{r['id']}")

        return cls(
            id=r["id"], url=r["url"], description=r["description"], events=json.loads(r["events"]),
            agents=json.loads(r["agents"]) if r["agents"] is not None else None,
            enabled=bool(r["enabled"]), secret=secret(r["secret"]) or "", previous_secret=secret(r["previous_secret"]),
            previous_secret_until=r["previous_secret_until"], headers=json.loads(r["headers"]),
            timeout_s=r["timeout_s"],
            retry_schedule=json.loads(r["retry_schedule"]) if r["retry_schedule"] is not None else None,
            health=r["health"], consecutive_failures=r["consecutive_failures"],
            disabled_reason=r["disabled_reason"], created_by=r["created_by"],
            created_at=r["created_at"], updated_at=r["updated_at"],
        )


@dataclass(frozen=True)
class Message:
    """One event as sent: ``payload`` is the exact request body."""

    id: str
    type: str
    payload: str
    agent: str | None = None
    call_id: str | None = None
    created_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class DueDelivery:
    """A pending delivery with what sending it needs."""

    id: str
    attempts: int
    trigger: str
    message_id: str
    payload: str
    endpoint: Endpoint


@dataclass(frozen=True)
class AttemptResult:
    at: float
    status_code: int | None
    latency_ms: float
    response_excerpt: str | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True)
class Outcome:
    """One attempt's result and what follows: retry at ``next_attempt_at``, or not."""

    delivery: DueDelivery
    result: AttemptResult
    next_attempt_at: float | None
    gone: bool = False
    affects_health: bool = True

    @property
    def status(self) -> str:
        if self.result.ok:
            return SUCCEEDED
        return PENDING if self.next_attempt_at is not None and not self.gone else FAILED


# ---------------------------------------------------------------- function executions


@dataclass(frozen=True)
class Execution:
    name: str
    arguments: dict[str, Any]
    result: Any
    error: str | None
    duration_ms: float
    actor: str
    call_id: str | None = None
    turn_idx: int | None = None
    at: float = 0.0


# ---------------------------------------------------------------- users, sessions, audit

class UserExists(ValueError):
    """A user with that email exists already."""


def normal_email(email: str) -> str:
    e = email.strip().lower()
    if "@" not in e or len(e) > 254 or e.startswith("@") or e.endswith("@"):
        raise ValueError(f"not an email address: {email!r}")
    return e


@dataclass(frozen=True)
class User:
    id: str
    email: str
    created_at: float
    failed_logins: int
    locked_until: float | None
    disabled_at: float | None
    has_password: bool

    def locked(self, now: float | None = None) -> bool:
        return self.locked_until is not None and self.locked_until > (now or time.time())


@dataclass(frozen=True)
class Refreshed:
    token: str  # the new raw refresh token (shown once)
    family: str
    user_id: str
    org: str


@dataclass(frozen=True)
class OidcProvider:
    """An organisation's OpenID Connect provider (``voxd.store.oidc``)."""

    org: str
    issuer: str
    client_id: str
    client_secret: str | None  # the plain value (stored sealed); None: see client_secret_name
    client_secret_name: str | None  # a secret declared in voxd.yaml (never in the database)
    default_role: str  # what a person signing in for the first time becomes
    allowed_domains: tuple[str, ...]  # email domains accepted; empty: any the provider vouches for
    redirect_uri: str | None  # the callback URL registered at the provider; None: derived per request
    updated_by: str
    updated_at: float = 0.0


@dataclass(frozen=True)
class OidcLogin:
    """A single sign-on under way, as the start route left it."""

    binding_hash: str
    nonce: str
    code_verifier: str
    redirect_uri: str
    created_at: float


class RefreshRefused(ValueError):
    """``reason``: unknown, expired, reused (the family is now revoked) or revoked."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"refresh token {reason}")
        self.reason = reason


@dataclass(frozen=True)
class Tampered:
    seq: int
    why: str


# ---------------------------------------------------------------- post-call analysis


@dataclass(frozen=True)
class AnalysisJob:
    """A call's analysis owed: pending (due at ``next_attempt_at``), done or failed."""

    call_id: str
    org: str
    status: str
    attempts: int
    next_attempt_at: float
    last_error: str | None
