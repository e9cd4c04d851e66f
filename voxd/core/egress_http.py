"""The outbound policy (``voxd.core.egress``) fitted to the HTTP clients voxd uses.

* aiohttp: ``egress_session`` builds a ClientSession whose resolver checks every address
  and hands aiohttp only those (aiohttp then connects to that address; TLS still checks
  the name), and whose request hooks check the URL and every redirect's Location before
  it is requested (address literals never reach a resolver, so they are checked there).
* httpx (the OpenAI SDK): ``EgressTransport`` resolves and checks, then sends the request
  to the checked address with the original Host header and TLS server name.
* websockets (Deepgram, ElevenLabs): ``ws_connect_kwargs`` gives the checked address as
  the ``host`` to connect to, with the name kept for TLS, and no proxy from the environment.
"""

from __future__ import annotations

import socket
from typing import Any

import aiohttp
import httpx2
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from voxd.core.egress import EgressPolicy, EgressRefused


class EgressResolver(AbstractResolver):
    def __init__(self, policy: EgressPolicy, use: str) -> None:
        self.policy = policy
        self.use = use

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        out: list[ResolveResult] = []
        for addr in await self.policy.addresses(self.use, host, port):
            fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
            if family not in (socket.AF_UNSPEC, fam):
                continue
            out.append({"hostname": host, "host": addr, "port": port, "family": fam, "proto": 0,
                        "flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV})
        if not out:
            raise OSError(f"{host} has no address of the family asked for")
        return out

    async def close(self) -> None:
        pass


def _trace(policy: EgressPolicy, use: str) -> aiohttp.TraceConfig:
    trace = aiohttp.TraceConfig()

    async def on_start(_s: aiohttp.ClientSession, _c: Any, params: aiohttp.TraceRequestStartParams) -> None:
        policy.target(str(params.url), use)  # raises EgressRefused

    async def on_redirect(_s: aiohttp.ClientSession, _c: Any, params: aiohttp.TraceRequestRedirectParams) -> None:
        location = params.response.headers.get("Location") or params.response.headers.get("URI")
        if location:  # the next hop, checked before it is requested (names: by the resolver too)
            policy.target(str(params.url.join(URL(location))), use)

    trace.on_request_start.append(on_start)
    trace.on_request_redirect.append(on_redirect)
    return trace


def egress_session(policy: EgressPolicy, use: str, *, limit: int = 100, **kw: Any) -> aiohttp.ClientSession:
    """An aiohttp session that only ever connects where ``policy`` allows for ``use``.
    Requests that the policy refuses raise ``EgressRefused`` (directly, or inside an
    ``aiohttp.ClientConnectorError``: see ``voxd.core.egress.refusal``)."""
    conn = aiohttp.TCPConnector(resolver=EgressResolver(policy, use), limit=limit, ttl_dns_cache=10)
    return aiohttp.ClientSession(connector=conn, trace_configs=[_trace(policy, use)], trust_env=False, **kw)


def redirect_options(policy: EgressPolicy) -> dict[str, Any]:
    """``allow_redirects`` / ``max_redirects`` for an aiohttp request under ``policy``."""
    if policy.max_redirects <= 0:
        return {"allow_redirects": False}
    return {"allow_redirects": True, "max_redirects": policy.max_redirects}


async def ws_connect_kwargs(policy: EgressPolicy, use: str, url: str) -> dict[str, Any]:
    """Keyword arguments for ``websockets.connect(url, **kw)`` that connect to the checked
    address of ``url``'s host (the name is still used for TLS and the Host header)."""
    target, addr = await policy.pin(url, use)
    kw: dict[str, Any] = {"host": addr, "port": target.port, "proxy": None}
    if target.secure:
        kw["server_hostname"] = target.host
    return kw


def egress_httpx_client(policy: EgressPolicy, use: str, **kw: Any) -> httpx2.AsyncClient:
    """An ``httpx2.AsyncClient`` (the OpenAI SDK's HTTP client) bound to ``policy``."""
    return httpx2.AsyncClient(transport=EgressTransport(policy, use), trust_env=False, **kw)


class EgressTransport(httpx2.AsyncBaseTransport):
    """An httpx async transport: every request (and redirect hop) is checked, resolved once
    and sent to the checked address; SNI and certificate checks use the URL's name."""

    def __init__(self, policy: EgressPolicy, use: str) -> None:
        self.policy = policy
        self.use = use
        self._inner = httpx2.AsyncHTTPTransport(trust_env=False)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        target, addr = await self.policy.pin(str(request.url), self.use)
        request.url = request.url.copy_with(host=addr)
        if target.secure:
            request.extensions = {**request.extensions, "sni_hostname": target.host}
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


__all__ = ["EgressRefused", "EgressResolver", "EgressTransport", "egress_httpx_client", "egress_session",
           "redirect_options", "ws_connect_kwargs"]
