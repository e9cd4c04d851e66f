"""The route table: every operation declares its method, path, scope and models in one place.

``RouteTable.route`` is a decorator; ``voxd.api.app`` registers each table's routes on the
aiohttp router, ``voxd.api.openapi`` documents them, and the scope-matrix test enumerates
them. A route's ``scope`` is ``None`` only when it is public (declared with ``PUBLIC``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web
from pydantic import BaseModel

if TYPE_CHECKING:
    from voxd.api.services import Services
    from voxd.store.repos import ApiKey

PUBLIC: Final = None
DEFAULT_PARAM = r"[A-Za-z0-9_.-]{1,128}"
ROUTE_SPEC_ATTR = "__voxd_route__"


@dataclass(frozen=True)
class Cookie:
    """A ``Set-Cookie`` of a reply: always ``Secure``; ``max_age`` 0 clears it."""

    name: str
    value: str
    path: str
    max_age: int
    httponly: bool = True
    samesite: str = "Strict"


@dataclass
class Reply:
    body: Any = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # sent as is with ``content_type`` instead of JSON
    content_type: str = "application/json"
    # a streamed body (server-sent events): writes to the prepared response, then returns
    stream: Callable[[web.StreamResponse], Awaitable[None]] | None = None
    cookies: list[Cookie] = field(default_factory=list)


@dataclass
class Ctx:
    request: web.Request
    services: Services
    key: ApiKey | None
    path: dict[str, str]
    body: Any = None  # the validated body model
    query: Any = None  # the validated query model

    @property
    def actor(self) -> str:
        return self.key.id if self.key else "anonymous"

    @property
    def org(self) -> str:
        """The organisation of the request's principal (``services`` is its view)."""
        return self.services.org


Handler = Callable[[Ctx], Awaitable[Reply]]


@dataclass(frozen=True)
class RouteSpec:
    method: str
    path: str
    handler: Handler
    scope: str | None
    summary: str
    tag: str
    limit_class: str = "read"
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    problems: tuple[str, ...] = ()  # operation-specific problem slugs (404, 409, 501, ...)
    description: str = ""
    documented: bool = True  # False keeps it out of the OpenAPI document (the docs pages)
    params: dict[str, str] = field(default_factory=dict)  # path parameter -> regex (no anchors)
    media_types: tuple[str, ...] = ()  # other content types of the success answer (text/event-stream)
    self_audited: bool = False  # the handler writes its own audit rows (sign-in)

    @property
    def operation_id(self) -> str:
        return self.handler.__name__

    @property
    def path_params(self) -> list[str]:
        return re.findall(r"{(\w+)}", self.path)

    @property
    def router_path(self) -> str:
        """The path with each parameter's regex, so a literal segment never hits a {param}."""
        def with_regex(m: re.Match[str]) -> str:
            regex = self.params.get(m[1])
            return "{" + m[1] + ":" + regex + "}" if regex else m[0]

        return re.sub(r"{(\w+)}", with_regex, self.path)

    @property
    def endpoint(self) -> str:
        """How usage is recorded: ``GET /api/v1/agents/{name}``."""
        return f"{self.method} {self.path}"


class RouteTable:
    def __init__(self, params: dict[str, str] | None = None) -> None:
        self._specs: list[RouteSpec] = []
        self._params = dict(params or {})

    def route(
        self,
        method: str,
        path: str,
        *,
        scope: str | None,
        summary: str,
        tag: str,
        limit_class: str = "read",
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        problems: tuple[str, ...] = (),
        description: str = "",
        documented: bool = True,
        media_types: tuple[str, ...] = (),
        self_audited: bool = False,
    ) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self._specs.append(RouteSpec(
                method=method, path=path, handler=fn, scope=scope, summary=summary, tag=tag,
                limit_class=limit_class, body=body, query=query, response=response,
                status=status, problems=problems, description=description or (fn.__doc__ or ""),
                documented=documented, media_types=media_types, self_audited=self_audited,
                params={p: self._params.get(p, DEFAULT_PARAM) for p in re.findall(r"{(\w+)}", path)},
            ))
            return fn

        return deco

    def __iter__(self) -> Iterator[RouteSpec]:
        return iter(self._specs)
