"""Single sign-on: an organisation's OpenID Connect provider (authorization code + PKCE).

* ``PUT /api/v1/orgs/current/oidc`` (``users:admin``, audited): the provider of the
  caller's organisation, stored in the database; a client secret given here is stored
  sealed, or the provider names a secret declared in voxd.yaml (``client_secret_name``).
* ``GET /api/v1/auth/oidc/{org}/start``: a browser is sent to the provider's authorization
  endpoint with a fresh ``state``, ``nonce`` and PKCE S256 challenge, all kept server-side
  (``voxd.store.oidc``) and bound to the browser by a ``voxd_oidc`` cookie.
* ``GET /api/v1/auth/oidc/{org}/callback``: the state is consumed (once), the code is traded
  at the token endpoint with the verifier, the ID token verified (``voxd.api.oidc``), and
  the person matched by a verified email (a member of the organisation) or created with
  the provider's default role; they get the same pair as a password sign-in, and the
  browser session's cookies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from typing import Literal
from urllib.parse import urlencode

from pydantic import BaseModel, Field, field_validator

from voxd.api.auth import client_ip
from voxd.api.cookie_session import REFRESH_TTL_S
from voxd.api.cookies import session_cookies
from voxd.api.models import Request
from voxd.api.oidc import Discovery, SsoRefused, SsoUnavailable
from voxd.api.problems import ApiProblem
from voxd.api.routing import PUBLIC, Cookie, Ctx, Reply, RouteTable
from voxd.api.signin import TokenPair, grant
from voxd.core.egress import EgressRefused, parse_target
from voxd.core.secrets import SecretRefused
from voxd.store.repos import OidcLogin, OidcProvider, OidcRepo, normal_email

routes = RouteTable(params={"org": r"[a-z0-9][a-z0-9-]{0,62}"})
TAG = "auth"
CONFIG_PATH = "/api/v1/orgs/current/oidc"
FLOW = "/api/v1/auth/oidc/{org}"
BINDING_COOKIE = "voxd_oidc"
SCOPE = "openid email profile"
DOMAIN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$"


class OidcConfig(Request):
    issuer: str = Field(min_length=8, max_length=2000, pattern=r"^https?://[^\s]+$", examples=["https://login.example.com"],
                        description="The provider's issuer URL; `<issuer>/.well-known/openid-configuration` is read. "
                        "https, or http to an address an `egress.allow` rule (use `sso`) opens.")
    client_id: str = Field(min_length=1, max_length=512)
    client_secret: str | None = Field(None, min_length=1, max_length=2048, description="Stored sealed; never "
                                      "shown again. Leave out for a public client (PKCE only).")
    client_secret_name: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$", description="Instead "
                                           "of client_secret: a secret declared in voxd.yaml `secrets:` whose hosts "
                                           "include the token endpoint's.")
    default_role: Literal["admin", "developer", "viewer"] = Field("viewer", description="What a person signing "
                                                                  "in for the first time becomes.")
    allowed_domains: list[str] = Field(default_factory=list, max_length=100, description="Email domains "
                                       "accepted (e.g. `example.com`); empty: any the provider vouches for.")
    redirect_uri: str | None = Field(None, max_length=2000, pattern=r"^https?://[^\s]+$", description="The "
                                     "callback URL registered at the provider; default: this daemon's "
                                     "`/api/v1/auth/oidc/<org>/callback` as the request reached it.")

    @field_validator("allowed_domains")
    @classmethod
    def _domains(cls, v: list[str]) -> list[str]:
        out = [d.strip().lower().rstrip(".") for d in v]
        for d in out:
            if not re.fullmatch(DOMAIN, d):
                raise ValueError(f"{d!r} is not a domain name")
        return out


class OidcConfigView(BaseModel):
    org: str
    issuer: str
    client_id: str
    has_client_secret: bool = Field(description="Whether a sealed client secret is stored.")
    client_secret_name: str | None
    default_role: str
    allowed_domains: list[str]
    redirect_uri: str | None
    start_url: str = Field(description="Where a browser starts signing in.")
    updated_by: str
    updated_at: float


class CallbackQuery(Request):
    code: str | None = Field(None, min_length=1, max_length=4096)
    state: str | None = Field(None, min_length=1, max_length=512)
    error: str | None = Field(None, max_length=200)
    error_description: str | None = Field(None, max_length=1000)
    iss: str | None = Field(None, max_length=2000, description="RFC 9207: the issuer of the answer.")
    session_state: str | None = Field(None, max_length=1000)


def _view(p: OidcProvider) -> OidcConfigView:
    return OidcConfigView(org=p.org, issuer=p.issuer, client_id=p.client_id, has_client_secret=p.client_secret is not None,
                          client_secret_name=p.client_secret_name, default_role=p.default_role,
                          allowed_domains=list(p.allowed_domains), redirect_uri=p.redirect_uri,
                          start_url=FLOW.format(org=p.org) + "/start", updated_by=p.updated_by, updated_at=p.updated_at)


def _problem(field: str, message: str) -> ApiProblem:
    return ApiProblem("validation-error", f"body field '{field}': {message}", errors=[{"field": field, "message": message}])


@routes.route("PUT", CONFIG_PATH, scope="users:admin", summary="Set the organisation's single sign-on (OIDC) provider",
              tag=TAG, limit_class="write", body=OidcConfig, response=OidcConfigView,
              description="Replaces the provider of the caller's organisation. People then sign in at "
              "`/api/v1/auth/oidc/<org>/start`.")
async def put_oidc(ctx: Ctx) -> Reply:
    body: OidcConfig = ctx.body
    if body.client_secret is not None and body.client_secret_name is not None:
        raise _problem("client_secret_name", "give client_secret or client_secret_name, not both")
    for name in ("issuer", "redirect_uri"):
        url = getattr(body, name)
        if url is None:
            continue
        try:
            target = parse_target(url)
        except EgressRefused as e:
            raise _problem(name, f"{url} {e}") from None
        if not target.secure and not ((target.address is not None and target.address.is_loopback)
                                      or target.host == "localhost"):
            raise _problem(name, "must be https:// (http only on this machine's loopback)")
    why = ctx.services.outbound().policy.url_problem(body.issuer, "sso")
    if why:
        raise _problem("issuer", why)
    if body.client_secret_name is not None and ctx.services.outbound().secrets.get(body.client_secret_name) is None:
        raise _problem("client_secret_name", f"{body.client_secret_name!r} is not a secret declared in voxd.yaml")
    saved = await ctx.services.oidc.put_provider(OidcProvider(
        org=ctx.org, issuer=body.issuer, client_id=body.client_id, client_secret=body.client_secret,
        client_secret_name=body.client_secret_name, default_role=body.default_role,
        allowed_domains=tuple(body.allowed_domains), redirect_uri=body.redirect_uri, updated_by=ctx.actor))
    return Reply(_view(saved))


@routes.route("GET", CONFIG_PATH, scope="users:admin", summary="The organisation's single sign-on provider", tag=TAG,
              response=OidcConfigView, problems=("not-found",))
async def get_oidc(ctx: Ctx) -> Reply:
    found = await ctx.services.oidc.get_provider()
    if found is None:
        raise ApiProblem("not-found", "this organisation has no single sign-on provider")
    return Reply(_view(found))


@routes.route("DELETE", CONFIG_PATH, scope="users:admin", summary="Remove the organisation's single sign-on provider",
              tag=TAG, limit_class="write", status=204, problems=("not-found",),
              description="People who signed in through it keep their accounts; they sign in another way.")
async def delete_oidc(ctx: Ctx) -> Reply:
    if not await ctx.services.oidc.delete_provider():
        raise ApiProblem("not-found", "this organisation has no single sign-on provider")
    return Reply(status=204)


# ---------------------------------------------------------------- the flow
async def _provider(ctx: Ctx, org: str) -> tuple[OidcRepo, OidcProvider]:
    """The organisation's provider; the same 404 for no such organisation and none set up."""
    sealer = ctx.services.sealer
    assert sealer is not None
    if await ctx.services.deps.db.orgs().get(org) is not None:
        repo = ctx.services.deps.db.for_org(org).oidc(sealer)
        found = await repo.get_provider()
        if found is not None:
            return repo, found
    raise ApiProblem("not-found", f"organisation {org!r} has no single sign-on")


