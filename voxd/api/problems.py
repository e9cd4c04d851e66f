"""RFC 9457 problem details: the one error shape of the control API.

Every error the API returns is an :class:`ApiProblem` rendered as
``application/problem+json``. ``PROBLEM_TYPES`` is the documented catalogue; the
OpenAPI document lists it and each ``type`` is ``urn:voxd:problem:<slug>``.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

PROBLEM_CONTENT_TYPE = "application/problem+json"

# slug -> (status, title)
PROBLEM_TYPES: dict[str, tuple[int, str]] = {
    "malformed-request": (400, "The request body is not valid JSON"),
    "unauthenticated": (401, "A valid API key is required"),
    "key-expired": (401, "The API key has expired"),
    "second-factor-required": (401, "The password was right; send the code of the authenticator app as well"),
    "key-revoked": (401, "The API key has been revoked"),
    "insufficient-scope": (403, "The API key lacks the scope this operation needs"),
    "not-found": (404, "No such resource"),
    "method-not-allowed": (405, "Method not allowed on this resource"),
    "conflict": (409, "The resource already exists or cannot be changed this way"),
    "payload-too-large": (413, "The request is larger than allowed"),
    "unsupported-media-type": (415, "Send application/json"),
    "validation-error": (422, "The request did not validate"),
    "invalid-agent": (422, "The agent configuration did not validate"),
    "range-not-satisfiable": (416, "The requested byte range is outside the resource"),
    "request-timeout": (408, "The request did not arrive in time"),
    "rate-limited": (429, "Too many requests"),
    "auth-throttled": (429, "Too many failed authentication attempts from this address"),
    "quota-exhausted": (429, "The API key's request quota is used up"),
    "internal-error": (500, "Internal error"),
    "not-implemented": (501, "Not supported by this deployment"),
    "at-capacity": (503, "A configured cap is reached (a trunk's calls or calls per second); retry later"),
    "too-many-connections": (503, "The server or this address holds its maximum of connections"),
}


def problem_type(slug: str) -> str:
    return f"urn:voxd:problem:{slug}"


class ApiProblem(Exception):
    def __init__(
        self,
        slug: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.slug = slug
        self.status, self.title = PROBLEM_TYPES[slug]
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = extra

    def body(self, instance: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": problem_type(self.slug),
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            out["instance"] = instance
        out.update(self.extra)
        return out

    def response(self, instance: str | None = None) -> web.Response:
        return web.Response(
            status=self.status,
            body=json.dumps(self.body(instance), default=str).encode(),
            content_type=PROBLEM_CONTENT_TYPE,
            headers=self.headers,
        )


def validation_problem(errors: list[dict[str, Any]], where: str) -> ApiProblem:
    """``errors`` as ``[{"field": "scopes[0]", "message": ...}]``; the detail names the first."""
    first = errors[0] if errors else {"field": where, "message": "invalid"}
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return ApiProblem(
        "validation-error",
        f"{where} field '{first['field']}': {first['message']}{more}",
        errors=errors,
    )


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(root)"
