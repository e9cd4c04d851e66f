"""Invitations and password resets: single-use tokens (stored hashed, ``voxd.store.users``).

An owner or admin (scope ``users:admin``) invites an email into their organisation with a
role no wider than their own scopes, or issues a reset token for a member; the person
redeems it at a public route. Tokens are shown once, valid for 7 days (resets: 1 hour).
"""

from __future__ import annotations

import time

from pydantic import BaseModel, Field

from voxd.api.auth import client_ip
from voxd.api.keys import effective_scopes
from voxd.api.models import Request
from voxd.api.problems import ApiProblem, validation_problem
from voxd.api.routing import PUBLIC, Ctx, Reply, RouteTable
from voxd.api.tokens import ROLE_SCOPES
from voxd.core.errors import NotFound
from voxd.store.repos import UserExists, normal_email

routes = RouteTable()
INVITE_TTL_S = 7 * 86400.0
RESET_TTL_S = 3600.0
MIN_PASSWORD = 8


class Invite(Request):
    email: str = Field(min_length=3, max_length=254)
    role: str = Field(pattern="^(owner|admin|developer|viewer)$")


class ResetRequest(Request):
    email: str = Field(min_length=3, max_length=254)


class Issued(BaseModel):
    token: str = Field(description="Single use; shown only here. Send it to the person.")
    expires_at: float


class Redeem(Request):
    token: str = Field(min_length=1, max_length=256)
    password: str = Field(min_length=MIN_PASSWORD, max_length=1024)


class Joined(BaseModel):
    user_id: str
    org: str
    role: str


def _email(value: str) -> str:
    try:
        return normal_email(value)
    except ValueError as e:
        raise validation_problem([{"field": "email", "message": str(e)}], "body") from e


@routes.route("POST", "/api/v1/invitations", scope="users:admin", summary="Invite someone into the organisation",
              tag="users", limit_class="write", body=Invite, response=Issued, status=201,
              description="The role's scopes must be ones the caller holds.")
async def create_invitation(ctx: Ctx) -> Reply:
    body: Invite = ctx.body
    assert ctx.key is not None
    beyond = sorted(effective_scopes(ROLE_SCOPES[body.role]) - effective_scopes(ctx.key.scopes))
    if beyond:
        raise ApiProblem("insufficient-scope", f"role {body.role!r} holds {', '.join(beyond)}, which the caller "
                         "does not", required_scope=beyond[0])
    raw = await ctx.services.users.issue_token("invite", ctx.org, _email(body.email), role=body.role,
                                               created_by=ctx.actor, ttl_s=INVITE_TTL_S)
    return Reply(Issued(token=raw, expires_at=time.time() + INVITE_TTL_S), status=201,
                 headers={"Cache-Control": "no-store"})


@routes.route("POST", "/api/v1/password-resets", scope="users:admin", summary="A password reset token for a member",
              tag="users", limit_class="write", body=ResetRequest, response=Issued, status=201,
              problems=("not-found",))
async def create_password_reset(ctx: Ctx) -> Reply:
    body: ResetRequest = ctx.body
    user = await ctx.services.users.by_email(_email(body.email))
    if user is None or await ctx.services.users.role(user.id, ctx.org) is None:
        raise NotFound("no member with that email")
    raw = await ctx.services.users.issue_token("reset", ctx.org, user.email, role=None, created_by=ctx.actor,
                                               ttl_s=RESET_TTL_S)
    return Reply(Issued(token=raw, expires_at=time.time() + RESET_TTL_S), status=201,
                 headers={"Cache-Control": "no-store"})


async def _bad_token(ctx: Ctx) -> ApiProblem:
    await ctx.services.authority.failed(client_ip(ctx.request, ctx.services.settings.trust_forwarded_for))
    return ApiProblem("unauthenticated", "the token is unknown, expired or used already")


@routes.route("POST", "/api/v1/auth/accept-invitation", scope=PUBLIC, summary="Join with an invitation token",
              tag="auth", limit_class="write", body=Redeem, response=Joined, status=201,
              problems=("unauthenticated",), self_audited=True,
              description="Creates the user with this password, or adds the membership to an existing user "
              "(whose password stays as it is).")
async def accept_invitation(ctx: Ctx) -> Reply:
    body: Redeem = ctx.body
    row = await ctx.services.users.consume_token("invite", body.token)
    if row is None:
        raise await _bad_token(ctx)
    user = await ctx.services.users.by_email(row["email"])
    if user is None:
        try:
            user = await ctx.services.users.create(row["email"], body.password)
        except UserExists:  # created between the two calls
            user = await ctx.services.users.by_email(row["email"])
    assert user is not None
    await ctx.services.users.set_role(user.id, row["org"], row["role"])
    await ctx.services.db.for_org(row["org"]).audit().append(
        actor=user.id, ip=client_ip(ctx.request, ctx.services.settings.trust_forwarded_for),
        action="accept_invitation", target=user.id, after={"role": row["role"]})
    return Reply(Joined(user_id=user.id, org=row["org"], role=row["role"]), status=201)


@routes.route("POST", "/api/v1/auth/reset-password", scope=PUBLIC, summary="Set a new password with a reset token",
              tag="auth", limit_class="write", body=Redeem, status=204, problems=("unauthenticated",),
              self_audited=True, description="Also lifts a lockout.")
async def reset_password(ctx: Ctx) -> Reply:
    body: Redeem = ctx.body
    row = await ctx.services.users.consume_token("reset", body.token)
    user = None if row is None else await ctx.services.users.by_email(row["email"])
    if row is None or user is None:
        raise await _bad_token(ctx)
    await ctx.services.users.set_password(user.id, body.password)
    await ctx.services.db.for_org(row["org"]).audit().append(
        actor=user.id, ip=client_ip(ctx.request, ctx.services.settings.trust_forwarded_for),
        action="reset_password", target=user.id)
    return Reply(status=204)
