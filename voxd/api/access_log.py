"""The HTTP access log: one structured line per request on logger ``voxd.access``
(``http.access_log``), for operators and auditors, with nothing secret in it.

A line names the method, the path, the query with the values of credential-like
parameters masked (``token``, ``key``, ``secret``, ``code``, ``state``, ``password``,
``signature``), the status, the body size, the time taken, the client address (the proxy's
``X-Forwarded-For`` when ``api.trust_forwarded_for``), the user agent, and the principal the
pipeline authenticated (a key id or user id, and its organisation) — never a header value.
In JSON-lines logs these are fields of the line (``"fields": {...}``).
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, urlencode

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

ACTOR = web.RequestKey("voxd.actor", str)  # set by the pipeline once it knows the principal
ORG = web.RequestKey("voxd.org", str)
_SECRET_PARAM = re.compile(r"(?i)(token|key|secret|code|state|password|passwd|sig|signature|auth)")
_MAX_FIELD = 512

log = logging.getLogger("voxd.access")


def masked_query(query_string: str) -> str:
    pairs = parse_qsl(query_string, keep_blank_values=True)
    return urlencode([(k, "***" if _SECRET_PARAM.search(k) else v) for k, v in pairs])[:_MAX_FIELD]


class AccessLogger(AbstractAccessLogger):
    trust_forwarded_for = False  # set by the daemon from api.trust_forwarded_for

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        remote = request.remote or ""
        if self.trust_forwarded_for:
            remote = request.headers.get("X-Forwarded-For", remote).split(",")[0].strip() or remote
        fields = {
            "method": request.method,
            "path": request.path[:_MAX_FIELD],
            "query": masked_query(request.query_string),
            "status": response.status,
            "bytes": response.body_length,
            "ms": round(time * 1000, 1),
            "remote": remote,
            "user_agent": request.headers.get("User-Agent", "")[:200],
            "actor": request.get(ACTOR, ""),
            "org": request.get(ORG, ""),
        }
        self.logger.info("%s %s %s %.1f ms %s", request.method, fields["path"], response.status,
                         fields["ms"], fields["actor"] or "-", extra={"fields": fields})

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)
