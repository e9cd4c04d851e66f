"""Short-lived web tokens: a page may start one browser call to one agent, never hold an API key.

    token = "vxw1." + base64url(JSON claims) + "." + base64url(HMAC-SHA256(secret, "vxw1." + claims))
    claims = {"agent": "support", "exp": 1760000000, "nonce": "...", "org": "acme"}

`org` is the organisation whose key minted the token: the call reaches that
organisation's agent and is stored with it (a token without one, minted before
organisations, is the default organisation's).

A backend holding an API key mints a token (the control API's
`POST /api/v1/calls/web-token` calls `WebTokens.mint`) and hands it to the page,
which sends it with its SDP offer to `/webrtc/offer`. Tokens are single use: a
verified nonce is remembered until the token expires.

The secret is `$VOXD_WEB_TOKEN_SECRET` when set, else `<state_dir>/web_token.key`
(32 random bytes, created 0600 on first use), so tokens survive a restart and
every process sharing the state directory agrees.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from hashlib import sha1, sha256
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

PREFIX = "vxw1"
SECRET_ENV = "VOXD_WEB_TOKEN_SECRET"
KEY_FILE = "web_token.key"
DEFAULT_TTL_S = 300.0
MAX_TTL_S = 3600.0
CALL_SCOPE = "calls:write"  # an API key may start a browser call itself with this scope
# The daemon's WebTokens on its aiohttp Application (set by voxd.net.webrtc.setup_webrtc),
# for the control API's mint endpoint: `request.app[WEB_TOKENS_KEY].mint(agent, ttl_s)`.
WEB_TOKENS_KEY: web.AppKey[WebTokens] = web.AppKey("voxd_web_tokens")


class InvalidToken(ValueError):
    """The token is malformed, forged, expired, already used, or for another agent."""


@dataclass(frozen=True)
class WebTokenClaims:
    agent: str
    expires_at: float
    nonce: str
    org: str = "default"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class WebTokens:
    def __init__(self, secret: bytes, default_ttl_s: float = DEFAULT_TTL_S) -> None:
        if len(secret) < 16:
            raise ValueError("web token secret must be at least 16 bytes")
        self._secret = secret
        self.default_ttl_s = default_ttl_s
        self._used: dict[str, float] = {}  # nonce -> expiry

    @classmethod
    def from_state_dir(cls, state_dir: Path) -> WebTokens:
        env = os.environ.get(SECRET_ENV, "")
        if env:
            return cls(env.encode())
        path = state_dir / KEY_FILE
        try:
            secret = path.read_bytes()
        except FileNotFoundError:
            secret = secrets.token_bytes(32)
            state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secret)
        return cls(secret)

    def mint(self, agent: str, ttl_s: float | None = None, now: float | None = None,
             org: str = "default") -> tuple[str, float]:
        """A token for one call to `agent` of `org`; returns (token, expires_at unix seconds)."""
        ttl = min(max(ttl_s if ttl_s is not None else self.default_ttl_s, 1.0), MAX_TTL_S)
        exp = (time.time() if now is None else now) + ttl
        claims = json.dumps({"agent": agent, "exp": round(exp, 3), "nonce": secrets.token_urlsafe(12), "org": org},
                            separators=(",", ":")).encode()
        body = f"{PREFIX}.{_b64(claims)}"
        return f"{body}.{_b64(self._sign(body))}", exp

    def verify(self, token: str, agent: str | None = None, *, consume: bool = True,
               now: float | None = None) -> WebTokenClaims:
        """Check signature, expiry and agent; with `consume`, a token works once."""
        now = time.time() if now is None else now
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != PREFIX:
            raise InvalidToken("not a voxd web token")
        body = f"{parts[0]}.{parts[1]}"
        try:
            sig = _unb64(parts[2])
        except (binascii.Error, ValueError):
            raise InvalidToken("malformed web token") from None
        if not hmac.compare_digest(sig, self._sign(body)):
            raise InvalidToken("web token signature does not match")
        try:
            raw: Any = json.loads(_unb64(parts[1]))
        except (binascii.Error, ValueError):
            raise InvalidToken("malformed web token claims") from None
        if not (isinstance(raw, dict) and isinstance(raw.get("agent"), str)
                and isinstance(raw.get("exp"), int | float) and isinstance(raw.get("nonce"), str)
                and isinstance(raw.get("org", "default"), str) and raw.get("org", "default")):
            raise InvalidToken("malformed web token claims")
        claims = WebTokenClaims(raw["agent"], float(raw["exp"]), raw["nonce"], raw.get("org", "default"))
        if claims.expires_at <= now:
            raise InvalidToken("web token expired")
        if agent is not None and agent != claims.agent:
            raise InvalidToken(f"web token is for agent {claims.agent!r}, not {agent!r}")
        self._forget_expired(now)
        if claims.nonce in self._used:
            raise InvalidToken("web token already used")
        if consume:
            self._used[claims.nonce] = claims.expires_at
        return claims

    def _sign(self, body: str) -> bytes:
        return hmac.new(self._secret, body.encode("ascii"), sha256).digest()

    def _forget_expired(self, now: float) -> None:
        if len(self._used) > 64:
            self._used = {n: exp for n, exp in self._used.items() if exp > now}


# the organisation of a live API key holding calls:write (or admin), else None
ApiKeyCheck = Callable[[str], Awaitable[str | None]]


class KeyChecker(Protocol):
    """The daemon's one API-key check (``voxd.api.auth.KeyAuthority``), injected: the
    transports never read the key store themselves."""

    async def check(self, raw: str, scope: str) -> str | None: ...


def api_key_check(checker: KeyChecker) -> ApiKeyCheck:
    """The key's organisation when `raw` is a live API key holding `calls:write` (or
    `admin`), else None. Failed attempts count in the daemon's failed-auth throttle
    (``voxd.api.auth.credential_throttle`` sees the 403 the offer answers)."""

    async def check(raw: str) -> str | None:
        return await checker.check(raw, CALL_SCOPE)

    return check


def twilio_signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """X-Twilio-Signature: base64(HMAC-SHA1(auth token, URL + each POST field's name and value,
    sorted by name))."""
    data = url + "".join(k + params[k] for k in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), sha1).digest()).decode("ascii")
