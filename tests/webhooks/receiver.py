"""A webhook receiver on 127.0.0.1 that checks every request the way an integrator would:
with the ``standardwebhooks`` package (the reference verifier) and with ``svix``'s."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from svix.webhooks import Webhook as SvixWebhook
from svix.webhooks import WebhookVerificationError as SvixVerificationError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    msg_id: str
    timestamp: str
    signatures: list[str]
    body: bytes
    at: float
    status: int
    verified_by: list[int]  # indexes into Receiver.secrets whose key verified it (standardwebhooks)
    svix_ok: bool

    @property
    def payload(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class Receiver:
    secrets: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    respond: Callable[[int], int] = lambda n: 200  # request number (1-based) -> status
    delay_s: float = 0.0
    received: list[Received] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    @property
    def accepted(self) -> dict[str, dict[str, Any]]:
        """Events taken (2xx), by webhook-id: duplicates collapse as a receiver would dedupe."""
        return {r.msg_id: r.payload for r in self.received if 200 <= r.status < 300}

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            body = await request.read()
            headers = dict(request.headers)
            ok = []
            for i, secret in enumerate(self.secrets):
                try:
                    Webhook(secret).verify(body, headers)
                    ok.append(i)
                except WebhookVerificationError:
                    pass
            svix_ok = False
            if self.secrets:
                try:
                    SvixWebhook(self.secrets[0]).verify(body, headers)
                    svix_ok = True
                except SvixVerificationError:
                    pass
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            status = self.respond(len(self.received) + 1) if ok else 401
            self.received.append(Received(
                msg_id=request.headers["webhook-id"], timestamp=request.headers["webhook-timestamp"],
                signatures=request.headers["webhook-signature"].split(" "), body=body, at=time.time(),
                status=status, verified_by=ok, svix_ok=svix_ok))
            return web.Response(status=status, text="ok" if status < 300 else "nope " * 500)
        finally:
            self.in_flight -= 1

    async def wait_for(self, pred: Callable[[Receiver], bool], within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while True:
                if pred(self):
                    return
                await asyncio.sleep(0.02)
