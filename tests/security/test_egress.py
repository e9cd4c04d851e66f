"""Finding 1 (SSRF) and the outbound policy: every address form, names that resolve to
loopback, redirects, user info, and the real HTTP path through each client voxd uses."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Any

import aiohttp
import httpx2
import pytest
from websockets.asyncio.client import connect as ws_connect

from tests.security.conftest import Target, hosts_file
from voxd.api.keys_cli import create_key
from voxd.app import Daemon
from voxd.config import VoxdConfig
from voxd.core.egress import AllowRule, EgressPolicy, EgressRefused, non_public, parse_address, refusal
from voxd.core.egress_http import egress_httpx_client, egress_session, redirect_options, ws_connect_kwargs

STRICT = EgressPolicy()

NON_PUBLIC = [
    "127.0.0.1", "127.255.255.254", "10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "0.1.2.3", "224.0.0.1", "239.255.255.250", "255.255.255.255", "240.0.0.1", "192.0.2.1",
    "198.18.0.1", "::", "::1", "fe80::1", "fe80::1%1", "fc00::1", "fd12:3456::1", "fec0::1", "ff02::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "64:ff9b::7f00:1",
    "64:ff9b::a9fe:a9fe", "64:ff9b:1::1", "2002:7f00:1::1", "2002:a9fe:a9fe::", "::7f00:1", "::a00:1",
    "2001:db8::1", "2001::1",
]
PUBLIC = ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808",
          "2002:808:808::1"]


@pytest.mark.parametrize("addr", NON_PUBLIC)
def test_every_non_public_form_is_named(addr: str) -> None:
    ip = ipaddress.ip_address(addr.split("%")[0]) if "%" not in addr else ipaddress.IPv6Address(addr)
    assert non_public(ip) is not None, addr
    with pytest.raises(EgressRefused):
        STRICT.check_address("functions", addr, ip, 80)


@pytest.mark.parametrize("addr", PUBLIC)
def test_public_addresses_pass(addr: str) -> None:
    assert non_public(ipaddress.ip_address(addr)) is None


@pytest.mark.parametrize("host", ["0x7f000001", "2130706433", "0177.0.0.1", "127.1", "0x7f.1", "017700000001",
                                  "0177.0.0.1.", "0x7F000001"])
def test_integer_hex_and_octal_ipv4_are_refused(host: str) -> None:
    lit = parse_address(host)
    assert lit is not None and lit[0] == ipaddress.IPv4Address("127.0.0.1")
    with pytest.raises(EgressRefused):
        STRICT.target(f"http://{host}/latest/meta-data", "functions")
    # even where loopback is allowed: only canonical literals are taken
    with pytest.raises(EgressRefused, match="four decimal numbers"):
        EgressPolicy.open_to("127.0.0.0/8").target(f"http://{host}/x", "functions")


@pytest.mark.parametrize("url", [
    "http://user:pw@10.0.0.1/", "http://user@example.com/", "https://:pw@example.com/", "ftp://example.com/",
    "file:///etc/passwd", "http:///x", "http://exa mple.com/", "http://127.0.0.1\\@example.com/",
    "gopher://127.0.0.1:6379/", "http://localhost/", "http://LOCALHOST./x", "http://api.localhost/",
    "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://[fe80::1%25eth0]/", "http://169.254.169.254/",
])
def test_urls_refused_before_any_lookup(url: str) -> None:
    with pytest.raises(EgressRefused):
        STRICT.target(url, "webhooks")


async def test_every_address_a_name_resolves_to_is_checked() -> None:
    policy = STRICT.with_resolver(hosts_file({
        "metadata.internal": ["169.254.169.254"], "mixed.example": ["93.184.216.34", "127.0.0.1"],
        "v6.example": ["::1"], "mapped.example": ["::ffff:10.1.2.3"], "ok.example": ["93.184.216.34"],
    }))
    for host in ("metadata.internal", "mixed.example", "v6.example", "mapped.example"):
        with pytest.raises(EgressRefused):
            await policy.addresses("functions", host, 80)
    assert await policy.addresses("functions", "ok.example", 80) == ["93.184.216.34"]


def test_rules_are_per_destination_and_per_use() -> None:
    rule = AllowRule(hosts=("crm.office.lan",), networks=(ipaddress.ip_network("10.1.2.0/24"),), ports=(443,),
                     uses=("functions",))
    policy = EgressPolicy(allow=(rule,))
    ip = ipaddress.ip_address("10.1.2.3")
    policy.check_address("functions", "crm.office.lan", ip, 443)
    for use, host, addr, port in [("webhooks", "crm.office.lan", ip, 443), ("functions", "crm.office.lan", ip, 80),
                                  ("functions", "other.lan", ip, 443),
                                  ("functions", "crm.office.lan", ipaddress.ip_address("10.1.3.1"), 443)]:
        with pytest.raises(EgressRefused):
            policy.check_address(use, host, addr, port)


async def _get(session: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, str]:
    async with session.get(url, **kw) as r:
        return r.status, await r.text()


@pytest.mark.parametrize("form", ["127.0.0.1", "0x7f000001", "2130706433", "0177.0.0.1", "127.1", "localhost",
                                  "[::ffff:127.0.0.1]", "internal.corp", "user:pw@127.0.0.1"])
async def test_the_real_http_path_refuses_a_local_server(target: Target, form: str) -> None:
    """A server on 127.0.0.1 is never reached by any spelling of its address, including a
    name that /etc/hosts (here: an injected resolver) points at loopback."""
    policy = STRICT.with_resolver(hosts_file({"internal.corp": ["127.0.0.1"], "localhost": ["127.0.0.1"]}))
    async with egress_session(policy, "functions") as s:
        with pytest.raises((EgressRefused, aiohttp.ClientConnectorError)) as e:
            await _get(s, f"http://{form}:{target.port}/latest/meta-data")
    assert refusal(e.value) is not None, e.value
    assert target.seen == []


async def test_an_allow_rule_opens_exactly_its_destination(target: Target) -> None:
    crm = AllowRule(hosts=("crm.test",), uses=("functions",))
    policy = EgressPolicy(allow=(crm,)).with_resolver(hosts_file({"crm.test": ["127.0.0.1"]}))
    async with egress_session(policy, "functions") as s:
        # crm.test exists only in the injected resolver: reaching it proves the connection went
        # to the address that was checked, not to a second lookup of the name
        status, body = await _get(s, f"http://crm.test:{target.port}/lookup")
        assert status == 200 and "internal-metadata" in body
        assert target.seen[0]["host"] == f"crm.test:{target.port}"
        with pytest.raises(EgressRefused):  # the same server by its address is still refused
            await _get(s, f"http://127.0.0.1:{target.port}/lookup")
    async with egress_session(policy, "webhooks") as s:  # and for other uses
        with pytest.raises(aiohttp.ClientConnectorError):
            await _get(s, f"http://crm.test:{target.port}/lookup")
    assert len(target.seen) == 1


async def test_redirects_are_off_and_each_hop_is_checked(target: Target) -> None:
    crm = AllowRule(hosts=("crm.test",))
    policy = EgressPolicy(allow=(crm,), max_redirects=3).with_resolver(hosts_file({"crm.test": ["127.0.0.1"]}))
    hop = f"http://crm.test:{target.port}/redirect?to=http://127.0.0.1:{target.port}/steal"
    async with egress_session(EgressPolicy(allow=(crm,), resolver=policy.resolver), "functions") as s:
        assert (await _get(s, hop, **redirect_options(EgressPolicy())))[0] == 302  # not followed by default
    async with egress_session(policy, "functions") as s:
        with pytest.raises(EgressRefused):
            await _get(s, hop, **redirect_options(policy))
        ok = f"http://crm.test:{target.port}/redirect?to=http://crm.test:{target.port}/fine"
        assert (await _get(s, ok, **redirect_options(policy)))[0] == 200
    assert [x["path"] for x in target.seen] == ["/redirect", "/redirect", "/redirect", "/fine"]


async def test_httpx_transport_of_the_openai_sdk(target: Target) -> None:
    policy = EgressPolicy(allow=(AllowRule(hosts=("llm.test",)),)).with_resolver(
        hosts_file({"llm.test": ["127.0.0.1"], "evil.test": ["127.0.0.1"]}))
    async with egress_httpx_client(policy, "providers") as client:
        r = await client.get(f"http://llm.test:{target.port}/v1/models")
        assert r.status_code == 200 and target.seen[0]["host"] == f"llm.test:{target.port}"
        for url in (f"http://evil.test:{target.port}/", f"http://127.0.0.1:{target.port}/",
                    f"http://[::ffff:7f00:1]:{target.port}/", f"http://2130706433:{target.port}/"):
            with pytest.raises((EgressRefused, httpx2.HTTPError)):
                await client.get(url)
    assert len(target.seen) == 1


async def test_websocket_connections_are_pinned() -> None:
    policy = STRICT.with_resolver(hosts_file({"tts.test": ["127.0.0.1"], "api.example": ["93.184.216.34"]}))
    with pytest.raises(EgressRefused):
        await ws_connect_kwargs(policy, "providers", "wss://tts.test/v1/stream")
    kw = await ws_connect_kwargs(policy, "providers", "wss://api.example/v1/stream")
    assert kw == {"host": "93.184.216.34", "port": 443, "proxy": None, "server_hostname": "api.example"}
    with pytest.raises(EgressRefused):  # what the ElevenLabs and Deepgram clients do with it
        await ws_connect("ws://tts.test:9/", **await ws_connect_kwargs(policy, "providers", "ws://tts.test:9/"))


async def test_an_api_client_cannot_read_internal_services(tmp_path: Path, target: Target) -> None:
    """Finding 1 through the real listener: functions:write + functions:execute register a
    function pointing at loopback, link-local metadata or an IPv4-mapped form and run it.
    The daemon refuses each without sending anything; an operator's rule opens one."""
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "a.yaml").write_text("stt: {engine: fake}\nvoice: {engine: fake}\n")
    base = {"state_dir": str(tmp_path / "state"), "agents_dir": str(tmp_path / "agents"), "http": {"port": 0},
            "sip": {"enabled": False}, "engines": {"silero_confirm": False, "preload": False}}
    forms = [f"http://127.0.0.1:{target.port}/latest", f"http://[::ffff:127.0.0.1]:{target.port}/x",
             f"http://localhost:{target.port}/x", f"http://0x7f000001:{target.port}/x",
             f"http://2130706433:{target.port}/x", f"http://{socket.gethostname()}:{target.port}/x",
             "http://169.254.169.254/latest/meta-data", f"http://u:p@127.0.0.1:{target.port}/x"]
    d = Daemon(VoxdConfig.model_validate(base), tmp_path)
    await d.start()
    try:
        key = await create_key(d.db, "fn", ["functions:write", "functions:execute", "functions:read"])
        auth = {"Authorization": f"Bearer {key}"}
        url = f"http://127.0.0.1:{d.http_port}/api/v1/functions"
        async with aiohttp.ClientSession() as http:
            for i, form in enumerate(forms):
                async with http.post(url, headers=auth, json={"name": f"probe_{i}", "description": "d",
                                                              "parameters": {"type": "object"},
                                                              "http": {"url": form, "method": "GET"}}) as r:
                    assert r.status == 201, await r.text()
                async with http.post(f"{url}/probe_{i}/execute", headers=auth, json={"arguments": {}}) as r:
                    out = await r.json()
                assert out["result"] is None and "refused" in (out["error"] or ""), (form, out)
                assert "internal-metadata" not in str(out)
    finally:
        await d.stop()
    assert target.seen == []
    # the operator allows this one destination for functions: now it is reached
    allowed = {**base, "egress": {"allow": [{"networks": ["127.0.0.1/32"], "ports": [target.port],
                                             "uses": ["functions"]}]}}
    d = Daemon(VoxdConfig.model_validate(allowed), tmp_path)
    await d.start()
    try:
        async with aiohttp.ClientSession() as http, http.post(
                f"http://127.0.0.1:{d.http_port}/api/v1/functions/probe_0/execute",
                headers=auth, json={"arguments": {}}) as r:
            out = await r.json()
    finally:
        await d.stop()
    assert out["error"] is None and out["result"]["data"] == "internal-metadata"
    assert len(target.seen) == 1


