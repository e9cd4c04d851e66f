"""Every route under /api/v1 declares a scope, rejects no key (401) and a key without that
scope (403). The routes come from the app's router, not from the route table."""

from __future__ import annotations

import re

from voxd.api.models import SCOPES
from voxd.api.routing import ROUTE_SPEC_ATTR

PUBLIC_PATHS = {"/healthz", "/api/docs.json", "/api/docs", "/api/docs/static/{file}"}


def _routes(app):
    out = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        spec = getattr(route.handler, ROUTE_SPEC_ATTR, None)
        path = info.get("path") or info.get("formatter")
        out.append((route.method, spec.router_path if spec else path, spec))
    return out


SAMPLES = {"file": "swagger-ui.css", "call_id": "call_x1", "key_id": "key_" + "0" * 16}


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
        if spec.path in PUBLIC_PATHS:
            assert spec.scope is None
        else:
            assert spec.path.startswith("/api/v1/"), path
            assert spec.scope in SCOPES and spec.scope != "admin", f"{method} {path}"


async def test_no_key_401_wrong_scope_403(api):
    routes = [(m, p, s) for m, p, s in _routes(api.app) if s is not None and s.scope]
    for scope in {s.scope for _, _, s in routes}:
        others = [x for x in SCOPES if x not in (scope, "admin")]
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
        if spec.scope not in keys:
            keys[spec.scope] = await api.key(spec.scope, name=spec.scope)
        resp = await api.client.request(method, _concrete(path), json={},
                                        headers=api.auth(keys[spec.scope]))
        assert resp.status not in (401, 403), f"{method} {path}: {resp.status}"
