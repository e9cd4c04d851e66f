from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from tests.outbound import local_outbound

__all__ = ["Ctx", "Serve", "local_outbound", "serve"]


class Ctx:
    """A ToolContext with fixed options, as a call's SessionTools would give."""

    def __init__(self, options: dict[str, dict[str, Any]] | None = None, tz: str = "Europe/Paris") -> None:
        self.call_id = "call_test"
        self.timezone = tz
        self.options = options or {}

    def options_for(self, tool: str) -> dict[str, Any]:
        return dict(self.options.get(tool, {}))

    async def end_call(self, reason: str) -> None:
        pass

    async def transfer_call(self, target: str) -> bool:
        return True

    async def send_dtmf(self, digits: str) -> None:
        pass


Serve = Callable[[web.Application], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start an aiohttp app on 127.0.0.1 and return its base URL."""
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    yield start
    for r in runners:
        await r.cleanup()

