"""Websocket media, web tokens and text conversations of organisations other than the
default: the credential's organisation (an API key's, the one that minted a web token)
decides whose agents a caller reaches and where the call or conversation is stored;
another organisation's agent is refused exactly as a missing one is; an anonymous caller
on an open listener stays with the default organisation. Through the real daemon."""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
from collections.abc import AsyncIterator
from hashlib import sha256
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.daemons import start_daemon
from tests.net.test_webrtc import Browser
from tests.orgs.test_org_routing import ORGS, agent, keys
from tests.synth import silence
from tests.webhooks.receiver import Receiver
from voxd.app import Daemon
from voxd.net.webtoken import WebTokens


async def _daemon(tmp_path: Path, anonymous: bool) -> Daemon:
    for org, name, text in (("acme", "sales", agent("Acme sales, hello.")),
                            ("globex", "front", agent("Globex front desk."))):
        (tmp_path / "agents" / org).mkdir(parents=True)
        (tmp_path / "agents" / org / f"{name}.yaml").write_text(text)
    d = await start_daemon(tmp_path, {"desk": agent("The default desk.")}, default_agent="desk",
                           drain_timeout_s=0, http={"media_unauthenticated": anonymous},
                           webhooks={"allow_private_destinations": True, "retry_schedule_s": [0.2]})
    assert d.db is not None
    for org in ORGS[1:]:
        await d.db.orgs().create(org)
    return d


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    d = await _daemon(tmp_path, anonymous=False)
    yield d
    await d.stop()


