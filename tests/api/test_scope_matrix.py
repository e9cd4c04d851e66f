"""Every route under /api/v1 declares a scope, rejects no key (401) and a key without that
scope (403). The routes come from the app's router, not from the route table."""

from __future__ import annotations

import re

from voxd.api.auth import SIGNED_IN
from voxd.api.models import SCOPES
from voxd.api.routing import ROUTE_SPEC_ATTR

PUBLIC_PATHS = {"/healthz", "/api/docs.json", "/api/docs", "/api/docs/static/{file}"}
# public, but taking credentials in the body (tests/api/test_signin.py)
SIGNIN_PATHS = {"/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/auth/logout",
                "/api/v1/auth/accept-invitation", "/api/v1/auth/reset-password",
                # browser sessions take their cookies (tests/api/test_session_cookies.py), single
                # sign-on its provider's answer (tests/api/test_oidc.py)
                "/api/v1/auth/session", "/api/v1/auth/session/refresh",
                "/api/v1/auth/oidc/{org}/start", "/api/v1/auth/oidc/{org}/callback"}


def _routes(app):
    out = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        spec = getattr(route.handler, ROUTE_SPEC_ATTR, None)
        path = info.get("path") or info.get("formatter")
        out.append((route.method, spec.router_path if spec else path, spec))
    return out


SAMPLES = {"file": "swagger-ui.css", "call_id": "call_x1", "key_id": "key_" + "0" * 16,
           "conversation_id": "conv_x1"}


def _concrete(path: str) -> str:
    """A URL the router sends to this route: each {param} filled with a value its regex takes."""

    def fill(m: re.Match) -> str:
        value = SAMPLES.get(m[1], "x1")
        assert re.fullmatch(m[2], value), f"sample for {m[1]} does not match {m[2]}"
        return value

    return re.sub(r"{(\w+):((?:[^{}]|{[^{}]*})+)}", fill, path)


def test_every_route_declares_a_scope(api):
    routes = _routes(api.app)
    assert len(routes) >= 25
    for method, path, spec in routes:
        assert spec is not None, f"{method} {path} was not added through a RouteTable"
        if spec.path in PUBLIC_PATHS | SIGNIN_PATHS:
            assert spec.scope is None
        else:
            assert spec.path.startswith("/api/v1/"), path
            assert spec.scope in (*SCOPES, SIGNED_IN) and spec.scope != "admin", f"{method} {path}"


async def test_no_key_401_wrong_scope_403(api):
    routes = [(m, p, s) for m, p, s in _routes(api.app) if s is not None and s.scope]
    for scope in {s.scope for _, _, s in routes}:
        # a person's own account: not even an admin key holds it (tests/api/test_second_factor.py)
        others = [x for x in SCOPES if x not in (scope, "admin")] if scope != SIGNED_IN else ["admin"]
        api.keys[scope] = await api.key(*others, name=f"all-but-{scope}")
    seen = set()
    for method, path, spec in routes:
        url = _concrete(path)
        resp = await api.client.request(method, url, json={})
        assert resp.status == 401, f"{method} {path}: {resp.status}"
        assert resp.content_type == "application/problem+json"
        body = await resp.json()
        assert body["type"] == "urn:voxd:problem:unauthenticated"
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")

        resp = await api.client.request(method, url, json={},
                                        headers=api.auth(api.keys[spec.scope]))
        assert resp.status == 403, f"{method} {path}: {resp.status}"
        body = await resp.json()
        assert body["type"] == "urn:voxd:problem:insufficient-scope"
        assert body["required_scope"] == spec.scope
        assert spec.scope in body["detail"]
        seen.add((method, path))
    assert len(seen) == len(routes)


async def test_public_routes_need_no_key(api):
    for method, path, spec in _routes(api.app):
        if spec.path in PUBLIC_PATHS:
            resp = await api.client.request(method, _concrete(path))
            assert resp.status == 200, path


