"""OpenAPI 3.1 built from the route table and its pydantic models, and the Swagger UI page.

Nothing here is written twice: request bodies, query parameters and responses come from
the models the pipeline validates with; scopes and problem types from ``RouteSpec``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from voxd.api.auth import SIGNED_IN
from voxd.api.models import SCOPES, Problem
from voxd.api.problems import PROBLEM_CONTENT_TYPE, PROBLEM_TYPES, problem_type
from voxd.api.routing import RouteSpec

AUTH_PROBLEMS = ("unauthenticated", "key-expired", "key-revoked", "insufficient-scope", "csrf-failed",
                 "rate-limited", "auth-throttled", "quota-exhausted", "payload-too-large",
                 "internal-error")
BODY_PROBLEMS = ("malformed-request", "unsupported-media-type", "validation-error")

DESCRIPTION = """\
Control API of a voxd voice-agent daemon.

**Authentication**: send `Authorization: Bearer vx_live_...`. Keys are created with
`voxd keys create` or `POST /api/v1/api-keys`; the full key is shown once. Each operation
names the scope it needs (`x-required-scope`); a key with `admin` holds every scope.
People sign in (`POST /api/v1/auth/login`, or single sign-on at
`/api/v1/auth/oidc/<org>/start`) and send the access token the same way; a browser holds
it in the `voxd_access` cookie instead (`POST /api/v1/auth/session`) and echoes the
`voxd_csrf` cookie in `X-CSRF-Token` on every state-changing request.

**Errors** are RFC 9457 `application/problem+json` documents whose `type` is one of
`urn:voxd:problem:<slug>`:

{problems}

