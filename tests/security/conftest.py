"""Shared pieces of the hardening tests (issue 12): a local HTTP server that records who
reached it, and a daemon with an admin key."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web


@dataclass
class Target:
    """An HTTP server on loopback: every request it gets is recorded."""

    port: int = 0
    seen: list[dict[str, Any]] = field(default_factory=list)
    runners: list[web.AppRunner] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append({"path": request.path, "host": request.headers.get("Host"),
                          "headers": dict(request.headers), "remote": request.remote})
        if request.path.startswith("/redirect"):
            raise web.HTTPFound(request.query["to"])
        return web.json_response({"data": "internal-metadata", "path": request.path})

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self.runners.append(runner)
        got = runner.addresses[-1][1]
        self.port = self.port or got
        return int(got)

    async def stop(self) -> None:
        for r in self.runners:
            await r.cleanup()


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    t = Target()
    await t.start()
    yield t
    await t.stop()


def hosts_file(entries: dict[str, list[str]]) -> Callable[[str, int], Awaitable[list[str]]]:
    """A resolver answering like /etc/hosts with these entries (anything else: NXDOMAIN)."""

    async def resolve(host: str, port: int) -> list[str]:
        if host in entries:
            return list(entries[host])
        raise OSError(-2, "Name or service not known")

    return resolve
