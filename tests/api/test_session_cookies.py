"""Browser sessions: the sign-in tokens in HttpOnly cookies, the CSRF double submit on
state-changing requests, cookie refresh (rotation, reuse) and sign-out; requests with an
Authorization header are judged by it alone."""

from __future__ import annotations

from http.cookies import Morsel

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.api.conftest import GENEROUS
from voxd.api.app import setup_api
from voxd.api.deps import ApiDeps
from voxd.api.fakes import MemoryAgentSource, MemoryCallSource, MemoryFunctionSource
from voxd.store.db import Database

PASSWORD = "correct horse battery"
FUNCTION = {"name": "lookup", "description": "d", "parameters": {"type": "object", "properties": {}},
            "http": {"url": "https://example.com/lookup"}}


@pytest.fixture
async def client(tmp_path):
    db = await Database.open(tmp_path / "voxd.db")
    user = await db.users().create("ann@example.com", PASSWORD)
    await db.users().set_role(user.id, "default", "owner")
    app = web.Application()
    setup_api(app, ApiDeps(db=db, agents=MemoryAgentSource(), calls=MemoryCallSource(), functions=MemoryFunctionSource(),
                           settings=GENEROUS))
    # cookies are sent by hand: the test says exactly which a request carries
    c = TestClient(TestServer(app, host="127.0.0.1"), cookie_jar=aiohttp.DummyCookieJar())
    await c.start_server()
    yield c
    await c.close()
    await db.close()


def jar(resp: aiohttp.ClientResponse) -> dict[str, str]:
    return {name: m.value for name, m in resp.cookies.items()}


def cookie_header(cookies: dict[str, str], *names: str) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{n}={cookies[n]}" for n in names or cookies)}


async def sign_in(client: TestClient) -> aiohttp.ClientResponse:
    resp = await client.post("/api/v1/auth/session", json={"email": "ann@example.com", "password": PASSWORD})
    assert resp.status == 200, await resp.text()
    return resp


def browser(cookies: dict[str, str], csrf: str | None = None) -> dict[str, str]:
    """What a browser sends to /api: the access and CSRF cookies (the refresh cookie's path is narrower)."""
    h = cookie_header(cookies, "voxd_access", "voxd_csrf")
    if csrf is not None:
        h["X-CSRF-Token"] = csrf
    return h


async def test_signing_in_sets_three_cookies_with_their_attributes(client):
    resp = await sign_in(client)
    body = await resp.json()
    assert "access_token" not in body and "refresh_token" not in body
    access, refresh, csrf = (resp.cookies[n] for n in ("voxd_access", "voxd_refresh", "voxd_csrf"))
    for m in (access, refresh, csrf):
        assert m["secure"] and m["samesite"] == "Strict"
    assert access["httponly"] and refresh["httponly"] and not csrf["httponly"]
    assert (access["path"], refresh["path"], csrf["path"]) == ("/api", "/api/v1/auth/session", "/")
    assert int(access["max-age"]) == body["expires_in"] == 900
    assert body["csrf_token"] == csrf.value and body["role"] == "owner"
    assert resp.headers["Cache-Control"] == "no-store"
    raw = resp.headers.getall("Set-Cookie")
    assert any(h.startswith("voxd_access=") and "HttpOnly" in h and "Secure" in h and "SameSite=Strict" in h
               for h in raw)


async def test_the_access_cookie_authenticates_and_state_changes_need_the_csrf_header(client):
    cookies = jar(await sign_in(client))
    assert (await client.get("/api/v1/functions")).status == 401
    assert (await client.get("/api/v1/functions", headers=browser(cookies))).status == 200  # reads need no CSRF
    resp = await client.post("/api/v1/functions", json=FUNCTION, headers=browser(cookies))
    assert resp.status == 403
    assert (await resp.json())["type"] == "urn:voxd:problem:csrf-failed"
    resp = await client.post("/api/v1/functions", json=FUNCTION, headers=browser(cookies, "forged"))
    assert (await resp.json())["type"] == "urn:voxd:problem:csrf-failed"
    for method, url in (("PUT", "/api/v1/functions/lookup"), ("PATCH", "/api/v1/api-keys/key_" + "0" * 16),
                        ("DELETE", "/api/v1/functions/lookup")):
        resp = await client.request(method, url, json={}, headers=browser(cookies))
        assert resp.status == 403 and (await resp.json())["type"] == "urn:voxd:problem:csrf-failed", method
    assert (await client.get("/api/v1/functions/lookup", headers=browser(cookies))).status == 404  # nothing made
    resp = await client.post("/api/v1/functions", json=FUNCTION, headers=browser(cookies, cookies["voxd_csrf"]))
    assert resp.status == 201, await resp.text()
    resp = await client.delete("/api/v1/functions/lookup", headers=browser(cookies, cookies["voxd_csrf"]))
    assert resp.status in (200, 204)


