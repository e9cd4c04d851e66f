"""The one credential check (an API key or a sign-in JWT), and the failed-authentication
throttle every credential shares.

Either way the pipeline gets an ``ApiKey``-shaped principal carrying its ``org`` and
scopes: a user signed in through ``/api/v1/auth/login`` is one whose ``id`` is the user's
(``usr_...``), whose scopes are their role's in the token's organisation, and whose
limits are none of a key's (the token's own expiry is checked here).

``KeyAuthority`` is what the control API pipeline and every other listener that takes an
API key use (``/webrtc/offer`` gets it injected as ``KeyCheck``: the transports do not
import the key store). Failed authentications count per client address in one bucket
(``api.failed_auth_per_5min``), wherever they happen: the pipeline counts its own, and
``credential_throttle`` counts the 401/403 answers of the routes outside it (WebRTC
offers and candidates, Twilio streams and TwiML, playground tokens) and refuses an
address that is out of attempts before its credentials are looked at.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from voxd.api.problems import ApiProblem
from voxd.api.ratelimit import BucketSet, Outcome, headers_for
from voxd.api.tokens import AccessClaims, TokenIssuer, TokenRefused, looks_like_jwt
from voxd.store.repos import ApiKey, ApiKeyRepo, SessionRepo, well_formed

if TYPE_CHECKING:
    from voxd.api.deps import ApiSettings

AUTH_BUCKET = "auth"
# routes outside the control API that take a credential (web token, API key, Twilio token
# or signature); their 401/403 answers count as failed authentications
CREDENTIAL_ROUTES = re.compile(r"^/(webrtc/|media/|twiml/|talk/[^/]+/token$)")


class KeyCheck(Protocol):
    """What a transport needs to accept an API key (``voxd.net.webtoken.api_key_check``)."""

    async def check(self, raw: str, scope: str) -> str | None: ...


def is_user(principal: ApiKey) -> bool:
    return principal.id.startswith("usr_")


def user_principal(user_id: str, org: str, scopes: tuple[str, ...], issued_at: float) -> ApiKey:
    return ApiKey(id=user_id, name=user_id, prefix="", scopes=scopes, created_by="login", created_at=issued_at,
                  expires_at=None, revoked_at=None, last_used_at=None, rate_limit_per_minute=None,
                  quota_per_day=None, quota_per_month=None, org=org)


# the "scope" of operations on a person's own account (their second factor): only a signed-in
# user's access token holds it, never an API key, whatever its scopes
SIGNED_IN = "user"


def holds(key: ApiKey, scope: str) -> bool:
    if scope == SIGNED_IN:
        return is_user(key)
    return "admin" in key.scopes or scope in key.scopes


def client_ip(request: web.Request, trust_forwarded: bool) -> str:
    if trust_forwarded:
        fwd = request.headers.get("X-Forwarded-For", "")
        if fwd:
            return fwd.split(",")[0].strip()
    return request.remote or "unknown"


@dataclass
class KeyAuthority:
    keys: ApiKeyRepo
    buckets: BucketSet
    settings: Callable[[], ApiSettings]
    tokens: TokenIssuer | None = None
    sessions: SessionRepo | None = None

    # -- the throttle
    async def throttled(self, ip: str) -> Outcome | None:
        """The bucket's verdict when ``ip`` is out of authentication attempts, else None."""
        out = await self.buckets.inspect(AUTH_BUCKET, f"auth:{ip}", self.settings().failed_auth_rate)
        return None if out.allowed else out

    async def failed(self, ip: str) -> None:
        await self.buckets.acquire(AUTH_BUCKET, f"auth:{ip}", self.settings().failed_auth_rate)

    # -- the check
    async def verify(self, raw: str) -> tuple[ApiKey | None, str]:
        """(the live key, "") or (the key if known, why it is refused: unknown/revoked/expired)."""
        if not well_formed(raw):
            return None, "unknown"
        key = await self.keys.lookup(raw)
        if key is None:
            return None, "unknown"
        if key.revoked_at is not None:
            return key, "revoked"
        if key.expired():
            return key, "expired"
        return key, ""

    async def check(self, raw: str, scope: str) -> str | None:
        """The key's organisation when ``raw`` is a live key holding ``scope`` (or admin),
        else None: the transports that ask (WebRTC, websocket media) reach that
        organisation's agents only."""
        key, why = await self.verify(raw)
        return key.org if key is not None and not why and holds(key, scope) else None

    async def authenticate(self, header: str, ip: str, outcomes: list[Outcome]) -> ApiKey:
        """The pipeline's check of an ``Authorization`` header; ApiProblem when refused."""
        settings = self.settings()
        scheme, _, token = header.partition(" ")
        if not header:
            await _limit(self.buckets, outcomes, "ip", f"ip:{ip}", settings)
            raise unauthenticated("send 'Authorization: Bearer <API key>'")
        throttled = await self.throttled(ip)  # credentials are presented: not while this address is guessing
        if throttled is not None:
            outcomes.append(throttled)
            raise ApiProblem("auth-throttled",
                             f"too many failed authentications; retry in {throttled.retry_after_s} s")
        token = token.strip()
        if scheme.lower() == "bearer" and self.tokens is not None and looks_like_jwt(token):
            return await self._user(token, ip, outcomes)
        key, why = (await self.verify(token)) if scheme.lower() == "bearer" and token else (None, "unknown")
        if key is None or why:
            await self.failed(ip)
            await _limit(self.buckets, outcomes, "ip", f"ip:{ip}", settings)
            if key is None:
                raise unauthenticated("the API key is malformed or unknown")
            raise ApiProblem(f"key-{why}", f"API key {key.id} {'was revoked' if why == 'revoked' else 'expired'}",
                             headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return key


    async def authenticate_cookie(self, token: str, ip: str, outcomes: list[Outcome]) -> tuple[ApiKey, str]:
        """The pipeline's check of a session cookie (``voxd.api.cookies``): the same token
        check as a bearer JWT; (the principal, the session's family for the CSRF check)."""
        throttled = await self.throttled(ip)
        if throttled is not None:
            outcomes.append(throttled)
            raise ApiProblem("auth-throttled",
                             f"too many failed authentications; retry in {throttled.retry_after_s} s")
        if self.tokens is None or not looks_like_jwt(token):
            await self.failed(ip)
            await _limit(self.buckets, outcomes, "ip", f"ip:{ip}", self.settings())
            raise unauthenticated("the session cookie holds no sign-in token")
        claims = await self._claims(token, ip, outcomes)
        return user_principal(claims.user_id, claims.org, claims.scopes, claims.issued_at), claims.family

    async def _user(self, token: str, ip: str, outcomes: list[Outcome]) -> ApiKey:
        claims = await self._claims(token, ip, outcomes)
        return user_principal(claims.user_id, claims.org, claims.scopes, claims.issued_at)

    async def _claims(self, token: str, ip: str, outcomes: list[Outcome]) -> AccessClaims:
        assert self.tokens is not None
        try:
            claims = self.tokens.verify(token)
            if self.sessions is not None and not await self.sessions.family_live(claims.family):
                raise TokenRefused("the session was signed out or its refresh token reused")
        except TokenRefused as e:
            await self.failed(ip)
            await _limit(self.buckets, outcomes, "ip", f"ip:{ip}", self.settings())
            raise ApiProblem("unauthenticated", str(e),
                             headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None
        return claims


async def _limit(buckets: BucketSet, outcomes: list[Outcome], name: str, key: str, settings: ApiSettings) -> None:
    out = await buckets.acquire(name, key, settings.ip_rate)
    outcomes.append(out)
    if not out.allowed:
        raise ApiProblem("rate-limited", f"rate limit '{name}' exceeded; retry in {out.retry_after_s} s")


def unauthenticated(detail: str) -> ApiProblem:
    return ApiProblem("unauthenticated", detail, headers={"WWW-Authenticate": 'Bearer realm="voxd"'})


def credential_throttle(authority: Callable[[], KeyAuthority | None]) -> Middleware:
    """Middleware: the failed-auth throttle for the credential routes outside the pipeline."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        auth = authority()
        if auth is None or not CREDENTIAL_ROUTES.match(request.path):
            return await handler(request)
        ip = client_ip(request, auth.settings().trust_forwarded_for)
        throttled = await auth.throttled(ip)
        if throttled is not None:
            refused = ApiProblem("auth-throttled", f"too many failed authentications; retry in "
                                 f"{throttled.retry_after_s} s").response(request.path)
            refused.headers.update(headers_for([throttled]))
            return refused
        try:
            resp = await handler(request)
        except web.HTTPException as e:
            if e.status in (401, 403):
                await auth.failed(ip)
            raise
        if resp.status in (401, 403):
            await auth.failed(ip)
        return resp

    return middleware
