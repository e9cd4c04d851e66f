"""A second factor (RFC 6238 TOTP): set up with the password and a confirming code, then
needed at every sign-in; codes used once, guessing counts towards the lockout, an API key
can never touch a person's factor, and the secret is sealed at rest."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlparse

import pyotp

from tests.api.test_signin import PASSWORD, _bearer, _login, _user
from voxd.store.second_factor import matching_step
from voxd.store.users import MAX_FAILED_LOGINS

# RFC 6238 appendix B: the SHA-1 secret "12345678901234567890", 8-digit codes
RFC_SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
RFC_VECTORS = [(59, "94287082"), (1111111109, "07081804"), (1111111111, "14050471"),
               (1234567890, "89005924"), (2000000000, "69279037"), (20000000000, "65353130")]


def test_codes_match_the_rfc_6238_vectors():
    totp = pyotp.TOTP(RFC_SECRET, digits=8, interval=30)
    for t, code in RFC_VECTORS:
        assert totp.at(t) == code
    six = pyotp.TOTP(RFC_SECRET, interval=30)
    assert matching_step(RFC_SECRET, six.at(59), 59) == 1
    assert matching_step(RFC_SECRET, six.at(59 - 30), 59) == 0  # one step of drift is fine
    assert matching_step(RFC_SECRET, six.at(59 + 60), 59) is None  # two is not
    assert matching_step(RFC_SECRET, "12345", 59) is None
    assert matching_step(RFC_SECRET, "abcdef", 59) is None


async def _token(api, **kw) -> str:
    resp = await _login(api, **kw)
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["access_token"])


async def _enrolled(api) -> tuple[str, pyotp.TOTP]:
    """Ann, signed in, with a confirmed second factor; (her access token, her app)."""
    await _user(api)
    token = await _token(api)
    resp = await api.client.post("/api/v1/auth/totp", json={"password": PASSWORD}, headers=_bearer(token))
    assert resp.status == 201, await resp.text()
    assert resp.headers["Cache-Control"] == "no-store"
    body = await resp.json()
    uri = urlparse(body["otpauth_uri"])
    assert uri.scheme == "otpauth" and uri.netloc == "totp"
    assert parse_qs(uri.query)["secret"] == [body["secret"]] and parse_qs(uri.query)["issuer"] == ["voxd"]
    app = pyotp.TOTP(body["secret"])
    resp = await api.client.post("/api/v1/auth/totp/confirm", json={"code": app.now()}, headers=_bearer(token))
    assert resp.status == 200 and (await resp.json())["enabled"] is True
    return token, app


async def _next_code(app: pyotp.TOTP) -> str:
    """A code of a later step than any used so far (each step's code works once)."""
    return app.at(time.time() + 30)


async def test_enrolment_then_sign_in_needs_the_code(api):
    token, app = await _enrolled(api)
    resp = await api.client.get("/api/v1/auth/totp", headers=_bearer(token))
    assert (await resp.json()) == {"enabled": True}

    resp = await _login(api)
    assert resp.status == 401
    body = await resp.json()
    assert body["type"] == "urn:voxd:problem:second-factor-required"

    resp = await _login(api, totp_code=await _next_code(app))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["access_token"]


async def test_a_code_works_once(api):
    _, app = await _enrolled(api)
    code = await _next_code(app)
    assert (await _login(api, totp_code=code)).status == 200
    resp = await _login(api, totp_code=code)
    assert resp.status == 401
    assert "already used" in (await resp.json())["detail"]


async def test_an_unconfirmed_secret_does_not_count(api):
    await _user(api)
    token = await _token(api)
    resp = await api.client.post("/api/v1/auth/totp", json={"password": PASSWORD}, headers=_bearer(token))
    assert resp.status == 201
    resp = await api.client.post("/api/v1/auth/totp/confirm", json={"code": "000000"}, headers=_bearer(token))
    assert resp.status == 422
    assert (await _login(api)).status == 200  # still the password alone


async def test_enrolment_needs_the_password(api):
    await _user(api)
    token = await _token(api)
    resp = await api.client.post("/api/v1/auth/totp", json={"password": "not it"}, headers=_bearer(token))
    assert resp.status == 401
    resp = await api.client.get("/api/v1/auth/totp", headers=_bearer(token))
    assert (await resp.json()) == {"enabled": False}


async def test_guessing_codes_locks_the_account(api):
    # the password is right every time: it must not reset the count the wrong codes build
    _, app = await _enrolled(api)
    good = await _next_code(app)
    wrong = "000000" if good != "000000" else "111111"
    for _ in range(MAX_FAILED_LOGINS):
        resp = await _login(api, totp_code=wrong)
        assert resp.status == 401
    resp = await _login(api, totp_code=good)
    assert resp.status == 401
    assert "locked" in (await resp.json())["detail"]


async def test_an_api_key_cannot_touch_a_persons_factor(api):
    raw = await api.key("admin", name="root")
    for method, path, body in [("GET", "/api/v1/auth/totp", None),
                               ("POST", "/api/v1/auth/totp", {"password": PASSWORD}),
                               ("POST", "/api/v1/auth/totp/disable", {"password": PASSWORD, "code": "123456"})]:
        resp = await api.client.request(method, path, json=body, headers=api.auth(raw))
        assert resp.status == 403, path
        problem = await resp.json()
        assert problem["required_scope"] == "user" and "signed-in" in problem["detail"]


async def test_disable_needs_password_and_code_and_is_audited(api):
    token, app = await _enrolled(api)
    resp = await api.client.post("/api/v1/auth/totp/disable", json={"password": PASSWORD, "code": "000000"},
                                 headers=_bearer(token))
    assert resp.status in (401, 422)
    resp = await api.client.post("/api/v1/auth/totp/disable",
                                 json={"password": PASSWORD, "code": await _next_code(app)}, headers=_bearer(token))
    assert resp.status == 200 and (await resp.json())["enabled"] is False
    assert (await _login(api)).status == 200
    actions = [r["action"] for r in (await api.db.audit().export())]
    assert actions.count("totp_enroll") == 1 and "totp_confirm" in actions and "totp_disable" in actions


async def test_the_secret_is_sealed_at_rest(api):
    _, app = await _enrolled(api)
    row = await api.db.fetchone("SELECT secret FROM user_totp")
    assert row["secret"].startswith("sealed:v1:")
    assert app.secret not in row["secret"]
