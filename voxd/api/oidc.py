"""An OpenID Connect relying party: discovery, the provider's keys, the token exchange and
the ID token's verification. Every request goes through the egress policy as use ``sso``
(a provider on loopback or a LAN needs an ``egress.allow`` rule naming it).

* Discovery: ``<issuer>/.well-known/openid-configuration``, whose ``issuer`` must be the
  configured one exactly; kept ``DISCOVERY_TTL_S``.
* Keys: the JWKS at ``jwks_uri``, kept until a token names a ``kid`` it lacks: then it is
  fetched again once (the provider rotated its keys); a kid still missing is refused, and
  is not fetched for again within ``MISS_TTL_S`` (a forged kid costs one fetch, no more).
* ID tokens: RS256 or ES256 only (``none``, HS256 with the public key as secret, and every
  other algorithm are refused), ``iss``, ``aud`` (and ``azp`` when several audiences),
  ``exp`` and ``iat`` checked with ``LEEWAY_S`` of clock skew, and the ``nonce`` the start
  route chose.
"""

from __future__ import annotations

import base64
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
import jwt

from voxd.core.egress import EgressPolicy, EgressRefused, refusal
from voxd.core.egress_http import egress_session

USE = "sso"
ALGORITHMS = ("RS256", "ES256")
DISCOVERY_TTL_S = 3600.0
MISS_TTL_S = 60.0
LEEWAY_S = 30
TIMEOUT_S = 10.0
MAX_BYTES = 512 * 1024
MAX_KIDS_MISSED = 256


class SsoRefused(Exception):
    """The sign-in is refused (a token or answer that does not verify); ``str(e)`` says why."""


class SsoUnavailable(Exception):
    """The provider cannot be reached or answered something unusable."""


@dataclass(frozen=True)
class Discovery:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    auth_methods: tuple[str, ...]


@dataclass(frozen=True)
class IdToken:
    subject: str
    email: str | None
    email_verified: bool
    claims: dict[str, Any]


def _is_url(v: Any) -> bool:
    return isinstance(v, str) and v.startswith(("https://", "http://")) and len(v) < 2048


def _short(text: Any, n: int = 200) -> str:
    return "".join(c for c in str(text)[:n] if c.isprintable())


@dataclass
class _Keys:
    keys: dict[str, dict[str, Any]]
    fetched_at: float


