from __future__ import annotations

from voxd.api.app import SPECS_KEY
from voxd.api.problems import PROBLEM_TYPES


async def test_document_matches_route_table(api):
    resp = await api.client.get("/api/docs.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"] == "3.1.0"
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    ops = {(m.upper(), p): op for p, item in doc["paths"].items() for m, op in item.items()}
    documented = [s for s in api.app[SPECS_KEY] if s.documented]
    assert set(ops) == {(s.method, s.path) for s in documented}
    for spec in documented:
        op = ops[(spec.method, spec.path)]
        assert op.get("x-required-scope") == spec.scope
        if spec.scope:
            assert op["security"] == [{"bearerAuth": []}, {"cookieAuth": []}]
            assert spec.scope in op["description"]
            assert {"401", "403", "429"} <= set(op["responses"])
            problem = op["responses"]["403"]["content"]["application/problem+json"]
            assert problem["schema"] == {"$ref": "#/components/schemas/Problem"}
    for slug in PROBLEM_TYPES:
        assert f"`{slug}`" in doc["info"]["description"]
    create = ops[("POST", "/api/v1/api-keys")]
    body = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][body.rsplit("/", 1)[1]]
    assert schema["additionalProperties"] is False
    assert "admin" in schema["properties"]["scopes"]["items"]["enum"]
    params = {p["name"] for p in ops[("GET", "/api/v1/calls")]["parameters"]}
    assert params == {"agent", "status", "since", "until", "limit", "cursor", "outcome", "sentiment_lt", "sentiment_gt",
                      "mos_lt"}


async def test_swagger_ui_is_served_locally(api):
    resp = await api.client.get("/api/docs")
    html = await resp.text()
    assert resp.status == 200 and "swagger-ui-bundle.js" in html
    assert "http://" not in html and "https://" not in html  # no CDN
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js",
                  "voxd-init.js"):
        resp = await api.client.get(f"/api/docs/static/{asset}")
        assert resp.status == 200, asset
        assert len(await resp.read()) > 50
    bundle = await (await api.client.get("/api/docs/static/swagger-ui-bundle.js")).text()
    assert "isOAS31" in bundle  # Swagger UI 5: renders OpenAPI 3.1 (4.x refuses it)
    init = await (await api.client.get("/api/docs/static/voxd-init.js")).text()
    assert "/api/docs.json" in init
    assert (await api.client.get("/api/docs/static/..%2Fapp.py")).status == 404
    assert (await api.client.get("/api/docs/static/index.j2")).status == 404


async def test_healthz_is_public_and_not_duplicated(api):
    resp = await api.client.get("/healthz")
    assert resp.status == 200 and await resp.json() == {"status": "ok"}


async def test_daemon_healthz_is_kept(tmp_path):
    from aiohttp import web

    from voxd.api.app import setup_api
    from voxd.api.deps import ApiDeps
    from voxd.api.fakes import MemoryAgentSource, MemoryCallSource, MemoryFunctionSource
    from voxd.store.db import Database

    async def daemon_health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "calls": 0})

    app = web.Application()
    app.router.add_get("/healthz", daemon_health)
    db = await Database.open(tmp_path / "x.db")
    try:
        setup_api(app, ApiDeps(db, MemoryAgentSource(), MemoryCallSource(),
                               MemoryFunctionSource()))
        handlers = [r.handler for r in app.router.routes()
                    if r.resource is not None and r.resource.canonical == "/healthz"]
        assert daemon_health in handlers and len({id(h) for h in handlers}) == 1
    finally:
        await db.close()


async def test_extra_route_tables_are_served_scoped_and_documented(tmp_path):
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer
    from pydantic import BaseModel

    from voxd.api.app import setup_api
    from voxd.api.deps import ApiDeps
    from voxd.api.fakes import MemoryAgentSource, MemoryCallSource, MemoryFunctionSource
    from voxd.api.keys_cli import create_key
    from voxd.api.routing import Ctx, Reply, RouteTable
    from voxd.store.db import Database

    class Hooks(BaseModel):
        webhooks: list[str]

    table = RouteTable()

    @table.route("GET", "/api/v1/test-extras", scope="webhooks:read", summary="List test extras",
                 tag="webhooks", response=Hooks)
    async def list_test_extras(ctx: Ctx) -> Reply:
        return Reply(Hooks(webhooks=["x_1"]))

    db = await Database.open(tmp_path / "x.db")
    app = web.Application()
    setup_api(app, ApiDeps(db, MemoryAgentSource(), MemoryCallSource(), MemoryFunctionSource()),
              extra_routes=[table])
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        reader = await create_key(db, "r", ["webhooks:read"])
        other = await create_key(db, "o", ["calls:read"])
        ok = await client.get("/api/v1/test-extras", headers={"Authorization": f"Bearer {reader}"})
        assert ok.status == 200 and await ok.json() == {"webhooks": ["x_1"]}
        no = await client.get("/api/v1/test-extras", headers={"Authorization": f"Bearer {other}"})
        assert no.status == 403
        doc = await (await client.get("/api/docs.json")).json()
        assert doc["paths"]["/api/v1/test-extras"]["get"]["x-required-scope"] == "webhooks:read"
    finally:
        await client.close()
        await db.close()
