"""HTTP digest authentication for SIP (RFC 2617, RFC 8760: MD5 and SHA-256).

Secrets never appear in reprs or exception messages.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from .message import SipRequest

_ALGORITHMS = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


def _h(algorithm: str, text: str) -> str:
    return _ALGORITHMS[algorithm](text.encode()).hexdigest()


def parse_auth_params(value: str) -> dict[str, str]:
    """``Digest realm="x", nonce="y", qop="auth"`` -> {"realm": "x", ...}."""
    scheme, _, rest = value.strip().partition(" ")
    params: dict[str, str] = {"scheme": scheme.lower()}
    i = 0
    while i < len(rest):
        while i < len(rest) and rest[i] in " ,\t":
            i += 1
        eq = rest.find("=", i)
        if eq < 0:
            break
        name = rest[i:eq].strip().lower()
        i = eq + 1
        while i < len(rest) and rest[i] in " \t":
            i += 1
        if i < len(rest) and rest[i] == '"':
            end = rest.find('"', i + 1)
            if end < 0:
                end = len(rest)
            params[name] = rest[i + 1 : end]
            i = end + 1
        else:
            end = rest.find(",", i)
            end = len(rest) if end < 0 else end
            params[name] = rest[i:end].strip()
            i = end
    return params


@dataclass
class Credentials:
    username: str
    password: str = field(repr=False)
    realm: str | None = None  # None: answer any realm


def digest_response(algorithm: str, username: str, password: str, realm: str, method: str,
                    uri: str, nonce: str, qop: str | None, nc: str, cnonce: str) -> str:
    ha1 = _h(algorithm, f"{username}:{realm}:{password}")
    ha2 = _h(algorithm, f"{method}:{uri}")
    if qop:
        return _h(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _h(algorithm, f"{ha1}:{nonce}:{ha2}")


def authorization_for(challenge: str, credentials: Credentials, method: str, uri: str,
                      *, nc: int = 1, cnonce: str | None = None) -> str | None:
    """The Authorization value answering one WWW-/Proxy-Authenticate challenge,
    or ``None`` if the challenge is unusable (unknown algorithm, other realm)."""
    params = parse_auth_params(challenge)
    algorithm = params.get("algorithm", "MD5").upper()
    realm = params.get("realm")
    nonce = params.get("nonce")
    if params["scheme"] != "digest" or algorithm not in _ALGORITHMS or not nonce or realm is None:
        return None
    if credentials.realm is not None and credentials.realm != realm:
        return None
    qops = [q.strip() for q in params.get("qop", "").split(",") if q.strip()]
    qop = "auth" if "auth" in qops else None
    if qops and qop is None:
        return None
    cnonce = cnonce or secrets.token_hex(8)
    nc_text = f"{nc:08x}"
    response = digest_response(algorithm, credentials.username, credentials.password, realm,
                               method, uri, nonce, qop, nc_text, cnonce)
    parts = [f'username="{credentials.username}"', f'realm="{realm}"', f'nonce="{nonce}"',
             f'uri="{uri}"', f'response="{response}"', f"algorithm={algorithm}"]
    if qop:
        parts += [f"qop={qop}", f"nc={nc_text}", f'cnonce="{cnonce}"']
    if "opaque" in params:
        parts.append(f'opaque="{params["opaque"]}"')
    return "Digest " + ", ".join(parts)


class DigestServer:
    """Challenges and verifies requests for one realm (one trunk's credentials).

    Nonces are stateless: a timestamp signed with a per-instance secret, valid
    for ``nonce_ttl`` seconds of the caller's clock.
    """

    def __init__(self, realm: str, users: Mapping[str, str], *,
                 algorithms: tuple[str, ...] = ("SHA-256", "MD5"), nonce_ttl: float = 300.0,
                 secret: bytes | None = None) -> None:
        unknown = [a for a in algorithms if a.upper() not in _ALGORITHMS]
        if unknown or not algorithms:
            raise ValueError(f"unsupported digest algorithms: {unknown}")
        self.realm = realm
        self._users = dict(users)
        self.algorithms = tuple(a.upper() for a in algorithms)
        self.nonce_ttl = nonce_ttl
        self._secret = secret or secrets.token_bytes(32)

    def __repr__(self) -> str:
        return f"DigestServer(realm={self.realm!r}, users={len(self._users)})"

    def _nonce(self, now: float) -> str:
        stamp = f"{now:.3f}"
        mac = hmac.new(self._secret, stamp.encode(), hashlib.sha256).hexdigest()[:32]
        return base64.urlsafe_b64encode(f"{stamp}:{mac}".encode()).decode().rstrip("=")

    def _nonce_ok(self, nonce: str, now: float) -> tuple[bool, bool]:
        """(authentic, fresh)."""
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4)).decode()
            stamp, mac = raw.split(":", 1)
            issued = float(stamp)
        except ValueError:
            return False, False
        good = hmac.new(self._secret, stamp.encode(), hashlib.sha256).hexdigest()[:32]
        if not hmac.compare_digest(mac, good):
            return False, False
        return True, 0 <= now - issued <= self.nonce_ttl

    def challenges(self, now: float, *, stale: bool = False) -> list[str]:
        """WWW-Authenticate values, strongest algorithm first (RFC 8760 §2.4)."""
        nonce = self._nonce(now)
        extra = ", stale=true" if stale else ""
        return [f'Digest realm="{self.realm}", nonce="{nonce}", algorithm={alg}, qop="auth"{extra}'
                for alg in self.algorithms]

    def verify(self, request: SipRequest, now: float,
               header: str = "Authorization") -> tuple[str | None, bool]:
        """(authenticated username or None, stale nonce)."""
        for value in request.headers.get_all(header):
            params = parse_auth_params(value)
            if params.get("scheme") != "digest" or params.get("realm") != self.realm:
                continue
            algorithm = params.get("algorithm", "MD5").upper()
            username = params.get("username", "")
            password = self._users.get(username)
            if algorithm not in self.algorithms or password is None:
                continue
            authentic, fresh = self._nonce_ok(params.get("nonce", ""), now)
            if not authentic:
                continue
            qop = params.get("qop")
            expected = digest_response(
                algorithm, username, password, self.realm, request.method,
                params.get("uri", ""), params.get("nonce", ""), qop, params.get("nc", ""),
                params.get("cnonce", ""))
            if hmac.compare_digest(expected, params.get("response", "")):
                if not fresh:
                    return None, True
                return username, False
        return None, False