**Rate limits**: token buckets per key, per endpoint class and per client IP (for
unauthenticated and failed requests). Responses carry `RateLimit-Policy` and `RateLimit`
headers (draft-ietf-httpapi-ratelimit-headers); `429` adds `Retry-After`.
"""

RATE_HEADERS = {
    "RateLimit-Policy": {"description": 'Policies applied, e.g. `"key";q=600;w=60`.',
                         "schema": {"type": "string"}},
    "RateLimit": {"description": 'Remaining requests and reset seconds, e.g. `"key";r=12;t=30`.',
                  "schema": {"type": "string"}},
}


def _problem_table() -> str:
    return "\n".join(f"- `{slug}` ({status}): {title}"
                     for slug, (status, title) in PROBLEM_TYPES.items())


def _drop_null(schema: dict[str, Any]) -> dict[str, Any]:
    """Query parameters are never JSON null: ``anyOf [X, null]`` becomes ``X``."""
    any_of = schema.get("anyOf")
    if isinstance(any_of, list):
        rest = [s for s in any_of if s != {"type": "null"}]
        if len(rest) == 1:
            out = {k: v for k, v in schema.items() if k != "anyOf"}
            out.update(rest[0])
            return out
    return schema


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(mode="validation")
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        prop = _drop_null(copy.deepcopy(prop))
        if prop.get("default") is None:
            prop.pop("default", None)
        desc = prop.pop("description", None)
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required,
                                 "schema": prop}
        if desc:
            param["description"] = desc
        params.append(param)
    return params


def _models(specs: Iterable[RouteSpec]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    seen: list[tuple[type[BaseModel], JsonSchemaMode]] = [(Problem, "serialization")]
    for s in specs:
        if s.body is not None and (s.body, "validation") not in seen:
            seen.append((s.body, "validation"))
        if s.response is not None and (s.response, "serialization") not in seen:
            seen.append((s.response, "serialization"))
    return seen


def _error_responses(slugs: Iterable[str]) -> dict[str, Any]:
    by_status: dict[int, list[str]] = {}
    for slug in slugs:
        status = PROBLEM_TYPES[slug][0]
        if slug not in by_status.setdefault(status, []):
            by_status[status].append(slug)
    out: dict[str, Any] = {}
    for status, group in sorted(by_status.items()):
        first = group[0]
        resp: dict[str, Any] = {
            "description": "; ".join(f"`{g}`: {PROBLEM_TYPES[g][1]}" for g in group),
            "content": {PROBLEM_CONTENT_TYPE: {
                "schema": {"$ref": "#/components/schemas/Problem"},
                "example": {"type": problem_type(first), "title": PROBLEM_TYPES[first][1],
                            "status": status, "detail": PROBLEM_TYPES[first][1]},
            }},
        }
        if status == 429:
            resp["headers"] = {"Retry-After": {"description": "Seconds to wait.",
                                               "schema": {"type": "string"}}, **RATE_HEADERS}
        out[str(status)] = resp
    return out


def _operation(spec: RouteSpec, refs: dict[Any, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": spec.operation_id,
        "summary": spec.summary,
        "tags": [spec.tag],
    }
    description = " ".join(spec.description.split())
    if spec.scope is not None:
        scope_note = ("Requires a signed-in user's access token (not an API key)." if spec.scope == SIGNED_IN
                      else f"Requires scope `{spec.scope}` (or `admin`).")
        op["description"] = f"{description}\n\n{scope_note}".strip()
        op["security"] = [{"bearerAuth": []}, {"cookieAuth": []}]
        op["x-required-scope"] = spec.scope
    else:
        op["security"] = []
        if description:
            op["description"] = description
    params = [{"name": p, "in": "path", "required": True,
               "schema": {"type": "string", "pattern": f"^{spec.params[p]}$"}}
              for p in spec.path_params]
    if spec.query is not None:
        params += _query_parameters(spec.query)
    if params:
        op["parameters"] = params
    if spec.body is not None:
        op["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": refs[(spec.body, "validation")]}}}
    ok: dict[str, Any] = {"description": spec.summary}
    if spec.response is not None:
        ok["content"] = {"application/json": {"schema": refs[(spec.response, "serialization")]}}
    for media in spec.media_types:
        ok.setdefault("content", {})[media] = {"schema": {"type": "string"}}
    if spec.scope is not None:
        ok["headers"] = dict(RATE_HEADERS)
    slugs: list[str] = list(AUTH_PROBLEMS) if spec.scope is not None else ["rate-limited"]
    if spec.body is not None:
        slugs += BODY_PROBLEMS
    if spec.query is not None:
        slugs.append("validation-error")
    if spec.path_params:
        slugs.append("not-found")  # a value outside the parameter's pattern matches no route
    slugs += spec.problems
    op["responses"] = {str(spec.status): ok, **_error_responses(slugs)}
    return op


def build_openapi(specs: list[RouteSpec], *, version: str = "1") -> dict[str, Any]:
    refs, defs = models_json_schema(_models(specs), ref_template="#/components/schemas/{model}")
    paths: dict[str, dict[str, Any]] = {}
    for spec in specs:
        paths.setdefault(spec.path, {})[spec.method.lower()] = _operation(spec, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "voxd control API",
            "version": version,
            "description": DESCRIPTION.format(problems=_problem_table()),
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearerAuth": {
                "type": "http", "scheme": "bearer", "bearerFormat": "vx_live_<38 chars>",
                "description": "Scopes: " + ", ".join(f"`{s}`" for s in SCOPES),
            }, "cookieAuth": {
                "type": "apiKey", "in": "cookie", "name": "voxd_access",
                "description": "A browser session (`POST /api/v1/auth/session`); a POST, PUT, PATCH or DELETE "
                "must also send `X-CSRF-Token` with the value of the `voxd_csrf` cookie. Ignored when an "
                "`Authorization` header is sent.",
            }},
        },
        "tags": [{"name": t} for t in dict.fromkeys(s.tag for s in specs)],
    }


SWAGGER_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>voxd control API</title>
<link rel="stylesheet" href="{static}/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="{static}/swagger-ui-bundle.js"></script>
<script src="{static}/swagger-ui-standalone-preset.js"></script>
<script src="{static}/voxd-init.js"></script>
</body></html>
"""

SWAGGER_INIT = """window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "/api/docs.json", dom_id: "#swagger-ui", deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout", persistAuthorization: false
  });
};
"""
