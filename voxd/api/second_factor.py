"""``/api/v1/auth/totp*``: a signed-in person sets up, confirms and removes their own second
factor (RFC 6238 TOTP, any authenticator app). Each step asks for the password again, so a
stolen access token alone can neither add a factor (locking the owner out) nor remove one.
An administrator who lost their phone is helped from the host: ``voxd users reset-totp``.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from voxd.api.auth import SIGNED_IN, client_ip
from voxd.api.models import Request
from voxd.api.problems import ApiProblem
from voxd.api.routing import Ctx, Reply, RouteTable

routes = RouteTable()
TAG = "auth"
BASE = "/api/v1/auth/totp"
CODE = r"^[0-9]{6}$"


class Reauth(Request):
    password: str = Field(min_length=1, max_length=1024, description="The account's password, again.")


class Confirm(Request):
    code: str = Field(pattern=CODE, description="The app's current code for the new secret.")


class Disable(Reauth):
    code: str = Field(pattern=CODE, description="The app's current code.")


class Enrolment(BaseModel):
    otpauth_uri: str = Field(description="Show it as a QR code once; it holds the secret. Confirm with a code "
                             "at /api/v1/auth/totp/confirm before it counts.")
    secret: str = Field(description="The same secret in base32, for typing into an app by hand.")


class TotpState(BaseModel):
    enabled: bool


async def _reauth(ctx: Ctx, password: str) -> tuple[str, str]:
    """(user id, email) when ``password`` is the signed-in user's, else 401 (counted)."""
    assert ctx.key is not None
    user = await ctx.services.users.get(ctx.key.id)
    if user is None:
        raise ApiProblem("unauthenticated", "the user no longer exists")
    checked, why = await ctx.services.users.check_password(user.email, password)
    if checked is None or why:
        await ctx.services.authority.failed(client_ip(ctx.request, ctx.services.settings.trust_forwarded_for))
        raise ApiProblem("unauthenticated", "the account is locked; try again later" if why == "locked"
                         else "wrong password")
    return user.id, user.email


async def _audit(ctx: Ctx, action: str, user_id: str) -> None:
    ip = client_ip(ctx.request, ctx.services.settings.trust_forwarded_for)
    await ctx.services.audit.append(actor=user_id, ip=ip, action=action, target=user_id)


@routes.route("GET", BASE, scope=SIGNED_IN, summary="Whether my account has a second factor", tag=TAG,
              response=TotpState)
async def totp_state(ctx: Ctx) -> Reply:
    assert ctx.key is not None
    return Reply(TotpState(enabled=await ctx.services.totp.enabled(ctx.key.id)))


@routes.route("POST", BASE, scope=SIGNED_IN, summary="Start setting up a second factor (TOTP)", tag=TAG,
              limit_class="write", body=Reauth, response=Enrolment, status=201, problems=("conflict",),
              self_audited=True, description="A new secret, shown once. It counts after confirmation; an "
              "unconfirmed one is replaced by the next call.")
async def totp_enroll(ctx: Ctx) -> Reply:
    user_id, email = await _reauth(ctx, ctx.body.password)
    try:
        uri = await ctx.services.totp.enroll(user_id, email)
    except ValueError as e:
        raise ApiProblem("conflict", str(e)) from None
    await _audit(ctx, "totp_enroll", user_id)
    secret = uri.split("secret=", 1)[1].split("&", 1)[0]
    return Reply(Enrolment(otpauth_uri=uri, secret=secret), status=201, headers={"Cache-Control": "no-store"})


@routes.route("POST", BASE + "/confirm", scope=SIGNED_IN, summary="Switch the second factor on with a code",
              tag=TAG, limit_class="write", body=Confirm, response=TotpState, problems=("validation-error",),
              self_audited=True, description="From now on, sign-in needs `totp_code` as well.")
async def totp_confirm(ctx: Ctx) -> Reply:
    assert ctx.key is not None
    if not await ctx.services.totp.check(ctx.key.id, ctx.body.code, confirming=True):
        await ctx.services.users.note_failure(ctx.key.id)
        raise ApiProblem("validation-error", "the code does not match the pending secret (or nothing is pending)",
                         errors=[{"field": "code", "message": "wrong code"}])
    await _audit(ctx, "totp_confirm", ctx.key.id)
    return Reply(TotpState(enabled=True))


@routes.route("POST", BASE + "/disable", scope=SIGNED_IN, summary="Remove the second factor", tag=TAG,
              limit_class="write", body=Disable, response=TotpState, problems=("validation-error",),
              self_audited=True, description="Needs the password and a current code.")
async def totp_disable(ctx: Ctx) -> Reply:
    user_id, _ = await _reauth(ctx, ctx.body.password)
    if not await ctx.services.totp.check(user_id, ctx.body.code):
        await ctx.services.users.note_failure(user_id)
        raise ApiProblem("validation-error", "wrong or already used code",
                         errors=[{"field": "code", "message": "wrong code"}])
    await ctx.services.totp.disable(user_id)
    await ctx.services.users.note_success(user_id)
    await _audit(ctx, "totp_disable", user_id)
    return Reply(TotpState(enabled=False))
