"""``setup_api``: mounts the control API on the daemon's aiohttp Application."""

from __future__ import annotations

import importlib.util
import json
import mimetypes
from collections.abc import Iterable
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from voxd.api import (
    agents,
    calendar,
    calls,
    conversations,
    cookie_session,
    functions,
    invitations,
    keys,
    org_usage,
    recordings,
    second_factor,
    signin,
    sip,
    sip_trace,
    sso,
    webhooks,
)
from voxd.api.auth import credential_throttle
from voxd.api.deps import ApiDeps
from voxd.api.models import Health
from voxd.api.openapi import SWAGGER_HTML, SWAGGER_INIT, build_openapi
from voxd.api.pipeline import Pipeline
from voxd.api.problems import ApiProblem
from voxd.api.routing import PUBLIC, Ctx, Reply, RouteSpec, RouteTable
from voxd.api.services import Services

SERVICES_KEY = web.AppKey("voxd_api_services", Services)
SPECS_KEY = web.AppKey("voxd_api_specs", list)
STATIC_PREFIX = "/api/docs/static"
SWAGGER_FILES = ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js")

public = RouteTable(params={"file": r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"})


def _swagger_dir() -> Path:
    """Swagger UI 5 (OpenAPI 3.1 capable) as bundled by the swagger-ui-py wheel; found
    without importing the package, whose own code targets other frameworks."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or spec.origin is None:
        raise ApiProblem("not-found", "Swagger UI assets are not installed (swagger-ui-py)")
    return Path(spec.origin).parent / "static"


@public.route("GET", "/healthz", scope=PUBLIC, summary="Liveness", tag="health",
              response=Health)
async def healthz(ctx: Ctx) -> Reply:
    return Reply(Health())


@public.route("GET", "/api/docs.json", scope=PUBLIC, summary="This OpenAPI document",
              tag="docs", documented=False)
async def openapi_document(ctx: Ctx) -> Reply:
    doc: bytes = ctx.request.app[DOC_KEY]
    return Reply(raw=doc)


@public.route("GET", "/api/docs", scope=PUBLIC, summary="Swagger UI", tag="docs",
              documented=False)
async def swagger_page(ctx: Ctx) -> Reply:
    return Reply(raw=SWAGGER_HTML.format(static=STATIC_PREFIX).encode(),
                 content_type="text/html")


@public.route("GET", STATIC_PREFIX + "/{file}", scope=PUBLIC, summary="Swagger UI assets",
              tag="docs", documented=False)
async def swagger_asset(ctx: Ctx) -> Reply:
    name = ctx.path["file"]
    if name == "voxd-init.js":
        return Reply(raw=SWAGGER_INIT.encode(), content_type="text/javascript")
    if name not in SWAGGER_FILES:
        raise ApiProblem("not-found", f"no asset {name!r}")
    ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Reply(raw=(_swagger_dir() / name).read_bytes(), content_type=ctype,
                 headers={"Cache-Control": "public, max-age=86400"})


DOC_KEY = web.AppKey("voxd_api_openapi", bytes)


@web.middleware
async def api_problem_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Unknown paths and methods under /api/ answer with problem+json too."""
    try:
        return await handler(request)
    except web.HTTPMethodNotAllowed as e:
        if not request.path.startswith("/api/"):
            raise
        resp = ApiProblem("method-not-allowed", f"{request.method} is not allowed here; "
                          f"use {', '.join(sorted(e.allowed_methods))}").response(request.path)
        resp.headers["Allow"] = ", ".join(sorted(e.allowed_methods))
        return resp
    except web.HTTPNotFound:
        if not request.path.startswith("/api/"):
            raise
        return ApiProblem("not-found", f"no route {request.path}").response(request.path)


class AppKeyCheck:
    """The control API's one key check for transports set up before the API is mounted
    on ``app`` (``/webrtc/offer``): it asks the mounted API's ``KeyAuthority``."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    async def check(self, raw: str, scope: str) -> str | None:
        """The key's organisation, None when it is refused."""
        services = self._app.get(SERVICES_KEY)
        return None if services is None else await services.authority.check(raw, scope)


def all_specs(extra_routes: Iterable[RouteTable] = ()) -> list[RouteSpec]:
    specs = [*agents.routes, *functions.routes, *calls.routes, *keys.routes, *webhooks.routes,
             *calendar.routes, *conversations.routes, *sip.routes, *sip_trace.routes, *signin.routes,
             *second_factor.routes, *org_usage.routes, *signin.audit_routes,
             *invitations.routes, *recordings.routes, *cookie_session.routes, *sso.routes]
    for table in extra_routes:
        specs += table
    # literal segments before {params}: /calls/active must win over /calls/{call_id}
    return sorted(specs, key=lambda s: s.path.count("{"))


def setup_api(
    app: web.Application, deps: ApiDeps, *, extra_routes: Iterable[RouteTable] = ()
) -> None:
    """Add /api/v1/..., /api/docs.json, /api/docs (and /healthz when absent) to ``app``.

    ``extra_routes`` are more ``RouteTable``s (e.g. webhooks) served, scoped and documented
    like the built-in ones.

    Call before the application starts (it appends a middleware and a cleanup hook that
    writes pending usage counts; the daemon closes the Database after the app's cleanup)."""
    if deps.conversations is None:
        deps.conversations = conversations.standalone_source(deps)
    services = Services.build(deps)
    pipeline = Pipeline(services)
    existing = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    specs = all_specs(extra_routes)
    public_specs = [s for s in public if not (s.path == "/healthz" and "/healthz" in existing)]
    registered: list[RouteSpec] = []
    for spec in [*public_specs, *specs]:
        app.router.add_route(spec.method, spec.router_path, pipeline.handler(spec),
                             name=spec.operation_id)
        registered.append(spec)
    app[SERVICES_KEY] = services
    app[SPECS_KEY] = registered
    app[DOC_KEY] = json.dumps(build_openapi([s for s in registered if s.documented])).encode()
    app.middlewares.append(api_problem_middleware)
    app.middlewares.append(credential_throttle(lambda: services.authority))

    async def flush_usage(_: web.Application) -> None:
        await services.usage.close()
        close = getattr(deps.conversations, "close_all", None)
        if close is not None:
            await close()  # a conversation source's own tasks (the idle sweep)

    app.on_cleanup.append(flush_usage)