async def _discover(ctx: Ctx, issuer: str) -> Discovery:
    try:
        return await ctx.services.sso.discover(issuer)
    except SsoUnavailable as e:
        raise ApiProblem("sso-unavailable", str(e)) from None


def _redirect_uri(ctx: Ctx, p: OidcProvider) -> str:
    if p.redirect_uri:
        return p.redirect_uri
    url = ctx.request.url
    return f"{url.scheme}://{url.raw_authority}{FLOW.format(org=p.org)}/callback"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@routes.route("GET", FLOW + "/start", scope=PUBLIC, summary="Start signing in through the organisation's provider",
              tag=TAG, limit_class="write", status=302, problems=("not-found", "sso-unavailable"),
              description="Redirects the browser to the provider (authorization code with PKCE S256). The sign-in "
              "must come back to the callback within 10 minutes, in the same browser.")
async def oidc_start(ctx: Ctx) -> Reply:
    org = ctx.path["org"]
    repo, p = await _provider(ctx, org)
    disc = await _discover(ctx, p.issuer)
    state, nonce, binding = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)
    redirect_uri = _redirect_uri(ctx, p)
    await repo.begin(state, binding, nonce, verifier, redirect_uri)
    params = {"response_type": "code", "client_id": p.client_id, "redirect_uri": redirect_uri, "scope": SCOPE,
              "state": state, "nonce": nonce, "code_challenge": _b64(hashlib.sha256(verifier.encode()).digest()),
              "code_challenge_method": "S256"}
    sep = "&" if "?" in disc.authorization_endpoint else "?"
    # Lax, not Strict: the provider's redirect back is a navigation from another site
    cookie = Cookie(BINDING_COOKIE, binding, FLOW.format(org=org) + "/callback", 600, samesite="Lax")
    return Reply(status=302, headers={"Location": disc.authorization_endpoint + sep + urlencode(params),
                                      "Cache-Control": "no-store"}, cookies=[cookie])


