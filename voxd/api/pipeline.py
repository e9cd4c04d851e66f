"""Turns a ``RouteSpec`` into an aiohttp handler: rate limits, authentication, scope,
quota, usage, input validation, output validation and problem responses, in that order.

The handler gets the services of the principal's organisation (``Services.for_org``), so
every repository it touches is bound to that organisation. A state-changing request that
succeeds (POST, PUT, PATCH, DELETE answered below 400) is appended to the audit log.
"""

from __future__ import annotations

import json
import logging
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel, TypeAdapter, ValidationError

from voxd.api.access_log import ACTOR, ORG
from voxd.api.auth import SIGNED_IN, client_ip, holds, is_user
from voxd.api.cookies import ACCESS_COOKIE, STATE_CHANGING, check_csrf, set_cookies
from voxd.api.deps import RateSpec
from voxd.api.problems import ApiProblem, field_path, validation_problem
from voxd.api.ratelimit import Outcome, headers_for
from voxd.api.routing import Ctx, RouteSpec
from voxd.api.services import Services
from voxd.core import boundedjson
from voxd.core.errors import AtCapacity, NotFound, NotSupported
from voxd.store.repos import ApiKey

log = logging.getLogger(__name__)

JSON_TYPES = ("application/json",)
AUDITED = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def parse_json(raw: bytes, max_depth: int) -> Any:
    """A JSON body, or a 400 problem: invalid, not UTF-8, or nested deeper than ``max_depth``."""
    try:
        return boundedjson.loads(raw, max_depth)
    except ValueError as e:
        raise ApiProblem("malformed-request", f"body: {e}") from e


def _errors(e: ValidationError) -> list[dict[str, Any]]:
    """Field paths without pydantic's union-branch tags; the 'or null' branch is dropped."""
    out = []
    for err in e.errors():
        loc = list(err["loc"])
        if len(loc) > 1 and loc[-1] == "none":
            continue
        loc = [p for p in loc if not (isinstance(p, str) and "[" in p)]
        out.append({"field": field_path(loc), "message": err["msg"]})
    return out or [{"field": "(root)", "message": str(e)}]


