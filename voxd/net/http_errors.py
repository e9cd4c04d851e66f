"""4xx answers of the listeners outside the control API (WebRTC signalling), shaped as
RFC 9457 problems like the API's, so a client parses one error format."""

from __future__ import annotations

import json

from aiohttp import web

from voxd.core import boundedjson


def bad_request(detail: str, kind: str = "malformed-request") -> web.HTTPBadRequest:
    """A 400 with the API's problem type URNs (voxd.api.problems.PROBLEM_TYPES)."""
    body = {"type": f"urn:voxd:problem:{kind}", "title": "Bad Request", "status": 400, "detail": detail}
    return web.HTTPBadRequest(text=json.dumps(body), content_type="application/problem+json")


async def json_body(request: web.Request) -> object:
    """The request's JSON (depth-limited), or a 400 problem; never a 500."""
    try:
        return boundedjson.loads(await request.read())
    except ValueError as e:
        raise bad_request(f"body must be JSON: {e}") from None