@routes.route("GET", FLOW + "/callback", scope=PUBLIC, summary="Where the provider sends the browser back",
              tag=TAG, limit_class="write", query=CallbackQuery, response=TokenPair, self_audited=True,
              problems=("not-found", "sso-refused", "sso-unavailable"),
              description="Verifies the sign-in and answers the same token pair as /api/v1/auth/login, with the "
              "browser session's cookies set (voxd_access, voxd_refresh, voxd_csrf).")
async def oidc_callback(ctx: Ctx) -> Reply:
    org, q = ctx.path["org"], ctx.query
    assert isinstance(q, CallbackQuery)
    repo, p = await _provider(ctx, org)
    ip = client_ip(ctx.request, ctx.services.settings.trust_forwarded_for)
    try:
        user_id = await _verified_user(ctx, repo, p, q)
    except SsoRefused as e:
        await ctx.services.authority.failed(ip)
        await ctx.services.db.for_org(org).audit().append(actor="sso", ip=ip, action="login_sso_refused",
                                                           target=str(e)[:200])
        raise ApiProblem("sso-refused", str(e)) from None
    except SsoUnavailable as e:
        raise ApiProblem("sso-unavailable", str(e)) from None
    started = await ctx.services.sessions.start(user_id, org)
    await ctx.services.db.for_org(org).audit().append(actor=user_id, ip=ip, action="login_sso", target=user_id)
    pair = await grant(ctx, user_id, org, started.token, started.family)
    cookies = [*session_cookies(pair.access_token, pair.expires_in, pair.refresh_token, REFRESH_TTL_S,
                                ctx.services.tokens.csrf_for(started.family)),
               Cookie(BINDING_COOKIE, "", FLOW.format(org=org) + "/callback", 0, samesite="Lax")]
    return Reply(pair, headers={"Cache-Control": "no-store"}, cookies=cookies)


