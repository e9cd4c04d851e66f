"""Browser sessions: the sign-in tokens in cookies, and the CSRF check that goes with them.

A signed-in browser holds three cookies, all ``Secure`` (browsers keep them on
``http://localhost`` too; anywhere else the console needs HTTPS):

* ``voxd_access``: the access JWT; ``HttpOnly; SameSite=Strict; Path=/api``. The pipeline
  takes it through the same token check as ``Authorization: Bearer``, when no
  ``Authorization`` header is sent (a request that sends one is judged by it alone).
* ``voxd_refresh``: the refresh token; ``HttpOnly; SameSite=Strict; Path=/api/v1/auth/session``,
  so it only ever travels to the session routes (refresh, sign-out), never to the rest of
  the API.
* ``voxd_csrf``: the session's CSRF token; not ``HttpOnly`` (the page reads it), ``Path=/``.
  A state-changing request (POST, PUT, PATCH, DELETE) authenticated by cookie must echo
  it in ``X-CSRF-Token`` (double submit). The token is an HMAC of the session's family
  under the signing key, so a cookie planted by another site cannot be made to match.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from voxd.api.problems import ApiProblem
from voxd.api.routing import Cookie

ACCESS_COOKIE = "voxd_access"
REFRESH_COOKIE = "voxd_refresh"
CSRF_COOKIE = "voxd_csrf"
CSRF_HEADER = "X-CSRF-Token"
ACCESS_PATH = "/api"
SESSION_PATH = "/api/v1/auth/session"
CSRF_PATH = "/"
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def session_cookies(access: str, access_ttl_s: int, refresh: str, refresh_ttl_s: int, csrf: str) -> list[Cookie]:
    return [Cookie(ACCESS_COOKIE, access, ACCESS_PATH, access_ttl_s),
            Cookie(REFRESH_COOKIE, refresh, SESSION_PATH, refresh_ttl_s),
            Cookie(CSRF_COOKIE, csrf, CSRF_PATH, refresh_ttl_s, httponly=False)]


def cleared_cookies() -> list[Cookie]:
    """The three cookies set empty with ``Max-Age=0`` (same paths and attributes: a browser
    only replaces a Secure cookie with a Secure one)."""
    return [Cookie(c.name, "", c.path, 0, c.httponly) for c in session_cookies("", 0, "", 0, "")]


def check_csrf(request: web.Request, expected: str) -> None:
    """403 ``csrf-failed`` unless the header and the cookie both hold ``expected``."""
    header = request.headers.get(CSRF_HEADER, "")
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not header:
        raise ApiProblem("csrf-failed", f"a request signed in by cookie that changes something must send the "
                         f"{CSRF_HEADER} header with the value of the {CSRF_COOKIE} cookie")
    ok = hmac.compare_digest(header.encode(), expected.encode()) & hmac.compare_digest(cookie.encode(),
                                                                                        expected.encode())
    if not ok:
        raise ApiProblem("csrf-failed", f"the {CSRF_HEADER} header does not match this session's "
                         f"{CSRF_COOKIE} cookie")


def set_cookies(resp: web.StreamResponse, cookies: list[Cookie]) -> None:
    for c in cookies:
        resp.set_cookie(c.name, c.value, path=c.path, max_age=c.max_age, secure=True, httponly=c.httponly,
                        samesite=c.samesite)