async def test_the_scope_itself_is_enough(api):
    # not a 401/403 with exactly the declared scope: the check is per scope, not admin-only
    routes = [(m, p, s) for m, p, s in _routes(api.app) if s is not None and s.scope]
    keys = {}
    for method, path, spec in routes:
        if spec.scope == SIGNED_IN:
            continue  # no key holds it; a signed-in user does (tests/api/test_second_factor.py)
        if spec.scope not in keys:
            keys[spec.scope] = await api.key(spec.scope, name=spec.scope)
        resp = await api.client.request(method, _concrete(path), json={},
                                        headers=api.auth(keys[spec.scope]))
        assert resp.status not in (401, 403), f"{method} {path}: {resp.status}"


async def test_key_management_stays_within_the_callers_reach(api):
    """Finding 7: a keys:admin key could change, revive and revoke keys wider than itself
    and raise its own limits. Every action on a key needs the target's scopes to be a
    subset of the caller's; limits never go beyond the caller's own."""
    import time

    from voxd.store.keys import ApiKeyRepository

    from .conftest import PEPPER

    repo = ApiKeyRepository(api.db, pepper=PEPPER)
    manager_raw, manager = await repo.create("mgr", ["keys:admin", "calls:read"], created_by="t",
                                             rate_limit_per_minute=100, quota_per_day=1000)
    h = api.auth(manager_raw)
    _, admin = await repo.create("root", ["admin"], created_by="t")
    _, expired_admin = await repo.create("old-root", ["admin"], created_by="t", expires_at=time.time() - 60)
    _, writer = await repo.create("writer", ["calls:write"], created_by="t")
    _, reader = await repo.create("reader", ["calls:read"], created_by="t")
    base = "/api/v1/api-keys/"
    # out of reach: every action refused, nothing changed
    for target in (admin, expired_admin, writer):
        for method, body in (("PATCH", {"expires_at": None}), ("PATCH", {"name": "mine"}),
                             ("PATCH", {"scopes": ["calls:read"]}), ("DELETE", None)):
            resp = await api.client.request(method, base + target.id, headers=h, json=body)
            problem = await resp.json()
            assert resp.status == 403 and problem["type"] == "urn:voxd:problem:insufficient-scope", (target.name, method, body)
        after = await repo.get(target.id)
        assert after == target
    # within reach: allowed
    assert (await api.client.patch(base + reader.id, headers=h, json={"name": "reader2"})).status == 200
    # its own limits are not its to raise (nor to lift); lowering is fine
    for body in ({"rate_limit_per_minute": 1_000_000}, {"rate_limit_per_minute": None}, {"quota_per_day": None},
                 {"quota_per_day": 1001}):
        resp = await api.client.patch(base + manager.id, headers=h, json=body)
        assert resp.status == 422, body
    assert (await api.client.patch(base + manager.id, headers=h, json={"rate_limit_per_minute": 50})).status == 200
    assert (await repo.get(manager.id)).rate_limit_per_minute == 50
    # nor can it mint or grant a key beyond them: a new key inherits the caller's limits
    resp = await api.client.post("/api/v1/api-keys", headers=h, json={"name": "n", "scopes": ["calls:read"],
                                                                      "rate_limit_per_minute": 1_000_000})
    assert resp.status == 422
    resp = await api.client.post("/api/v1/api-keys", headers=h, json={"name": "n", "scopes": ["calls:read"]})
    created = await resp.json()
    assert resp.status == 201 and created["rate_limit_per_minute"] == 50 and created["quota_per_day"] == 1000
    resp = await api.client.patch(base + reader.id, headers=h, json={"quota_per_day": None})
    assert resp.status == 422  # giving another key no quota is beyond the caller's own
    # an admin key reaches everything
    root = await api.admin()
    assert (await api.client.patch(base + expired_admin.id, headers=root,
                                   json={"expires_at": time.time() + 60})).status == 200
    assert (await api.client.delete(base + manager.id, headers=root)).status == 200