async def _login(ctx: Ctx, repo: OidcRepo, q: CallbackQuery) -> OidcLogin:
    if q.state is None:
        raise SsoRefused("the callback carries no state")
    login, why = await repo.consume(q.state)
    if login is None:
        raise SsoRefused({"used": "this sign-in's state was used already (a replayed callback)",
                          "expired": "the sign-in took longer than 10 minutes; start again"}.get(
                              why, "unknown state: this sign-in was not started here"))
    binding = ctx.request.cookies.get(BINDING_COOKIE, "")
    if not hmac.compare_digest(hashlib.sha256(binding.encode()).hexdigest(), login.binding_hash):
        raise SsoRefused(f"the sign-in came back to another browser than the one that started it "
                         f"(no matching {BINDING_COOKIE} cookie)")
    return login


async def _verified_user(ctx: Ctx, repo: OidcRepo, p: OidcProvider, q: CallbackQuery) -> str:
    """The id of the person the provider vouches for, created on first sign-in."""
    login = await _login(ctx, repo, q)
    if q.error is not None:
        raise SsoRefused(f"the provider answered {q.error}" + (f": {q.error_description}" if q.error_description else ""))
    if q.code is None:
        raise SsoRefused("the callback carries no code")
    disc = await ctx.services.sso.discover(p.issuer)
    if q.iss is not None and q.iss != disc.issuer:
        raise SsoRefused(f"the answer's issuer {q.iss!r} is not {disc.issuer!r} (RFC 9207)")
    secret = p.client_secret
    if p.client_secret_name is not None:
        try:
            secret = ctx.services.outbound().secrets.value_for(p.client_secret_name, disc.token_endpoint)
        except SecretRefused as e:
            raise SsoUnavailable(str(e)) from None
        if secret is None:
            raise SsoUnavailable(f"the client secret {p.client_secret_name!r} is declared but not set")
    token = await ctx.services.sso.exchange(disc, q.code, login.code_verifier, login.redirect_uri, p.client_id, secret)
    idt = await ctx.services.sso.verify(disc, token, p.client_id, login.nonce)
    if not idt.email:
        raise SsoRefused("the ID token carries no email (the provider must grant the 'email' scope)")
    if not idt.email_verified:
        raise SsoRefused(f"the provider does not vouch for {idt.email} (email_verified is not true)")
    try:
        email = normal_email(idt.email)
    except ValueError as e:
        raise SsoRefused(str(e)) from None
    domain = email.rsplit("@", 1)[1]
    if p.allowed_domains and domain not in p.allowed_domains:
        raise SsoRefused(f"{domain} is not one of this organisation's sign-in domains")
    users = ctx.services.users
    user = await users.by_email(email)
    if user is None:
        user = await users.create(email, None)
        await users.set_role(user.id, p.org, p.default_role)
        await ctx.services.db.for_org(p.org).audit().append(actor="sso", action="user_created_sso", target=user.id,
                                                             after={"email": email, "role": p.default_role})
        return user.id
    if user.disabled_at is not None:
        raise SsoRefused("the account is disabled")
    if await users.role(user.id, p.org) is None:
        # another organisation's provider must not vouch its way into an account it does not own
        raise SsoRefused(f"{email} has an account that is not a member of this organisation; an admin of it "
                         "can invite the account (POST /api/v1/invitations)")
    return user.id
