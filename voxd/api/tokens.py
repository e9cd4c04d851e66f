"""Sign-in access tokens: short-lived HS256 JWTs (PyJWT) signed with a key kept in a file
beside the database (the state directory), never in it.

Claims: ``iss`` ``voxd``, ``aud`` ``voxd-api``, ``exp``, ``iat``, ``jti``, ``sub`` (the user),
``org``, ``scopes`` (the user's role in that org, as scopes) and ``fam`` (the refresh-token
family: signing out revokes it, and the access tokens of a revoked family stop working).
Only HS256 is accepted: ``alg: none`` and every other algorithm are refused.
"""

from __future__ import annotations

import os
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from voxd.api.models import SCOPES

ISSUER = "voxd"
AUDIENCE = "voxd-api"
ALGORITHM = "HS256"
ACCESS_TTL_S = 900
KEY_FILE = "jwt-hs256.key"
REQUIRED = ("iss", "aud", "exp", "iat", "jti", "sub", "org", "scopes")

# roles mapped onto the existing scopes (``admin`` holds every scope)
ROLE_SCOPES: dict[str, tuple[str, ...]] = {
    "owner": ("admin",),
    "admin": tuple(s for s in SCOPES if s != "admin"),
    "developer": tuple(s for s in SCOPES if s.split(":")[0] in
                       ("agents", "calls", "conversations", "functions", "webhooks", "usage", "recordings")),
    "viewer": tuple(s for s in SCOPES if s.endswith(":read") and s != "audit:read"),
}  # admin holds users:admin and audit:read ("every scope but admin"); developer and viewer hold neither


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and len(token) < 8192


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    org: str
    scopes: tuple[str, ...]
    jti: str
    family: str
    issued_at: float
    expires_at: float


class TokenRefused(ValueError):
    """The token is not one this daemon issued and still honours; ``str(e)`` says why."""


class TokenIssuer:
    def __init__(self, key: bytes, ttl_s: int = ACCESS_TTL_S) -> None:
        if len(key) < 32:
            raise ValueError("the JWT signing key needs at least 32 bytes")
        self._key = key
        self.ttl_s = ttl_s

    @classmethod
    def load(cls, state_dir: Path | None) -> TokenIssuer:
        """The key in ``state_dir/jwt-hs256.key`` (created 0600 on first use); an
        ephemeral one when there is no state directory (an in-memory database)."""
        if state_dir is None:
            return cls(secrets.token_bytes(32))
        path = Path(state_dir) / KEY_FILE
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
        return cls(bytes.fromhex(path.read_text().strip()))

    def issue(self, user_id: str, org: str, scopes: tuple[str, ...], family: str,
              now: float | None = None) -> tuple[str, AccessClaims]:
        iat = int(time.time() if now is None else now)
        claims = AccessClaims(user_id, org, scopes, uuid.uuid4().hex, family, iat, iat + self.ttl_s)
        payload: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "iat": iat, "exp": iat + self.ttl_s,
                                   "jti": claims.jti, "sub": user_id, "org": org, "scopes": list(scopes),
                                   "fam": family}
        return jwt.encode(payload, self._key, algorithm=ALGORITHM), claims

    def verify(self, token: str) -> AccessClaims:
        try:
            p = jwt.decode(token, self._key, algorithms=[ALGORITHM], audience=AUDIENCE, issuer=ISSUER,
                           options={"require": list(REQUIRED)})
        except jwt.ExpiredSignatureError as e:
            raise TokenRefused("the access token has expired") from e
        except jwt.InvalidTokenError as e:
            raise TokenRefused(f"the access token is not valid ({type(e).__name__})") from e
        scopes = p.get("scopes")
        if (not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes)
                or not isinstance(p["sub"], str) or not isinstance(p["org"], str)):
            raise TokenRefused("the access token's claims are malformed")
        return AccessClaims(p["sub"], p["org"], tuple(scopes), str(p["jti"]), str(p.get("fam", "")),
                            float(p["iat"]), float(p["exp"]))