def _next_utc(period: str) -> float:
    now = datetime.now(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return (day + timedelta(days=1)).timestamp()
    first = day.replace(day=1)
    nxt = (first + timedelta(days=32)).replace(day=1)
    return nxt.timestamp()


class Pipeline:
    def __init__(self, services: Services) -> None:
        self.s = services
        self._adapters: dict[type[BaseModel], TypeAdapter[Any]] = {}
        self._reads: dict[str, RouteSpec] = {}  # path template -> its GET: the state before a change

    def handler(self, spec: RouteSpec) -> Handler:
        if spec.method == "GET":
            self._reads[spec.path] = spec
        async def handle(request: web.Request) -> web.StreamResponse:
            outcomes: list[Outcome] = []
            try:
                return await self._run(spec, request, outcomes)
            except ApiProblem as p:
                return self._problem(p, request, outcomes)
            except NotFound as e:
                return self._problem(ApiProblem("not-found", str(e) or "no such resource"),
                                     request, outcomes)
            except NotSupported as e:
                return self._problem(ApiProblem("not-implemented", str(e) or "not supported"),
                                     request, outcomes)
            except AtCapacity as e:
                return self._problem(ApiProblem("at-capacity", str(e)), request, outcomes)
            except Exception:
                # headers (and so keys) are never logged; the route and the traceback are
                log.exception("api: %s failed", spec.endpoint)
                return self._problem(ApiProblem("internal-error", "internal error; see the "
                                                "daemon log"), request, outcomes)

        setattr(handle, "__voxd_route__", spec)  # noqa: B010 (read back by tests and docs)
        return handle

    def _problem(
        self, p: ApiProblem, request: web.Request, outcomes: list[Outcome]
    ) -> web.Response:
        resp = p.response(instance=request.path)
        for k, v in headers_for(outcomes).items():
            resp.headers.setdefault(k, v)
        return resp

    async def _run(
        self, spec: RouteSpec, request: web.Request, outcomes: list[Outcome]
    ) -> web.StreamResponse:
        settings = self.s.settings
        ip = client_ip(request, settings.trust_forwarded_for)
        key: ApiKey | None = None
        services = self.s
        if spec.scope is None:
            await self._limit(outcomes, "ip", f"ip:{ip}", settings.ip_rate)
        else:
            key = await self._authenticate(request, ip, outcomes)
            request[ACTOR], request[ORG] = key.id, key.org  # for the access log
            if not holds(key, spec.scope):
                raise ApiProblem(
                    "insufficient-scope",
                    "this operation is on a person's own account: it needs scope 'user', held by a signed-in "
                    "user's access token (POST /api/v1/auth/login), never by an API key"
                    if spec.scope == SIGNED_IN else f"this operation needs scope '{spec.scope}'; the key has "
                    f"{', '.join(key.scopes) or 'none'}",
                    required_scope=spec.scope,
                )
            key_rate = settings.key_rate
            if key.rate_limit_per_minute:
                key_rate = RateSpec(key.rate_limit_per_minute, 60.0)
            await self._limit(outcomes, "key", f"key:{key.id}", key_rate)
            class_rate = settings.class_rates.get(spec.limit_class)
            if class_rate is not None:
                await self._limit(outcomes, spec.limit_class,
                            f"class:{spec.limit_class}:{key.id}", class_rate)
            services = self.s.for_org(key.org)
            per_min = (await self.s.org_limits.get(self.s.db.orgs(), key.org)).get("api_requests_per_minute")
            if per_min is not None:
                await self._limit(outcomes, "org", f"org:{key.org}", RateSpec(per_min, 60.0))
            if not is_user(key):  # a user's requests are not a key's usage
                await self._quota(key, services)
                self.s.usage.note(key.id, spec.endpoint)

        ctx = Ctx(request=request, services=services, key=key, path=dict(request.match_info))
        ctx.query = self._query(spec, request)
        ctx.body = await self._body(spec, request)
        audited = spec.method in AUDITED and not spec.self_audited
        before = await self._before(spec, ctx) if audited else None
        reply = await spec.handler(ctx)
        if audited and reply.status < 400:
            await services.audit.append(actor=ctx.actor, ip=ip, action=spec.operation_id, target=request.path,
                                        before=before, after=None if reply.body is None or reply.stream is not None
                                        else self._dump(spec, reply.body).decode())
        headers = {**headers_for(outcomes), **reply.headers}
        if reply.stream is not None:
            stream = web.StreamResponse(status=reply.status, headers=headers)
            stream.content_type = reply.content_type
            set_cookies(stream, reply.cookies)
            await stream.prepare(request)
            await reply.stream(stream)
            await stream.write_eof()
            return stream
        if reply.raw is not None:
            resp = web.Response(status=reply.status, body=reply.raw, headers=headers, content_type=reply.content_type)
        elif reply.body is None:
            resp = web.Response(status=reply.status, headers=headers)
        else:
            resp = web.Response(status=reply.status, body=self._dump(spec, reply.body), headers=headers,
                                content_type="application/json")
        set_cookies(resp, reply.cookies)
        return resp

    def _reader(self, spec: RouteSpec) -> RouteSpec | None:
        """The GET that shows what ``spec`` changes: the same path (PUT, PATCH, DELETE), or for
        an action on one object (``POST .../{id}/revoke``) that object's path. A POST that
        creates (on a collection) changes no existing state: None."""
        if spec.method != "POST":
            return self._reads.get(spec.path)
        parent, _, last = spec.path.rpartition("/")
        if "{" in last or not parent.endswith("}"):
            return None
        return self._reads.get(parent)

    async def _before(self, spec: RouteSpec, ctx: Ctx) -> str | None:
        """The object's state before the change, as its GET answers it (for the audit row's
        ``before_hash``); None when there is no such read or the object does not exist."""
        reader = self._reader(spec)
        if reader is None:
            return None
        names = set(re.findall(r"{(\w+)", reader.path))
        look = Ctx(request=ctx.request, services=ctx.services, key=ctx.key,
                   path={k: v for k, v in ctx.path.items() if k in names})
        try:
            look.query = None if reader.query is None else reader.query.model_validate({})
            reply = await reader.handler(look)
        except (ApiProblem, NotFound, NotSupported, ValidationError):
            return None
        if reply.raw is not None:
            return reply.raw.decode(errors="replace")
        if reply.body is None or reply.stream is not None or reply.status >= 400:
            return None
        return self._dump(reader, reply.body).decode()

    async def _limit(self, outcomes: list[Outcome], name: str, key: str, spec: RateSpec) -> None:
        out = await self.s.buckets.acquire(name, key, spec)
        outcomes.append(out)
        if not out.allowed:
            raise ApiProblem("rate-limited",
                             f"rate limit '{name}' exceeded; retry in {out.retry_after_s} s")

    async def _authenticate(
        self, request: web.Request, ip: str, outcomes: list[Outcome]
    ) -> ApiKey:
        """The ``Authorization`` header when sent; else a browser's session cookie, which a
        state-changing request must back with the CSRF header (``voxd.api.cookies``)."""
        header = request.headers.get("Authorization", "")
        cookie = request.cookies.get(ACCESS_COOKIE, "")
        if header or not cookie:
            return await self.s.authority.authenticate(header, ip, outcomes)
        key, family = await self.s.authority.authenticate_cookie(cookie, ip, outcomes)
        if request.method in STATE_CHANGING:
            check_csrf(request, self.s.tokens.csrf_for(family))
        return key

    async def _quota(self, key: ApiKey, services: Services) -> None:
        if key.quota_per_day is None and key.quota_per_month is None:
            return
        today, month = await self.s.usage.totals(key.id, services.keys)
        for period, used, quota in (("day", today, key.quota_per_day),
                                    ("month", month, key.quota_per_month)):
            if quota is not None and used >= quota:
                retry = max(1, int(_next_utc(period) - time.time()))
                raise ApiProblem(
                    "quota-exhausted",
                    f"API key {key.id} used its {quota} requests per {period}",
                    headers={"Retry-After": str(retry)}, period=period, quota=quota,
                )

    def _query(self, spec: RouteSpec, request: web.Request) -> BaseModel | None:
        if len(request.query_string) > self.s.settings.max_query_bytes:
            raise ApiProblem("payload-too-large", "the query string is too long")
        if spec.query is None:
            return None
        values: dict[str, Any] = {}
        for name in request.query:
            all_values = request.query.getall(name)
            values[name] = all_values[0] if len(all_values) == 1 else all_values
        try:
            return spec.query.model_validate(values)
        except ValidationError as e:
            raise validation_problem(_errors(e), "query") from e

    async def _body(self, spec: RouteSpec, request: web.Request) -> BaseModel | None:
        limit = self.s.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise ApiProblem("payload-too-large", f"the body is larger than {limit} bytes")
        if spec.body is None:
            return None
        if request.content_type not in JSON_TYPES:
            raise ApiProblem("unsupported-media-type",
                             f"Content-Type must be application/json, not '{request.content_type}'")
        raw = await request.content.read(limit + 1)
        if len(raw) > limit:
            raise ApiProblem("payload-too-large", f"the body is larger than {limit} bytes")
        data = parse_json(raw, self.s.settings.max_json_depth)
        try:
            return spec.body.model_validate(data)
        except ValidationError as e:
            raise validation_problem(_errors(e), "body") from e

    def _dump(self, spec: RouteSpec, body: Any) -> bytes:
        model = spec.response
        if model is None:
            return json.dumps(body, default=str).encode()
        if isinstance(body, model):
            return body.model_dump_json(by_alias=True).encode()
        adapter = self._adapters.get(model)
        if adapter is None:
            adapter = self._adapters[model] = TypeAdapter(model)
        return adapter.dump_json(adapter.validate_python(body), by_alias=True)
