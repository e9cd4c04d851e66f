"""The inbound lookup against a real HTTP server on loopback: signed requests (verified by
the standardwebhooks package), variables, another agent, rejections, the timeout bound,
broken answers and the egress policy."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from voxd.agents.loader import LoadedAgent, parse_agent
from voxd.call.lookup import InboundLookups
from voxd.core.egress import EgressPolicy
from voxd.core.secrets import Outbound
from voxd.core.signing import Signer, new_secret

SECRET = new_secret()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def agent(url: str, name: str = "desk", **lookup: Any) -> LoadedAgent:
    spec = {"url": url, "timeout_ms": 500, **lookup}
    return parse_agent(json.dumps({"name": name, "greeting": "Hello {name}.", "variables": {"name": "there"},
                                   "inbound_lookup": spec}))


@pytest.fixture
async def crm() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_post("/lookup", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}/lookup"

    yield start
    for r in runners:
        await r.cleanup()


def lookups(policy: EgressPolicy | None = None) -> InboundLookups:
    out = Outbound(policy=policy if policy is not None else EgressPolicy.open_to("127.0.0.0/8", uses=["lookups"]))
    return InboundLookups(lambda: out, lambda: Signer(SECRET))


async def resolve(lk: InboundLookups, a: LoadedAgent, others: dict[str, LoadedAgent] | None = None) -> Any:
    try:
        return await lk.resolve(a, (others or {}).get, caller="+15550100", called="2000", transport="sip",
                                from_uri="sip:+15550100@127.0.0.1", to_uri="sip:2000@127.0.0.1")
    finally:
        await lk.aclose()


async def test_signed_request_returns_variables(crm: Any) -> None:
    seen: list[dict[str, Any]] = []

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        Webhook(SECRET).verify(body, dict(request.headers))  # raises on a bad signature
        seen.append(json.loads(body))
        return web.json_response({"variables": {"name": "Ada", "tier": 2}})

    out = await resolve(lookups(), agent(await crm(handler)))
    assert [(s["caller"], s["called"], s["transport"], s["org"], s["agent"]) for s in seen] == [
        ("+15550100", "2000", "sip", "default", "desk")]
    assert out.variables == {"name": "Ada", "tier": "2"} and out.reject is None
    assert out.agent.name == "desk" and out.info["result"] == "ok"


async def test_another_agent_of_the_catalog_takes_the_call(crm: Any) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"agent": "vip", "variables": {"name": "Bo"}})

    url = await crm(handler)
    vip = agent(url, name="vip")
    out = await resolve(lookups(), agent(url), {"vip": vip})
    assert out.agent is vip and out.info["agent_from"] == "desk"


@pytest.mark.parametrize("named", ["elsewhere", "acme/vip", "../vip"])
async def test_an_agent_outside_the_catalog_is_refused(crm: Any, named: str) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"agent": named, "variables": {"name": "Bo"}})

    url = await crm(handler)
    out = await resolve(lookups(), agent(url), {"vip": agent(url, name="vip")})
    assert out.agent.name == "desk" and out.variables == {"name": "Bo"}
    assert "is not an agent of this organisation" in out.info["problems"][0]


@pytest.mark.parametrize(("reject", "status", "reason"), [
    (True, 603, "rejected by the inbound lookup"),
    ("busy", 486, "busy"),
    ({"status": 403, "reason": "blocked number"}, 403, "blocked number"),
    ({"status": 200, "reason": "not a rejection status"}, 603, "not a rejection status"),
])
async def test_rejections(crm: Any, reject: Any, status: int, reason: str) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"reject": reject})

    out = await resolve(lookups(), agent(await crm(handler)))
    assert out.reject is not None and (out.reject.status, out.reject.reason) == (status, reason)
    assert out.info["result"] == "rejected"


@pytest.mark.parametrize("on_timeout", ["continue", "reject"])
async def test_a_slow_lookup_never_holds_the_call_past_its_timeout(crm: Any, on_timeout: str) -> None:
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(1.5)  # well past the timeout (the server finishes it at cleanup)
        return web.json_response({"variables": {"name": "Late"}})

    a = agent(await crm(handler), timeout_ms=300, on_timeout=on_timeout)
    t0 = time.perf_counter()
    out = await resolve(lookups(), a)
    took_ms = (time.perf_counter() - t0) * 1000
    assert 300 <= took_ms < 300 + 100, took_ms  # the bound: timeout_ms + 100 ms
    assert out.variables == {} and out.info["result"] == "timeout"
    assert (out.reject is not None) == (on_timeout == "reject")


@pytest.mark.parametrize(("status", "body", "why"), [
    (200, b"not json {", "not JSON"),
    (200, b"[1, 2]", "not a JSON object"),
    (500, b'{"variables": {"name": "X"}}', "HTTP 500"),
])
async def test_a_broken_answer_means_defaults(crm: Any, status: int, body: bytes, why: str) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, body=body, content_type="application/json")

    out = await resolve(lookups(), agent(await crm(handler)))
    assert out.variables == {} and out.reject is None and out.info["result"] == "error"
    assert why in out.info["error"]


async def test_an_internal_address_is_refused_unless_allowed(crm: Any) -> None:
    hits: list[int] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(1)
        return web.json_response({"variables": {"name": "Ada"}})

    url = await crm(handler)
    strict = await resolve(lookups(EgressPolicy()), agent(url))
    assert strict.info["result"] == "error" and "refused" in strict.info["error"] and not hits
    other_use = await resolve(lookups(EgressPolicy.open_to("127.0.0.0/8", uses=["functions"])), agent(url))
    assert other_use.info["result"] == "error" and not hits  # a rule for another kind of request
    allowed = await resolve(lookups(), agent(url))
    assert allowed.variables == {"name": "Ada"} and hits == [1]


async def test_a_declared_secret_signs_instead_of_the_daemons(crm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    own = new_secret()
    monkeypatch.setenv("VOXD_TEST_CRM_SIGNING", own)
    verified: list[bool] = []

    async def handler(request: web.Request) -> web.Response:
        Webhook(own).verify(await request.read(), dict(request.headers))
        verified.append(True)
        return web.json_response({})

    from voxd.core.secrets import DeclaredSecret, SecretBook

    url = await crm(handler)
    book = SecretBook({"crm_signing": DeclaredSecret("crm_signing", ("127.0.0.1",), env="VOXD_TEST_CRM_SIGNING")})
    out_ = Outbound(policy=EgressPolicy.open_to("127.0.0.0/8", uses=["lookups"]), secrets=book)
    lk = InboundLookups(lambda: out_, lambda: Signer(SECRET))
    out = await resolve(lk, agent(url, secret="crm_signing"))
    assert out.info["result"] == "ok" and verified == [True]
