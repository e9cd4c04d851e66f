"""Single sign-on through an organisation's OpenID Connect provider: a real provider on
127.0.0.1 (tests/api/oidc_provider.py), reached through the egress policy (loopback is
opened for use ``sso`` only); discovery, PKCE, JWKS with a rotated key, and every refusal."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from tests.api.conftest import GENEROUS, PEPPER
from tests.api.oidc_provider import CLIENT_ID, CLIENT_SECRET, LocalProvider, ec_key, rsa_key
from voxd.api.app import SERVICES_KEY, setup_api
from voxd.api.deps import ApiDeps
from voxd.api.fakes import MemoryAgentSource, MemoryCallSource, MemoryFunctionSource
from voxd.core.egress import EgressPolicy
from voxd.core.secrets import DeclaredSecret, Outbound, SecretBook
from voxd.store.db import Database

ORG = "acme"
LOOPBACK_SSO = EgressPolicy.open_to("127.0.0.0/8", uses=["sso"])
FUNCTION = {"name": "lookup", "description": "d", "parameters": {"type": "object", "properties": {}},
            "http": {"url": "https://example.com/lookup"}}


@dataclass
class Env:
    client: TestClient
    db: Database
    provider: LocalProvider
    app: web.Application
    admin: dict[str, str]  # a users:admin key of acme

    async def configure(self, **over: Any) -> aiohttp.ClientResponse:
        body = {"issuer": self.provider.issuer, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                "default_role": "developer", **over}
        return await self.client.put("/api/v1/orgs/current/oidc", json=body, headers=self.admin)

    async def start(self, org: str = ORG) -> tuple[str, str]:
        """(the provider's redirect back to voxd, the browser-binding cookie)."""
        resp = await self.client.get(f"/api/v1/auth/oidc/{org}/start", allow_redirects=False)
        assert resp.status == 302, await resp.text()
        binding = resp.cookies["voxd_oidc"]
        assert binding["httponly"] and binding["secure"] and binding["samesite"] == "Lax"
        assert binding["path"] == f"/api/v1/auth/oidc/{org}/callback"
        async with aiohttp.ClientSession() as browser:  # the person at the provider, approving
            at_provider = await browser.get(resp.headers["Location"], allow_redirects=False)
            assert at_provider.status == 302, await at_provider.text()
            back = at_provider.headers["Location"]
        return back, binding.value

    async def callback(self, back: str, binding: str | None) -> aiohttp.ClientResponse:
        headers = {"Cookie": f"voxd_oidc={binding}"} if binding is not None else {}
        return await self.client.get(URL(back).path_qs, headers=headers, allow_redirects=False)

    async def sign_in(self) -> aiohttp.ClientResponse:
        back, binding = await self.start()
        return await self.callback(back, binding)


async def _env(tmp_path, outbound: Outbound | None) -> tuple[Env, Any]:
    provider = LocalProvider()
    await provider.start()
    db = await Database.open(tmp_path / "voxd.db")
    await db.orgs().create(ORG)
    app = web.Application()
    setup_api(app, ApiDeps(db=db, agents=MemoryAgentSource(), calls=MemoryCallSource(), functions=MemoryFunctionSource(),
                           settings=GENEROUS, outbound=(lambda: outbound) if outbound is not None else None))
    client = TestClient(TestServer(app, host="127.0.0.1"), cookie_jar=aiohttp.DummyCookieJar())
    await client.start_server()
    raw, _ = await db.for_org(ORG).api_keys(pepper=PEPPER).create("sso-admin", ["users:admin"], created_by="t")
    env = Env(client, db, provider, app, {"Authorization": f"Bearer {raw}"})

    async def close() -> None:
        await client.close()
        await db.close()
        await provider.stop()

    return env, close


@pytest.fixture
async def env(tmp_path):
    e, close = await _env(tmp_path, Outbound(LOOPBACK_SSO))
    assert (await e.configure()).status == 200
    yield e
    await close()


async def _problem(resp: aiohttp.ClientResponse, slug: str) -> str:
    body = await resp.json()
    assert body["type"] == f"urn:voxd:problem:{slug}", body
    return str(body["detail"])


async def test_first_sign_in_creates_the_person_with_the_default_role(env):
    resp = await env.sign_in()
    assert resp.status == 200, await resp.text()
    pair = await resp.json()
    assert pair["org"] == ORG and pair["role"] == "developer" and pair["refresh_token"].startswith("vx_refresh_")
    user = await env.db.users().by_email("sso.person@example.com")
    assert user is not None and not user.has_password
    assert await env.db.users().role(user.id, ORG) == "developer"
    # PKCE: the provider got a verifier that matches the challenge it was shown (it checks), and the secret
    sent = env.provider.token_requests[-1]
    assert sent["grant_type"] == "authorization_code" and 43 <= len(sent["code_verifier"]) <= 128
    assert "client_secret" not in sent  # client_secret_basic: in the Authorization header
    # the pair works like a password sign-in's, as a bearer token and as the session cookies
    agents = await env.client.get("/api/v1/agents", headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert agents.status == 200
    access, csrf = resp.cookies["voxd_access"], resp.cookies["voxd_csrf"]
    assert access["httponly"] and access["secure"] and access["samesite"] == "Strict"
    assert resp.cookies["voxd_oidc"]["max-age"] == "0"  # the binding is spent
    by_cookie = await env.client.post("/api/v1/functions", json=FUNCTION,
                                      headers={"Cookie": f"voxd_access={access.value}; voxd_csrf={csrf.value}",
                                               "X-CSRF-Token": csrf.value})
    assert by_cookie.status == 201, await by_cookie.text()
    rows, _ = await env.db.for_org(ORG).audit().list(action="login_sso")
    assert [r["actor"] for r in rows] == [user.id]
    # the second time, the same person is matched (no second account)
    again = await (await env.sign_in()).json()
    assert again["role"] == "developer" and len(await env.db.users().list(ORG)) == 1


async def test_an_existing_member_is_matched_by_verified_email(env):
    user = await env.db.users().create("Sso.Person@example.com", "a password of theirs")
    await env.db.users().set_role(user.id, ORG, "admin")
    pair = await (await env.sign_in()).json()
    assert pair["role"] == "admin"
    got = await env.db.users().by_email("sso.person@example.com")
    assert got is not None and got.id == user.id


async def test_a_rotated_signing_key_is_fetched_and_accepted(env):
    assert (await env.sign_in()).status == 200
    services = env.app[SERVICES_KEY]
    fetches = env.provider.jwks_hits
    assert fetches == 1
    assert (await env.sign_in()).status == 200
    assert env.provider.jwks_hits == 1  # cached
    env.provider.rotate(ec_key("key-2"))  # a new kid, and ES256 this time
    resp = await env.sign_in()
    assert resp.status == 200, await resp.text()
    assert env.provider.jwks_hits == 2 and services.sso.jwks_fetches == 2
    env.provider.rotate(rsa_key("key-3"))
    assert (await env.sign_in()).status == 200


async def test_an_unknown_kid_is_refused_after_one_refetch(env):
    assert (await env.sign_in()).status == 200
    env.provider.signer = rsa_key("never-published")
    resp = await env.sign_in()
    assert resp.status == 401
    assert "never-published" in await _problem(resp, "sso-refused")
    assert env.provider.jwks_hits == 2  # looked again once
    resp = await env.sign_in()  # the same unknown kid again soon: no more fetches for it
    assert resp.status == 401 and env.provider.jwks_hits == 2


@pytest.mark.parametrize(("change", "words"), [
    ({"email_verified": False}, "email_verified is not true"),
    ({"email_verified": "true"}, "email_verified is not true"),  # a string is not the boolean
    ({"nonce": "a-nonce-of-another-sign-in"}, "nonce"),
    ({"iss": "http://127.0.0.1:1/other-issuer"}, "issuer"),
    ({"aud": "another-client"}, "not for this client"),
    ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 4000}, "expired"),
    ({"email": None}, "carries no email"),
])
async def test_id_tokens_that_do_not_verify_are_refused(env, change, words):
    env.provider.override = change
    resp = await env.sign_in()
    assert resp.status == 401
    assert words in await _problem(resp, "sso-refused")
    assert await env.db.users().by_email("sso.person@example.com") is None