async def test_webhook_destinations_hidden_in_ipv6_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Webhooks had a guard, but it took NAT64, 6to4 and IPv4-compatible spellings of
    loopback and the metadata address for public ones."""
    from tests.api.conftest import make_api
    from voxd.webhooks.delivery import ALLOW_PRIVATE_ENV

    monkeypatch.delenv(ALLOW_PRIVATE_ENV, raising=False)
    api, close = await make_api(tmp_path)
    try:
        admin = await api.admin()
        for url in ("http://[64:ff9b::7f00:1]/hook", "http://[64:ff9b::a9fe:a9fe]/latest/meta-data",
                    "http://[2002:7f00:1::1]/hook", "http://[::7f00:1]/hook", "http://[fec0::1]/hook",
                    "http://0x7f000001/hook", "http://[::ffff:127.0.0.1]/hook"):
            resp = await api.client.post("/api/v1/webhooks", json={"url": url}, headers=admin)
            body = await resp.json()
            assert resp.status == 422 and body["errors"][0]["field"] == "url", (url, body)
        ok = await api.client.post("/api/v1/webhooks", json={"url": "https://hooks.example.com/x"}, headers=admin)
        assert ok.status == 201
    finally:
        await close()


async def test_hosted_engines_refuse_a_base_url_on_this_machine(target: Target) -> None:
    """Finding 2's SSRF half: base_url at loopback (or 169.254.169.254) reaches nothing
    through any of the four engine clients unless an egress rule allows it."""
    from voxd.agents.schema import LLMConfig
    from voxd.providers.base import Message, ProviderError
    from voxd.providers.keys import Secret
    from voxd.providers.llm.openai_compat import OpenAICompatibleLLM
    from voxd.providers.llm.openai_sdk import OpenAILLM
    from voxd.providers.stt.deepgram import DeepgramOptions, DeepgramSTT
    from voxd.providers.tts.elevenlabs import ElevenLabsTTS

    url = f"http://127.0.0.1:{target.port}"
    for llm in (OpenAICompatibleLLM(LLMConfig(engine="openai-compatible", base_url=url + "/v1")),
                OpenAILLM(LLMConfig(engine="openai", base_url=url + "/v1", max_retries=0))):
        try:
            with pytest.raises(ProviderError, match="destination refused") as e:
                [ev async for ev in llm.stream([Message("user", "hi")], [])]
            assert not e.value.retryable
        finally:
            await llm.aclose()
    tts = ElevenLabsTTS(Secret("xi"), "v1", base_url=url)
    with pytest.raises(ProviderError, match="destination refused"):
        [chunk async for chunk in tts.synthesize("Hello.")]
    stt = DeepgramSTT(Secret("dg"), DeepgramOptions(), base_url=url)
    with pytest.raises(EgressRefused):
        async with stt.connect():
            pass
    assert target.seen == []
