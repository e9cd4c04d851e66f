"""``/api/v1/auth/*``: people sign in with email and password and get a short-lived JWT
access token and a rotating refresh token; ``/api/v1/audit`` reads the audit log.

A failed sign-in counts against the client address's failed-authentication bucket (the
one every credential shares) and the user's lockout counter (``voxd.store.users``). The
answer never says whether the email exists.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from voxd.api.auth import client_ip
from voxd.api.models import Request
from voxd.api.problems import ApiProblem, validation_problem
from voxd.api.routing import PUBLIC, Ctx, Reply, RouteTable
from voxd.api.tokens import ROLE_SCOPES
from voxd.store.repos import InvalidCursor, Refreshed, RefreshRefused

routes = RouteTable()
TAG = "auth"
BASE = "/api/v1/auth"


class Login(Request):
    email: str = Field(min_length=3, max_length=254)
    password: str = Field(min_length=1, max_length=1024)
    org: str | None = Field(None, min_length=1, max_length=63, description="Which of the user's organisations; "
                            "the first one (by name) when left out.")
    totp_code: str | None = Field(None, pattern=r"^[0-9]{6}$", description="The authenticator app's current "
                                  "code, for a user who set up a second factor (POST /api/v1/auth/totp).")


class RefreshBody(Request):
    refresh_token: str = Field(min_length=1, max_length=256)


class TokenPair(BaseModel):
    access_token: str = Field(description="A JWT for `Authorization: Bearer`; valid for `expires_in` seconds.")
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    refresh_token: str = Field(description="Single use: trade it at /api/v1/auth/refresh for a new pair.")
    org: str
    role: str
    scopes: list[str]


async def refused(ctx: Ctx, detail: str) -> ApiProblem:
    await ctx.services.authority.failed(client_ip(ctx.request, ctx.services.settings.trust_forwarded_for))
    return ApiProblem("unauthenticated", detail, headers={"WWW-Authenticate": 'Bearer realm="voxd"'})


async def grant(ctx: Ctx, user_id: str, org: str, refresh: str, family: str) -> TokenPair:
    """The pair of a session (password, cookie or single sign-on alike)."""
    role = await ctx.services.users.role(user_id, org)
    if role is None:  # the membership went away since the family started
        await ctx.services.sessions.revoke_family_of(refresh)
        raise await refused(ctx, "the user is no longer a member of this organisation")
    scopes = ROLE_SCOPES[role]
    token, _ = ctx.services.tokens.issue(user_id, org, scopes, family)
    return TokenPair(access_token=token, expires_in=ctx.services.tokens.ttl_s, refresh_token=refresh,
                     org=org, role=role, scopes=list(scopes))


async def _pair(ctx: Ctx, user_id: str, org: str, refresh: str, family: str) -> Reply:
    return Reply(await grant(ctx, user_id, org, refresh, family), headers={"Cache-Control": "no-store"})


@routes.route("POST", BASE + "/login", scope=PUBLIC, summary="Sign in with email and password", tag=TAG,
              limit_class="write", body=Login, response=TokenPair,
              problems=("unauthenticated", "second-factor-required", "auth-throttled"), self_audited=True,
              description="Five wrong passwords (or second-factor codes) in a row lock the account for 15 minutes.")
async def login(ctx: Ctx) -> Reply:
    started = await sign_in(ctx, ctx.body)
    return await _pair(ctx, started.user_id, started.org, started.token, started.family)


async def sign_in(ctx: Ctx, body: Login) -> Refreshed:
    """Every factor of ``body`` checked (counted, audited): the new session."""
    ip = client_ip(ctx.request, ctx.services.settings.trust_forwarded_for)
    throttled = await ctx.services.authority.throttled(ip)
    if throttled is not None:
        raise ApiProblem("auth-throttled", f"too many failed authentications; retry in {throttled.retry_after_s} s",
                         headers={"Retry-After": str(throttled.retry_after_s)})
    user, why = await ctx.services.users.check_password(body.email, body.password)
    if user is None or why:
        if user is not None:
            await ctx.services.db.audit().append(actor=user.id, ip=ip, action="login_refused", target=why, org="default")
        raise await refused(ctx, "the account is locked; try again later" if why == "locked"
                       else "wrong email or password")
    orgs = dict(await ctx.services.users.memberships(user.id))
    org = body.org or (min(orgs) if orgs else None)
    if org is None or org not in orgs:
        raise await refused(ctx, "wrong email or password")
    if await ctx.services.totp.enabled(user.id):
        if body.totp_code is None:
            raise ApiProblem("second-factor-required", "this account has a second factor: send `totp_code`")
        if not await ctx.services.totp.check(user.id, body.totp_code):
            await ctx.services.users.note_failure(user.id)
            await ctx.services.db.audit().append(actor=user.id, ip=ip, action="login_refused", target="totp",
                                                 org="default")
            raise await refused(ctx, "wrong or already used second-factor code")
    await ctx.services.users.note_success(user.id)
    started = await ctx.services.sessions.start(user.id, org)
    await ctx.services.db.for_org(org).audit().append(actor=user.id, ip=ip, action="login", target=user.id)
    return started


@routes.route("POST", BASE + "/refresh", scope=PUBLIC, summary="Trade a refresh token for a new pair", tag=TAG,
              limit_class="write", body=RefreshBody, response=TokenPair, problems=("unauthenticated",),
              self_audited=True, description="Each refresh token works once. Presenting one a second time "
              "signs the whole session out (every token of its family).")
async def refresh(ctx: Ctx) -> Reply:
    body: RefreshBody = ctx.body
    try:
        new = await ctx.services.sessions.rotate(body.refresh_token)
    except RefreshRefused as e:
        raise await refused(ctx, f"the refresh token is {e.reason}") from None
    return await _pair(ctx, new.user_id, new.org, new.token, new.family)


@routes.route("POST", BASE + "/logout", scope=PUBLIC, summary="Sign out (revoke the refresh token's session)",
              tag=TAG, limit_class="write", body=RefreshBody, status=204, self_audited=True,
              description="Every refresh and access token of the session stops working.")
async def logout(ctx: Ctx) -> Reply:
    body: RefreshBody = ctx.body
    family = await ctx.services.sessions.revoke_family_of(body.refresh_token)
    if family is not None:
        ip = client_ip(ctx.request, ctx.services.settings.trust_forwarded_for)
        await ctx.services.audit.append(actor="session", ip=ip, action="logout", target=family)
    return Reply(status=204)


# ---------------------------------------------------------------- the audit log
class AuditQuery(Request):
    action: str | None = Field(None, max_length=100)
    actor: str | None = Field(None, max_length=100)
    target: str | None = Field(None, max_length=1000)
    since: float | None = Field(None, allow_inf_nan=False, description="At or after (unix s).")
    until: float | None = Field(None, allow_inf_nan=False, description="Before (unix s).")
    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = Field(None, max_length=32, description="next_cursor of the previous page.")


class AuditRow(BaseModel):
    seq: int
    at: float
    org: str
    actor: str = Field(description="A user id, an API key id, `cli` or `system`.")
    ip: str | None
    action: str
    target: str
    before_hash: str | None
    after_hash: str | None
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    rows: list[AuditRow]
    next_cursor: str | None


audit_routes = RouteTable()


@audit_routes.route("GET", "/api/v1/audit", scope="audit:read", summary="The organisation's audit log", tag="audit",
                    query=AuditQuery, response=AuditPage, description="Newest first. Owners and admins.")
async def list_audit(ctx: Ctx) -> Reply:
    q: AuditQuery = ctx.query
    try:
        rows, nxt = await ctx.services.audit.list(action=q.action, actor=q.actor, target=q.target, since=q.since,
                                                  until=q.until, limit=q.limit, cursor=q.cursor)
    except InvalidCursor as e:
        raise validation_problem([{"field": "cursor", "message": str(e)}], "query") from e
    return Reply(AuditPage.model_validate({"rows": rows, "next_cursor": nxt}))