async def test_a_forged_signature_and_other_algorithms_are_refused(env):
    assert (await env.sign_in()).status == 200
    env.provider.signer = rsa_key(env.provider.published[0].kid)  # the published kid, another private key
    resp = await env.sign_in()
    assert "signature does not verify" in await _problem(resp, "sso-refused")
    env.provider.signer = env.provider.published[0]
    env.provider.sign_hs256 = True
    resp = await env.sign_in()
    assert "algorithm 'HS256' is not accepted" in await _problem(resp, "sso-refused")


async def test_wrong_replayed_or_foreign_state_is_refused(env):
    back, binding = await env.start()
    forged = str(URL(back).update_query(state="not-a-state-voxd-made"))
    resp = await env.callback(forged, binding)
    assert "unknown state" in await _problem(resp, "sso-refused")
    assert (await env.callback(back, None)).status == 401  # no binding cookie: another browser
    # that consumed it: the right browser now finds the state used
    resp = await env.callback(back, binding)
    assert "used already" in await _problem(resp, "sso-refused")
    back, binding = await env.start()
    assert (await env.callback(back, binding)).status == 200
    resp = await env.callback(back, binding)  # the same callback once more
    assert resp.status == 401 and "replayed" in await _problem(resp, "sso-refused")
    # a state of acme is no state of another organisation
    await env.db.orgs().create("other")
    back, binding = await env.start()
    other = URL(back).path_qs.replace(f"/oidc/{ORG}/", "/oidc/other/")
    resp = await env.client.get(other, headers={"Cookie": f"voxd_oidc={binding}"})
    assert resp.status == 404  # other has no provider: the same answer as no such organisation
    assert (await env.client.get("/api/v1/auth/oidc/nowhere/start", allow_redirects=False)).status == 404


