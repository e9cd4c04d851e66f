"""Limits on the HTTP listener itself, before any handler runs.

* Connections: at most ``max_connections`` open, and ``max_connections_per_source`` from
  one address (the socket's peer: behind a reverse proxy that is the proxy); beyond that a
  new connection is answered ``503`` and closed at once, costing one descriptor for a
  moment, not one for as long as the client likes.
* Slowloris: a connection must complete its request head within ``header_timeout_s`` of
  opening (``keepalive_timeout_s`` of the previous response on a kept-alive connection),
  however slowly it drips bytes; a request body that stops arriving for ``body_timeout_s``
  ends the connection. Both answer ``408`` when the client had started a request.
* A parser error that escapes a handler outside the control API (a JSON body nested past
  the parser's limit, say) is a 400 problem response, never a 500.

The checks run on one sweeper task (twice a second), not a timer per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from voxd.api.problems import PROBLEM_CONTENT_TYPE, ApiProblem

log = logging.getLogger("voxd.http")

SWEEP_S = 0.5


@dataclass(frozen=True)
class ListenerLimits:
    max_connections: int = 512
    max_connections_per_source: int = 64
    header_timeout_s: float = 10.0
    keepalive_timeout_s: float = 15.0
    body_timeout_s: float = 30.0


def _raw_response(status: str, detail: str, extra: str = "") -> bytes:
    body = json.dumps({"type": "urn:voxd:problem:" + ("request-timeout" if status.startswith("408")
                                                      else "too-many-connections"),
                       "title": status[4:], "status": int(status[:3]), "detail": detail}).encode()
    head = (f"HTTP/1.1 {status}\r\nContent-Type: {PROBLEM_CONTENT_TYPE}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n{extra}\r\n")
    return head.encode() + body


class GuardedConnection(asyncio.Protocol):
    """Wraps aiohttp's request handler for one connection: counts it, notes when bytes
    arrive and whether a request is being handled, and is closed by the sweeper."""

    def __init__(self, guard: ListenerGuard, make_inner: Callable[[], asyncio.Protocol]) -> None:
        self.guard = guard
        self._make_inner = make_inner
        self.inner: Any = None  # aiohttp's RequestHandler, made once the connection is admitted
        self.transport: asyncio.Transport | None = None
        self.source = ""
        self.admitted = False
        now = time.monotonic()
        self.opened_at = self.idle_since = self.last_rx = now
        self.rx_since_idle = 0  # bytes of a request head not yet complete
        self.requests = 0  # requests handed to the application
        self.busy = 0  # requests in the application now
        self.request: web.BaseRequest | None = None

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.source = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        why = self.guard.admit(self)
        if why:
            transport.write(_raw_response("503 Service Unavailable", why, "Retry-After: 5\r\n"))  # type: ignore[attr-defined]
            transport.close()
            return
        self.admitted = True
        self.inner = self._make_inner()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        if not self.busy:
            self.rx_since_idle += len(data)
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.admitted:
            self.guard.closed(self)
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    # -- the application's side (the middleware)
    def begin(self, request: web.BaseRequest) -> None:
        self.requests += 1
        self.busy += 1
        self.request = request
        self.rx_since_idle = 0

    def end(self) -> None:
        self.busy -= 1
        if not self.busy:
            self.request = None
            self.idle_since = time.monotonic()

    # -- the sweeper's side
    def overdue(self, now: float, lim: ListenerLimits) -> str | None:
        if not self.busy:
            limit = lim.header_timeout_s if self.requests == 0 else lim.keepalive_timeout_s
            if now - self.idle_since > limit:
                return "head" if self.rx_since_idle else "idle"
        elif self.request is not None and not self.request.content.is_eof() and now - self.last_rx > lim.body_timeout_s:
            return "body"
        return None

    def close(self, why: str) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        if why == "head":
            t.write(_raw_response("408 Request Timeout", "the request head did not arrive in time"))
        elif why == "body":
            t.write(_raw_response("408 Request Timeout", "the request body stopped arriving"))
        t.close()


class ListenerGuard:
    def __init__(self, limits: Callable[[], ListenerLimits]) -> None:
        self.limits = limits  # asked at each use: a reload applies to the next connection and sweep
        self.open: weakref.WeakSet[GuardedConnection] = weakref.WeakSet()
        self.per_source: dict[str, int] = {}
        self.refused = 0
        self.timed_out = 0
        self._task: asyncio.Task[None] | None = None

    def factory(self, server: Callable[[], asyncio.Protocol]) -> Callable[[], GuardedConnection]:
        def make() -> GuardedConnection:
            return GuardedConnection(self, server)

        return make

    def admit(self, conn: GuardedConnection) -> str | None:
        lim = self.limits()
        n = self.per_source.get(conn.source, 0)
        if lim.max_connections and len(self.open) >= lim.max_connections:
            why = f"the server holds its maximum of {lim.max_connections} connections"
        elif lim.max_connections_per_source and n >= lim.max_connections_per_source:
            why = f"{conn.source} already holds {n} connections (http.max_connections_per_source)"
        else:
            self.open.add(conn)
            self.per_source[conn.source] = n + 1
            self._ensure_sweeper()
            return None
        self.refused += 1
        if self.refused in (1, 10, 100) or self.refused % 1000 == 0:
            log.warning("http: connection refused: %s (%d refused so far)", why, self.refused)
        return why

    def closed(self, conn: GuardedConnection) -> None:
        if conn in self.open:
            self.open.discard(conn)
            n = self.per_source.get(conn.source, 1) - 1
            if n > 0:
                self.per_source[conn.source] = n
            else:
                self.per_source.pop(conn.source, None)

    def sweep(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        lim = self.limits()
        closed = 0
        for conn in list(self.open):
            why = conn.overdue(now, lim)
            if why is not None:
                if why != "idle":
                    self.timed_out += 1
                conn.close(why)
                closed += 1
        return closed

    def _ensure_sweeper(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._sweep_loop(), name="http-guard")

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            try:
                self.sweep()
            except Exception:
                log.exception("http: connection sweep failed")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def stats(self) -> dict[str, Any]:
        return {"open": len(self.open), "sources": len(self.per_source), "refused": self.refused,
                "timed_out": self.timed_out}

    # -- the application's side
    def middleware(self) -> Any:
        @web.middleware
        async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
            conn = request.transport.get_protocol() if request.transport is not None else None
            if not isinstance(conn, GuardedConnection):
                return await _no_parser_500s(request, handler)
            conn.begin(request)
            try:
                return await _no_parser_500s(request, handler)
            finally:
                conn.end()

        return guard


async def _no_parser_500s(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RecursionError:
        return ApiProblem("malformed-request", "the request is nested too deeply to parse").response(request.path)


class GuardedSite(web.TCPSite):
    """A TCPSite whose connections go through ``guard``."""

    def __init__(self, runner: web.BaseRunner, host: str | None, port: int | None, guard: ListenerGuard) -> None:
        super().__init__(runner, host, port)
        self.guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self.guard.factory(server), self._host, self._port,
                                                backlog=self._backlog)