async def test_a_csrf_pair_of_another_session_does_not_match(client):
    mine, theirs = jar(await sign_in(client)), jar(await sign_in(client))
    assert mine["voxd_csrf"] != theirs["voxd_csrf"]
    headers = {"Cookie": f"voxd_access={mine['voxd_access']}; voxd_csrf={theirs['voxd_csrf']}",
               "X-CSRF-Token": theirs["voxd_csrf"]}  # a planted cookie and header that agree
    resp = await client.post("/api/v1/functions", json=FUNCTION, headers=headers)
    assert resp.status == 403 and (await resp.json())["type"] == "urn:voxd:problem:csrf-failed"


async def test_an_authorization_header_is_judged_alone(client):
    cookies = jar(await sign_in(client))
    token = await (await client.post("/api/v1/auth/login", json={"email": "ann@example.com",
                                                                  "password": PASSWORD})).json()
    headers = {**browser(cookies), "Authorization": f"Bearer {token['access_token']}"}
    resp = await client.post("/api/v1/functions", json=FUNCTION, headers=headers)  # no CSRF header needed
    assert resp.status == 201, await resp.text()
    headers["Authorization"] = "Bearer vx_live_" + "x" * 38  # a bad header is not rescued by the cookie
    assert (await client.get("/api/v1/functions", headers=headers)).status == 401
    resp = await client.get("/api/v1/functions", headers={"Cookie": "voxd_access=vx_live_" + "x" * 38})
    assert resp.status == 401  # an API key is no session cookie


async def test_refresh_by_cookie_rotates_the_cookies(client):
    first = jar(await sign_in(client))
    url = "/api/v1/auth/session/refresh"
    resp = await client.post(url, headers=cookie_header(first, "voxd_refresh", "voxd_csrf"))
    assert resp.status == 403 and (await resp.json())["type"] == "urn:voxd:problem:csrf-failed"
    resp = await client.post(url, headers={**cookie_header(first, "voxd_refresh", "voxd_csrf"),
                                           "X-CSRF-Token": first["voxd_csrf"]})
    assert resp.status == 200, await resp.text()  # the refused attempt did not use the token up
    second = jar(resp)
    assert second["voxd_refresh"] != first["voxd_refresh"] and second["voxd_access"] != first["voxd_access"]
    assert second["voxd_csrf"] == first["voxd_csrf"] and resp.cookies["voxd_refresh"]["path"] == "/api/v1/auth/session"
    assert (await client.get("/api/v1/functions", headers=browser(second))).status == 200
    # the first refresh cookie again: reuse, the whole session is signed out
    resp = await client.post(url, headers={**cookie_header(first, "voxd_refresh", "voxd_csrf"),
                                           "X-CSRF-Token": first["voxd_csrf"]})
    assert resp.status == 401 and "reused" in (await resp.json())["detail"]
    assert (await client.get("/api/v1/functions", headers=browser(second))).status == 401
    assert (await client.post(url)).status == 401  # no cookie at all


async def test_signing_out_clears_the_cookies_and_ends_the_session(client):
    cookies = jar(await sign_in(client))
    everything = cookie_header(cookies)
    resp = await client.delete("/api/v1/auth/session", headers=everything)
    assert resp.status == 403  # a live session, no CSRF header
    assert (await client.get("/api/v1/functions", headers=browser(cookies))).status == 200
    resp = await client.delete("/api/v1/auth/session", headers={**everything, "X-CSRF-Token": cookies["voxd_csrf"]})
    assert resp.status == 204
    cleared: dict[str, Morsel[str]] = dict(resp.cookies)
    assert set(cleared) == {"voxd_access", "voxd_refresh", "voxd_csrf"}
    assert all(m.value == "" and m["max-age"] == "0" and m["secure"] for m in cleared.values())
    assert cleared["voxd_refresh"]["path"] == "/api/v1/auth/session"
    assert (await client.get("/api/v1/functions", headers=browser(cookies))).status == 401
    resp = await client.post("/api/v1/auth/session/refresh", headers={**cookie_header(cookies, "voxd_refresh", "voxd_csrf"),
                                                                       "X-CSRF-Token": cookies["voxd_csrf"]})
    assert resp.status == 401
    # signing out with only the access cookie (the refresh cookie gone) works as well
    other = jar(await sign_in(client))
    resp = await client.delete("/api/v1/auth/session", headers=browser(other, other["voxd_csrf"]))
    assert resp.status == 204
    assert (await client.get("/api/v1/functions", headers=browser(other))).status == 401
    assert (await client.delete("/api/v1/auth/session")).status == 204  # nothing to end: just cleared


async def test_a_wrong_password_sets_no_cookie(client):
    resp = await client.post("/api/v1/auth/session", json={"email": "ann@example.com", "password": "wrong"})
    assert resp.status == 401 and "Set-Cookie" not in resp.headers