@dataclass
class OidcClient:
    policy: Callable[[], EgressPolicy]
    _discovery: dict[str, tuple[Discovery, float]] = field(default_factory=dict)
    _jwks: dict[str, _Keys] = field(default_factory=dict)
    _missed: dict[tuple[str, str], float] = field(default_factory=dict)
    jwks_fetches: int = 0  # how many times a JWKS was fetched (read by tests)

    # -- HTTP
    async def _request(self, what: str, method: str, url: str, **kw: Any) -> tuple[int, Any]:
        """(status, the JSON answer) of a request to the provider, through the egress policy."""
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
        try:
            async with egress_session(self.policy(), USE, timeout=timeout) as session, \
                    session.request(method, url, allow_redirects=False, **kw) as resp:
                raw = await resp.content.read(MAX_BYTES + 1)
                status = resp.status
        except EgressRefused as e:
            raise SsoUnavailable(f"the provider's {what} ({url}) may not be reached: {e}") from None
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            refused = refusal(e)
            if refused is not None:
                raise SsoUnavailable(f"the provider's {what} ({url}) may not be reached: {refused}") from None
            raise SsoUnavailable(f"cannot reach the provider's {what} ({url}): {type(e).__name__}") from None
        if len(raw) > MAX_BYTES:
            raise SsoUnavailable(f"the provider's {what} answer is larger than {MAX_BYTES} bytes")
        try:
            return status, json.loads(raw)
        except ValueError:
            raise SsoUnavailable(f"the provider's {what} answered {status} without JSON") from None

    # -- discovery
    async def discover(self, issuer: str, now: float | None = None) -> Discovery:
        now = time.time() if now is None else now
        cached = self._discovery.get(issuer)
        if cached is not None and now - cached[1] < DISCOVERY_TTL_S:
            return cached[0]
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        status, doc = await self._request("discovery document", "GET", url)
        if status != 200 or not isinstance(doc, dict):
            raise SsoUnavailable(f"the discovery document {url} answered {status}")
        if doc.get("issuer") != issuer:
            raise SsoUnavailable(f"the discovery document names issuer {_short(doc.get('issuer'))!r}, "
                                 f"not the configured {issuer!r}")
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not _is_url(doc.get(name)):
                raise SsoUnavailable(f"the discovery document has no usable {name}")
        methods = doc.get("code_challenge_methods_supported")
        if isinstance(methods, list) and "S256" not in methods:
            raise SsoUnavailable("the provider does not support PKCE with S256 (code_challenge_methods_supported)")
        auth = doc.get("token_endpoint_auth_methods_supported")
        auth_methods = tuple(m for m in auth if isinstance(m, str)) if isinstance(auth, list) else ()
        found = Discovery(issuer, doc["authorization_endpoint"], doc["token_endpoint"], doc["jwks_uri"],
                          auth_methods or ("client_secret_basic",))
        self._discovery[issuer] = (found, now)
        return found

    # -- the token endpoint
    async def exchange(self, disc: Discovery, code: str, code_verifier: str, redirect_uri: str, client_id: str,
                       client_secret: str | None) -> str:
        """The ID token the provider gives for ``code``."""
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "code_verifier": code_verifier, "client_id": client_id}
        headers = {"Accept": "application/json"}
        if client_secret is not None:
            if "client_secret_basic" in disc.auth_methods or "client_secret_post" not in disc.auth_methods:
                pair = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"  # RFC 6749 2.3.1
                headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
            else:
                form["client_secret"] = client_secret
        status, answer = await self._request("token endpoint", "POST", disc.token_endpoint, data=form,
                                             headers=headers)
        if not isinstance(answer, dict):
            raise SsoUnavailable(f"the token endpoint answered {status} with no JSON object")
        if status != 200:
            why = _short(answer.get("error", "")) + (": " + _short(answer["error_description"])
                                                     if answer.get("error_description") else "")
            raise SsoRefused(f"the provider refused the code ({status} {why or 'no error given'})")
        token = answer.get("id_token")
        if not isinstance(token, str) or not token:
            raise SsoRefused("the token endpoint gave no id_token (was the 'openid' scope granted?)")
        return token

    # -- keys
    async def _fetch_keys(self, jwks_uri: str, now: float) -> _Keys:
        self.jwks_fetches += 1
        status, doc = await self._request("JWKS", "GET", jwks_uri)
        if status != 200 or not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise SsoUnavailable(f"the JWKS {jwks_uri} answered {status} without a key set")
        keys = {str(k.get("kid", "")): k for k in doc["keys"] if isinstance(k, dict) and k.get("use", "sig") == "sig"}
        got = self._jwks[jwks_uri] = _Keys(keys, now)
        return got

    async def signing_key(self, jwks_uri: str, kid: str, now: float | None = None) -> dict[str, Any]:
        """The JWK named ``kid``: from the cache, else from a fresh fetch (key rotation)."""
        now = time.time() if now is None else now
        cached = self._jwks.get(jwks_uri)
        if cached is not None and kid in cached.keys:
            return cached.keys[kid]
        missed_at = self._missed.get((jwks_uri, kid))
        if cached is None or missed_at is None or now - missed_at >= MISS_TTL_S:
            cached = await self._fetch_keys(jwks_uri, now)
            if kid in cached.keys:
                self._missed.pop((jwks_uri, kid), None)
                return cached.keys[kid]
            if len(self._missed) >= MAX_KIDS_MISSED:
                self._missed.clear()
            self._missed[(jwks_uri, kid)] = now
        raise SsoRefused(f"the ID token is signed with key {_short(kid, 64)!r}, which the provider's JWKS does "
                         "not hold (fetched again to look for it)")

    # -- the ID token
    async def verify(self, disc: Discovery, token: str, client_id: str, nonce: str,
                     now: float | None = None) -> IdToken:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise SsoRefused("the id_token is not a JWT") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise SsoRefused(f"the ID token's algorithm {_short(alg, 20)!r} is not accepted "
                             f"({', '.join(ALGORITHMS)} only)")
        jwk = await self.signing_key(disc.jwks_uri, str(header.get("kid", "")), now)
        if jwk.get("alg") not in (None, alg):
            raise SsoRefused(f"the ID token says {alg} but its key is for {_short(jwk.get('alg'), 20)}")
        try:
            key = jwt.PyJWK(jwk, algorithm=alg).key
        except jwt.PyJWTError:
            raise SsoRefused(f"the provider's key {_short(header.get('kid'), 64)!r} is not a usable {alg} key") from None
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=[alg], audience=client_id, issuer=disc.issuer, leeway=LEEWAY_S,
                options={"require": ["iss", "aud", "exp", "iat", "sub"]})
        except jwt.ExpiredSignatureError:
            raise SsoRefused("the ID token has expired") from None
        except jwt.InvalidAudienceError:
            raise SsoRefused(f"the ID token is not for this client (aud is not {client_id!r})") from None
        except jwt.InvalidIssuerError:
            raise SsoRefused(f"the ID token's issuer is not {disc.issuer!r}") from None
        except jwt.InvalidSignatureError:
            raise SsoRefused("the ID token's signature does not verify") from None
        except jwt.PyJWTError as e:
            raise SsoRefused(f"the ID token is not valid ({type(e).__name__}: {_short(e)})") from None
        aud = claims["aud"]
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != client_id:
            raise SsoRefused("the ID token has several audiences and azp is not this client")
        got = claims.get("nonce")
        if not isinstance(got, str) or not hmac.compare_digest(got.encode(), nonce.encode()):
            raise SsoRefused("the ID token's nonce is not the one this sign-in sent")
        email = claims.get("email")
        return IdToken(subject=str(claims["sub"]), email=email if isinstance(email, str) else None,
                       email_verified=claims.get("email_verified") is True, claims=claims)
