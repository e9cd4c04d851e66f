"""Sign-in: email + password -> a short-lived JWT and a rotating refresh token; every
forged, stale or replayed credential refused."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from voxd.api.app import SERVICES_KEY
from voxd.api.tokens import AUDIENCE, ISSUER, TokenIssuer
from voxd.store.users import MAX_FAILED_LOGINS

PASSWORD = "correct horse battery"


async def _user(api, email="ann@example.com", role="owner", org="default", password=PASSWORD):
    if await api.db.orgs().get(org) is None:
        await api.db.orgs().create(org)
    user = await api.db.users().create(email, password)
    await api.db.users().set_role(user.id, org, role)
    return user


async def _login(api, email="ann@example.com", password=PASSWORD, **kw):
    return await api.client.post("/api/v1/auth/login", json={"email": email, "password": password, **kw})


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _key(api) -> bytes:
    return api.app[SERVICES_KEY].tokens._key


def _claims(user_id: str, **over):
    now = int(time.time())
    return {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 60, "jti": "j", "sub": user_id,
            "org": "default", "scopes": ["admin"], "fam": "fam_x"} | over


async def test_login_gives_a_working_token_with_the_claims(api):
    user = await _user(api)
    resp = await _login(api)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["role"] == "owner" and body["scopes"] == ["admin"] and body["org"] == "default"
    claims = jwt.decode(body["access_token"], _key(api), algorithms=["HS256"], audience=AUDIENCE)
    assert {"iss", "aud", "exp", "iat", "jti", "sub", "org", "scopes"} <= set(claims)
    assert claims["sub"] == user.id and claims["exp"] - claims["iat"] == 900
    resp = await api.client.get("/api/v1/agents", headers=_bearer(body["access_token"]))
    assert resp.status == 200
    assert resp.headers.get("Cache-Control") is None


async def test_wrong_password_and_unknown_email_answer_alike(api):
    await _user(api)
    a = await _login(api, password="nope")
    b = await _login(api, email="nobody@example.com")
    assert a.status == b.status == 401
    assert (await a.json())["detail"] == (await b.json())["detail"]


async def test_lockout_after_repeated_failures(api):
    await _user(api)
    for _ in range(MAX_FAILED_LOGINS):
        assert (await _login(api, password="wrong")).status == 401
    resp = await _login(api)  # the right password, but locked
    assert resp.status == 401 and "locked" in (await resp.json())["detail"]


@pytest.mark.parametrize("forge", ["expired", "audience", "issuer", "signature", "alg_none", "no_jti"])
async def test_forged_or_stale_tokens_are_refused(api, forge):
    user = await _user(api)
    login = await (await _login(api)).json()
    fam = jwt.decode(login["access_token"], _key(api), algorithms=["HS256"], audience=AUDIENCE)["fam"]
    key = _key(api)
    claims = _claims(user.id, fam=fam)
    if forge == "expired":
        token = jwt.encode(claims | {"iat": int(time.time()) - 1000, "exp": int(time.time()) - 100}, key, "HS256")
    elif forge == "audience":
        token = jwt.encode(claims | {"aud": "someone-else"}, key, "HS256")
    elif forge == "issuer":
        token = jwt.encode(claims | {"iss": "evil"}, key, "HS256")
    elif forge == "signature":
        token = jwt.encode(claims, b"k" * 32, "HS256")
    elif forge == "no_jti":
        token = jwt.encode({k: v for k, v in claims.items() if k != "jti"}, key, "HS256")
    else:
        def b64(d: dict) -> str:
            return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")
        token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."
    resp = await api.client.get("/api/v1/agents", headers=_bearer(token))
    assert resp.status == 401, forge
    assert (await resp.json())["type"] == "urn:voxd:problem:unauthenticated"
    # the same claims, properly signed, pass: the refusal was for the forgery alone
    good = jwt.encode(claims, key, "HS256")
    assert (await api.client.get("/api/v1/agents", headers=_bearer(good))).status == 200


async def test_refresh_rotates_and_a_reused_token_revokes_the_family(api):
    await _user(api)
    first = await (await _login(api)).json()
    resp = await api.client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert resp.status == 200
    second = await resp.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (await api.client.get("/api/v1/agents", headers=_bearer(second["access_token"]))).status == 200
    # the rotated token again: reuse -> refused, and the whole family with it
    resp = await api.client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert resp.status == 401 and "reused" in (await resp.json())["detail"]
    resp = await api.client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert resp.status == 401 and "revoked" in (await resp.json())["detail"]
    assert (await api.client.get("/api/v1/agents", headers=_bearer(second["access_token"]))).status == 401


async def test_logout_ends_the_session(api):
    await _user(api)
    pair = await (await _login(api)).json()
    resp = await api.client.post("/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]})
    assert resp.status == 204
    assert (await api.client.get("/api/v1/agents", headers=_bearer(pair["access_token"]))).status == 401
    resp = await api.client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert resp.status == 401


@pytest.mark.parametrize(("role", "read", "write", "keys"), [
    ("owner", 200, 201, 200), ("admin", 200, 201, 200), ("developer", 200, 201, 403), ("viewer", 200, 403, 403)])
async def test_roles_map_onto_scopes(api, role, read, write, keys):
    await _user(api, role=role)
    h = _bearer((await (await _login(api)).json())["access_token"])
    assert (await api.client.get("/api/v1/functions", headers=h)).status == read
    fn = {"name": "lookup", "description": "d", "parameters": {"type": "object", "properties": {}},
          "http": {"url": "https://example.com/x"}}
    assert (await api.client.post("/api/v1/functions", json=fn, headers=h)).status == write
    assert (await api.client.get("/api/v1/api-keys", headers=h)).status == keys
    audit = (await api.client.get("/api/v1/audit", headers=h)).status
    assert audit == (200 if role in ("owner", "admin") else 403)


async def test_a_user_signs_in_to_one_of_their_orgs(api):
    user = await _user(api, org="acme")
    await api.db.users().set_role(user.id, "default", "viewer")
    body = await (await _login(api, org="acme")).json()
    assert body["org"] == "acme" and body["role"] == "owner"
    assert (await _login(api, org="elsewhere")).status == 401


async def test_the_signing_key_lives_in_the_state_dir(tmp_path):
    a = TokenIssuer.load(tmp_path)
    b = TokenIssuer.load(tmp_path)
    token, _ = a.issue("usr_1", "default", ("admin",), "fam")
    assert b.verify(token).user_id == "usr_1"
    assert (tmp_path / "jwt-hs256.key").stat().st_mode & 0o777 == 0o600


async def test_invitation_and_reset_tokens_are_single_use(api):
    users = api.db.users()
    raw = await users.issue_token("invite", "default", "bob@example.com", role="viewer", created_by="t")
    assert raw not in json.dumps([dict(r) for r in await api.db.fetchall("SELECT * FROM user_tokens")])
    assert await users.consume_token("reset", raw) is None  # another kind
    row = await users.consume_token("invite", raw)
    assert row is not None and row["role"] == "viewer" and row["email"] == "bob@example.com"
    assert await users.consume_token("invite", raw) is None  # used
    old = await users.issue_token("reset", "default", "bob@example.com", role=None, created_by="t", ttl_s=-1)
    assert await users.consume_token("reset", old) is None  # expired


async def test_invitation_flow(api):
    await _user(api, email="own@example.com", role="admin")
    h = _bearer((await (await _login(api, email="own@example.com")).json())["access_token"])
    resp = await api.client.post("/api/v1/invitations", json={"email": "Bob@Example.com", "role": "owner"}, headers=h)
    assert resp.status == 403  # an admin cannot make an owner (admin holds every scope but 'admin')
    resp = await api.client.post("/api/v1/invitations", json={"email": "Bob@Example.com", "role": "developer"},
                                 headers=h)
    assert resp.status == 201
    token = (await resp.json())["token"]
    resp = await api.client.post("/api/v1/auth/accept-invitation", json={"token": token, "password": "bobs password"})
    assert resp.status == 201 and (await resp.json())["role"] == "developer"
    again = await api.client.post("/api/v1/auth/accept-invitation", json={"token": token, "password": "other one!"})
    assert again.status == 401  # single use
    body = await (await _login(api, email="bob@example.com", password="bobs password")).json()
    assert body["role"] == "developer"


async def test_password_reset_flow_lifts_a_lockout(api):
    await _user(api, email="own@example.com", role="owner")
    await _user(api)
    h = _bearer((await (await _login(api, email="own@example.com")).json())["access_token"])
    for _ in range(MAX_FAILED_LOGINS):
        await _login(api, password="wrong")
    resp = await api.client.post("/api/v1/password-resets", json={"email": "nobody@example.com"}, headers=h)
    assert resp.status == 404
    resp = await api.client.post("/api/v1/password-resets", json={"email": "ann@example.com"}, headers=h)
    assert resp.status == 201
    token = (await resp.json())["token"]
    resp = await api.client.post("/api/v1/auth/reset-password", json={"token": token, "password": "a new password"})
    assert resp.status == 204
    assert (await _login(api, password="a new password")).status == 200
    assert (await _login(api)).status == 401  # the old one is gone
    resp = await api.client.post("/api/v1/auth/reset-password", json={"token": token, "password": "third password"})
    assert resp.status == 401