async def _call(http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Open a websocket call, hear its greeting, hang up; the `started` frame."""
    async with http.ws_connect(url, headers=headers or {}) as ws:
        started = json.loads((await ws.receive(timeout=10)).data)
        assert started["type"] == "started", started
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data)["type"] == "transcript":
                started["greeting"] = json.loads(msg.data)["text"]
                break
        await ws.send_str(json.dumps({"type": "stop"}))
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data)["type"] == "end":
                break
    return started


async def _stored(d: Daemon, http: aiohttp.ClientSession, call_id: str,
                  auth: dict[str, dict[str, str]]) -> dict[str, Any]:
    """The call's record as its organisation reads it; every other organisation gets 404."""
    assert d.calls is not None
    for _ in range(300):
        if call_id not in d.calls.active:
            break
        await asyncio.sleep(0.02)
    await d.calls.flush()
    api = f"http://127.0.0.1:{d.http_port}/api/v1/calls/{call_id}"
    found = {}
    for org in ORGS:
        async with http.get(api, headers=auth[org]) as r:
            found[org] = (r.status, await r.json() if r.status == 200 else None)
    owners = [org for org, (status, _) in found.items() if status == 200]
    assert len(owners) == 1, found
    assert all(status == 404 for org, (status, _) in found.items() if org not in owners), found
    record = found[owners[0]][1]
    assert record is not None
    record["_org"] = owners[0]
    return record


@pytest.mark.timeout(60)
async def test_an_orgs_key_opens_its_agent_and_the_call_is_its(daemon: Daemon) -> None:
    base = f"http://127.0.0.1:{daemon.http_port}"
    ws_url = base.replace("http", "ws") + "/media/voxd?agent="
    auth = await keys(daemon)
    async with aiohttp.ClientSession() as http:
        started = await _call(http, ws_url + "sales", auth["acme"])
        assert started["agent"] == "sales" and started["greeting"] == "Acme sales, hello."
        rec = await _stored(daemon, http, started["call_id"], auth)
        assert rec["_org"] == "acme" and rec["agent"] == "sales" and rec["transport"] == "websocket"
        # the default organisation's key still reaches the default's agents, stored with it
        started = await _call(http, ws_url + "desk", auth["default"])
        assert started["greeting"] == "The default desk."
        assert (await _stored(daemon, http, started["call_id"], auth))["_org"] == "default"
        # globex asking for acme's agent: the very refusal of an agent that does not exist
        refusals = []
        for name in ("sales", "nobody", "desk"):
            async with http.get(base + "/media/voxd?agent=" + name, headers=auth["globex"]) as r:
                refusals.append((r.status, (await r.text()).replace(repr(name), "NAME")))
        assert refusals == [(404, "no agent NAME")] * 3
        async with http.get(base + "/media/voxd?agent=front", headers=auth["acme"]) as r:
            assert (r.status, await r.text()) == (404, "no agent 'front'")
        # no credential on a listener that is not open to anonymous callers
        async with http.get(base + "/media/voxd?agent=sales") as r:
            assert r.status == 401
    assert daemon.calls is not None and not daemon.calls.active


@pytest.mark.timeout(60)
async def test_a_web_token_minted_by_an_org_reaches_its_agent(daemon: Daemon) -> None:
    base = f"http://127.0.0.1:{daemon.http_port}"
    auth = await keys(daemon)
    async with aiohttp.ClientSession() as http:
        async def mint(org: str, name: str) -> tuple[int, dict[str, Any]]:
            async with http.post(base + "/api/v1/calls/web-token", json={"agent": name, "ttl_s": 60},
                                 headers=auth[org]) as r:
                return r.status, await r.json()

        assert (await mint("globex", "sales"))[0] == 404  # not globex's agent: as unknown as a missing one
        assert (await mint("acme", "desk"))[0] == 404
        status, body = await mint("acme", "sales")
        assert status == 201, body
        claims = json.loads(base64.urlsafe_b64decode(body["token"].split(".")[1] + "=="))
        assert claims["org"] == "acme" and claims["agent"] == "sales"
        started = await _call(http, base.replace("http", "ws") + "/media/voxd?token=" + body["token"])
        assert started["agent"] == "sales" and started["greeting"] == "Acme sales, hello."
        rec = await _stored(daemon, http, started["call_id"], auth)
        assert rec["_org"] == "acme" and rec["agent"] == "sales"
        # a token whose org claim was edited no longer verifies
        forged = dict(claims, org="globex")
        body64 = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode().rstrip("=")
        token = "vxw1." + body64 + "." + body["token"].split(".")[2]
        async with http.get(base + "/media/voxd?token=" + token) as r:
            assert r.status == 403 and "signature" in await r.text()


@pytest.mark.timeout(60)
async def test_webrtc_offers_follow_the_credentials_org(daemon: Daemon) -> None:
    base = f"http://127.0.0.1:{daemon.http_port}"
    auth = await keys(daemon)
    b = Browser(silence(0.3))
    try:  # globex's key, acme's agent: the refusal of a missing agent
        assert await b.offer(base, agent="sales", headers=auth["globex"]) == (404, "no agent 'sales'")
    finally:
        await b.close()
    async with aiohttp.ClientSession() as http, http.post(
            base + "/api/v1/calls/web-token", json={"agent": "sales", "ttl_s": 60}, headers=auth["acme"]) as r:
        token = (await r.json())["token"]
    for credential in ({"headers": auth["acme"]}, {"token": token}):
        b = Browser(silence(0.3))
        try:
            status, answer = await b.offer(base, agent="sales", **credential)
            assert status == 200, answer
            started = await b.wait_for(lambda m: m["type"] == "started")
            assert started["agent"] == "sales"
        finally:
            await b.close()
        async with aiohttp.ClientSession() as http:
            rec = await _stored(daemon, http, answer["call_id"], auth)
        assert rec["_org"] == "acme" and rec["transport"] == "webrtc"


def test_a_token_without_an_org_claim_is_the_default_orgs() -> None:
    """Tokens minted before organisations carry no `org`: they stay the default's."""
    secret = b"s" * 32
    tokens = WebTokens(secret)
    claims = base64.urlsafe_b64encode(json.dumps({"agent": "desk", "exp": 4e9, "nonce": "n1"}).encode())
    body = "vxw1." + claims.decode().rstrip("=")
    sig = base64.urlsafe_b64encode(hmac.new(secret, body.encode(), sha256).digest()).decode().rstrip("=")
    assert tokens.verify(f"{body}.{sig}").org == "default"
    token, _ = tokens.mint("sales", 60, org="acme")
    assert tokens.verify(token, "sales").org == "acme"


@pytest.mark.timeout(60)
async def test_a_text_conversation_runs_the_orgs_agent_and_is_its_alone(daemon: Daemon) -> None:
    api = f"http://127.0.0.1:{daemon.http_port}/api/v1/conversations"
    auth = await keys(daemon)
    receivers = {org: Receiver() for org in ORGS}
    for rcv in receivers.values():
        await rcv.start()
    try:
        await _converse(daemon, api, auth, receivers)
    finally:
        for rcv in receivers.values():
            await rcv.stop()


async def _converse(daemon: Daemon, api: str, auth: dict[str, dict[str, str]], receivers: dict[str, Receiver]) -> None:
    hooks = api.replace("/conversations", "/webhooks")
    async with aiohttp.ClientSession() as http:
        for org, rcv in receivers.items():
            async with http.post(hooks, headers=auth[org], json={"url": rcv.url, "events": [
                    "conversation.updated", "conversation.ended"]}) as r:
                assert r.status == 201, await r.text()
                rcv.secrets.append((await r.json())["secret"])
        async with http.post(api, json={"agent": "sales"}, headers=auth["globex"]) as r:
            globex_refusal = (r.status, (await r.json())["errors"])
        async with http.post(api, json={"agent": "nobody"}, headers=auth["globex"]) as r:
            missing = (r.status, (await r.json())["errors"])
        assert globex_refusal[0] == missing[0] == 422
        assert [e["message"].replace("'sales'", "N") for e in globex_refusal[1]] == \
            [e["message"].replace("'nobody'", "N") for e in missing[1]]
        async with http.post(api, json={"agent": "sales"}, headers=auth["acme"]) as r:
            assert r.status == 201, await r.text()
            conv = await r.json()
        cid = conv["id"]
        assert conv["agent"] == "sales" and conv["turns"][0]["text"] == "Acme sales, hello."
        async with http.post(f"{api}/{cid}/messages", json={"text": "hello"}, headers=auth["acme"]) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["reply"]
        for org in ("default", "globex"):
            async with http.get(f"{api}/{cid}", headers=auth[org]) as r:
                assert r.status == 404, org
            async with http.post(f"{api}/{cid}/messages", json={"text": "hi"}, headers=auth[org]) as r:
                assert r.status == 404, org
            async with http.get(api, headers=auth[org]) as r:
                assert (await r.json())["conversations"] == []
        async with http.get(api, headers=auth["acme"]) as r:
            assert [c["id"] for c in (await r.json())["conversations"]] == [cid]
        async with http.delete(f"{api}/{cid}", headers=auth["acme"]) as r:
            assert r.status == 200 and (await r.json())["status"] == "ended"
    # its webhooks went to acme's endpoint only; a default conversation after it reaches default's
    await receivers["acme"].wait_for(lambda r: any(p["type"] == "conversation.ended" for p in r.accepted.values()))
    assert {p["data"]["conversation_id"] for p in receivers["acme"].accepted.values()} == {cid}
    async with aiohttp.ClientSession() as http:
        async with http.post(api, json={"agent": "desk"}, headers=auth["default"]) as r:
            mine = (await r.json())["id"]
        async with http.delete(f"{api}/{mine}", headers=auth["default"]) as r:
            assert r.status == 200
    await receivers["default"].wait_for(lambda r: any(p["type"] == "conversation.ended"
                                                      for p in r.accepted.values()))
    assert {p["data"]["conversation_id"] for p in receivers["default"].accepted.values()} == {mine}
    assert receivers["globex"].received == []
    assert daemon.db is not None
    assert await daemon.db.conversations().get(cid) is None
    stored = await daemon.db.for_org("acme").conversations().get(cid)
    assert stored is not None and stored["agent"] == "sales"


@pytest.mark.timeout(60)
async def test_anonymous_callers_stay_in_the_default_org(tmp_path: Path) -> None:
    d = await _daemon(tmp_path, anonymous=True)
    try:
        base = f"http://127.0.0.1:{d.http_port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/media/voxd?agent=sales") as r:
                assert (r.status, await r.text()) == (404, "no agent 'sales'")
            started = await _call(http, base.replace("http", "ws") + "/media/voxd?agent=desk")
            assert started["greeting"] == "The default desk."
            assert (await _stored(d, http, started["call_id"], await keys(d)))["_org"] == "default"
    finally:
        await d.stop()
