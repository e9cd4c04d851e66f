"""``/api/v1/auth/session``: sign-in for browsers (the console). The same sign-in as
``/api/v1/auth/login`` and the same tokens, but in cookies (``voxd.api.cookies``) instead
of the answer: ``POST`` signs in, ``POST .../refresh`` rotates them, ``DELETE`` signs out.

Refresh and sign-out are state-changing requests a browser makes with its cookies, so
they need ``X-CSRF-Token`` like every other one.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from voxd.api.auth import client_ip
from voxd.api.cookies import (
    ACCESS_COOKIE,
    CSRF_HEADER,
    REFRESH_COOKIE,
    SESSION_PATH,
    check_csrf,
    cleared_cookies,
    session_cookies,
)
from voxd.api.routing import PUBLIC, Ctx, Reply, RouteTable
from voxd.api.signin import TAG, Login, TokenPair, grant, refused, sign_in
from voxd.api.tokens import TokenRefused
from voxd.store.repos import RefreshRefused

routes = RouteTable()
REFRESH_TTL_S = 30 * 86400
NO_STORE = {"Cache-Control": "no-store"}


class BrowserSession(BaseModel):
    org: str
    role: str
    scopes: list[str]
    expires_in: int = Field(description="Seconds the access cookie is valid; refresh before then.")
    csrf_token: str = Field(description=f"Send it as `{CSRF_HEADER}` on every POST, PUT, PATCH and DELETE "
                            "(the `voxd_csrf` cookie holds it too).")


def with_cookies(ctx: Ctx, pair: TokenPair, family: str, *, status: int = 200) -> Reply:
    """The pair as cookies, and the answer a browser gets (no token in it)."""
    csrf = ctx.services.tokens.csrf_for(family)
    cookies = session_cookies(pair.access_token, pair.expires_in, pair.refresh_token, REFRESH_TTL_S, csrf)
    body = BrowserSession(org=pair.org, role=pair.role, scopes=pair.scopes, expires_in=pair.expires_in,
                          csrf_token=csrf)
    return Reply(body, status=status, headers=dict(NO_STORE), cookies=cookies)


@routes.route("POST", SESSION_PATH, scope=PUBLIC, summary="Sign in a browser (tokens in cookies)", tag=TAG,
              limit_class="write", body=Login, response=BrowserSession,
              problems=("unauthenticated", "second-factor-required", "auth-throttled"), self_audited=True,
              description="As /api/v1/auth/login, but the tokens are set as `HttpOnly; Secure; SameSite=Strict` "
              "cookies (`voxd_access`, `voxd_refresh`) with a CSRF token (`voxd_csrf`, and in the answer).")
async def start_session(ctx: Ctx) -> Reply:
    started = await sign_in(ctx, ctx.body)
    pair = await grant(ctx, started.user_id, started.org, started.token, started.family)
    return with_cookies(ctx, pair, started.family)


@routes.route("POST", SESSION_PATH + "/refresh", scope=PUBLIC, summary="Rotate a browser session's cookies",
              tag=TAG, limit_class="write", response=BrowserSession, problems=("unauthenticated", "csrf-failed"),
              self_audited=True, description="Takes the `voxd_refresh` cookie (and `X-CSRF-Token`); sets new "
              "access and refresh cookies. A refresh cookie presented twice signs the whole session out.")
async def refresh_session(ctx: Ctx) -> Reply:
    raw = ctx.request.cookies.get(REFRESH_COOKIE, "")
    if not raw:
        raise await refused(ctx, f"no {REFRESH_COOKIE} cookie: sign in first (POST {SESSION_PATH})")
    family = await ctx.services.sessions.family_of(raw)
    if family is not None:
        check_csrf(ctx.request, ctx.services.tokens.csrf_for(family))
    try:  # an unknown or used token goes on to be refused (a used one revokes its family)
        new = await ctx.services.sessions.rotate(raw)
    except RefreshRefused as e:
        raise await refused(ctx, f"the refresh cookie is {e.reason}") from None
    pair = await grant(ctx, new.user_id, new.org, new.token, new.family)
    return with_cookies(ctx, pair, new.family)


@routes.route("DELETE", SESSION_PATH, scope=PUBLIC, summary="Sign a browser out (and clear its cookies)", tag=TAG,
              limit_class="write", status=204, problems=("csrf-failed",), self_audited=True,
              description="Revokes the session of the cookies (every token of it) and clears them; needs "
              "`X-CSRF-Token` when they belong to a live session.")
async def end_session(ctx: Ctx) -> Reply:
    family = await _family(ctx)
    if family is not None:
        check_csrf(ctx.request, ctx.services.tokens.csrf_for(family))
        await ctx.services.sessions.revoke_family(family)
        ip = client_ip(ctx.request, ctx.services.settings.trust_forwarded_for)
        await ctx.services.audit.append(actor="session", ip=ip, action="logout", target=family)
    return Reply(status=204, cookies=cleared_cookies(), headers=dict(NO_STORE))


async def _family(ctx: Ctx) -> str | None:
    """The live session the cookies belong to: the refresh cookie's, else the access cookie's."""
    raw = ctx.request.cookies.get(REFRESH_COOKIE, "")
    family = await ctx.services.sessions.family_of(raw) if raw else None
    if family is not None:
        return family
    access = ctx.request.cookies.get(ACCESS_COOKIE, "")
    if not access:
        return None
    try:
        family = ctx.services.tokens.verify(access).family
    except TokenRefused:
        return None
    return family if await ctx.services.sessions.family_live(family) else None


__all__ = ["routes", "with_cookies"]