async def test_the_provider_declining_and_domain_and_membership_rules(env):
    env.provider.deny = True
    resp = await env.sign_in()
    assert "access_denied" in await _problem(resp, "sso-refused")
    env.provider.deny = False
    assert (await env.configure(allowed_domains=["acme.example"])).status == 200
    resp = await env.sign_in()
    assert "not one of this organisation's sign-in domains" in await _problem(resp, "sso-refused")
    assert (await env.configure(allowed_domains=["example.com"])).status == 200
    # an account of another organisation is not taken over by this one's provider
    await env.db.orgs().create("beta")
    user = await env.db.users().create("sso.person@example.com", "theirs")
    await env.db.users().set_role(user.id, "beta", "owner")
    resp = await env.sign_in()
    assert "not a member of this organisation" in await _problem(resp, "sso-refused")
    assert await env.db.users().role(user.id, ORG) is None


async def test_the_config_api_seals_the_secret_and_is_audited(env):
    resp = await env.client.get("/api/v1/orgs/current/oidc", headers=env.admin)
    view = await resp.json()
    assert resp.status == 200 and view["has_client_secret"] and CLIENT_SECRET not in await resp.text()
    assert view["start_url"] == f"/api/v1/auth/oidc/{ORG}/start"
    row = await env.db.fetchone("SELECT client_secret FROM oidc_providers WHERE org = ?", (ORG,))
    assert row["client_secret"].startswith("sealed:v1:") and CLIENT_SECRET not in row["client_secret"]
    rows, _ = await env.db.for_org(ORG).audit().list(action="put_oidc")
    assert len(rows) == 1 and rows[0]["actor"].startswith("key_")
    # another organisation's admin sees its own (none), never acme's
    raw, _ = await env.db.api_keys(pepper=PEPPER).create("default-admin", ["users:admin"], created_by="t")
    assert (await env.client.get("/api/v1/orgs/current/oidc", headers={"Authorization": f"Bearer {raw}"})).status == 404
    # validation
    for over, field in (({"default_role": "owner"}, "default_role"), ({"allowed_domains": ["not a domain"]},
                        "allowed_domains"), ({"client_secret_name": "nope"}, "client_secret_name"),
                        ({"issuer": "http://login.example.com"}, "issuer")):
        resp = await env.configure(**over)
        assert resp.status == 422, over
        assert (await resp.json())["errors"][0]["field"].startswith(field), await resp.text()
    assert (await env.client.delete("/api/v1/orgs/current/oidc", headers=env.admin)).status == 204
    assert (await env.client.get(f"/api/v1/auth/oidc/{ORG}/start", allow_redirects=False)).status == 404
    assert (await env.client.delete("/api/v1/orgs/current/oidc", headers=env.admin)).status == 404


async def test_a_declared_secret_instead_of_a_stored_one(tmp_path, monkeypatch):
    monkeypatch.setenv("VOXD_TEST_IDP_SECRET", CLIENT_SECRET)
    book = SecretBook({"idp": DeclaredSecret("idp", ("127.0.0.1",), env="VOXD_TEST_IDP_SECRET"),
                       "elsewhere": DeclaredSecret("elsewhere", ("login.example.com",), env="VOXD_TEST_IDP_SECRET")})
    env, close = await _env(tmp_path, Outbound(LOOPBACK_SSO, book))
    try:
        assert (await env.configure(client_secret=None, client_secret_name="idp")).status == 200
        row = await env.db.fetchone("SELECT client_secret FROM oidc_providers WHERE org = ?", (ORG,))
        assert row["client_secret"] is None
        assert (await env.sign_in()).status == 200
        # a secret declared for other hosts is not sent to this token endpoint
        assert (await env.configure(client_secret=None, client_secret_name="elsewhere")).status == 200
        resp = await env.sign_in()
        assert resp.status == 502 and "may only be sent to" in await _problem(resp, "sso-unavailable")
    finally:
        await close()


async def test_loopback_providers_need_an_egress_rule(tmp_path):
    env, close = await _env(tmp_path, None)  # the default policy: public destinations only
    try:
        resp = await env.configure()
        assert resp.status == 422
        assert "egress.allow" in (await resp.json())["detail"]
    finally:
        await close()


async def test_an_unreachable_provider_is_a_clear_502(env):
    await env.provider.stop()
    resp = await env.client.get(f"/api/v1/auth/oidc/{ORG}/start", allow_redirects=False)
    assert resp.status == 502
    assert "cannot reach the provider's discovery document" in await _problem(resp, "sso-unavailable")
