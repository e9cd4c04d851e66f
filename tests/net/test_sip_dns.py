"""RFC 3263 over a real DNS server on loopback (Debian's dnsmasq answering NAPTR, SRV and
A): the resolver's failover order and TTL cache, then a registration and a trunk call
to ``carrier.test`` whose preferred SRV target answers 503 and whose second one works."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.daemons import start_daemon, time_agent
from tests.net.test_sip_register import UdpRegistrar, wait_for
from tests.net.test_sip_trunk import Carrier, poll
from tests.servers import DNSMASQ, dnsmasq
from voxd.api.keys_cli import create_key
from voxd.config.sip import SipDnsConfig
from voxd.net.sip_dns import SipResolver
from voxd.proto.sip import UAConfig, UserAgent
from voxd.proto.sip.locate import Query
from voxd.proto.sip.message import SipRequest, make_response, parse_message
from voxd.proto.sip.transaction import Timers
from voxd.proto.sip.uri import SipUri

pytestmark = pytest.mark.skipif(shutil.which(DNSMASQ) is None, reason="dnsmasq (Debian dnsmasq-base) not installed")


def zone(first: int, second: int) -> list[str]:
    """carrier.test: NAPTR to _sip._udp, SRV preferring a (priority 10) over b (20)."""
    return [
        'naptr-record=carrier.test,10,20,"s","SIP+D2U","","_sip._udp.carrier.test"',
        'naptr-record=carrier.test,5,20,"s","SIP+D2T","","_sip._tcp.carrier.test"',
        f"srv-host=_sip._udp.carrier.test,a.carrier.test,{first},10,0",
        f"srv-host=_sip._udp.carrier.test,b.carrier.test,{second},20,0",
        "srv-host=_sip._tcp.carrier.test,a.carrier.test,5999,10,0",
        "host-record=a.carrier.test,127.0.0.1",
        "host-record=b.carrier.test,127.0.0.1",
        "srv-host=_sip._udp.plain.test,plain.test,5077,0,0",
        "host-record=plain.test,127.0.0.1",
        "host-record=bare.test,127.0.0.1",
    ]


async def test_naptr_srv_a_order_explicit_port_and_ttl_cache() -> None:
    with dnsmasq(zone(5071, 5072), ttl=1) as port:
        r = SipResolver(SipDnsConfig(nameservers=[f"127.0.0.1:{port}"], timeout_s=2))
        udp = await r.locate(SipUri.parse("sip:carrier.test"), ["UDP"])
        assert [(t.address, t.port, t.transport, t.name) for t in udp] == [
            ("127.0.0.1", 5071, "UDP", "a.carrier.test"), ("127.0.0.1", 5072, "UDP", "b.carrier.test")]
        assert r.asked == 4  # NAPTR, SRV, A, A
        assert (await r.locate(SipUri.parse("sip:carrier.test"), ["UDP"])) == udp
        assert r.asked == 4  # all from the cache while the TTL holds
        tcp = await r.locate(SipUri.parse("sip:carrier.test"), ["TCP", "UDP"])
        assert [(t.port, t.transport) for t in tcp] == [(5999, "TCP"), (5071, "UDP"), (5072, "UDP")]
        # no NAPTR: the SRV of the transport; an explicit port: A only; no SRV: A at 5060
        assert [t.port for t in await r.locate(SipUri.parse("sip:plain.test"), ["UDP"])] == [5077]
        fresh = SipResolver(SipDnsConfig(nameservers=[f"127.0.0.1:{port}"]))
        assert [t.port for t in await fresh.locate(SipUri.parse("sip:plain.test:5090"), ["UDP"])] == [5090]
        assert fresh.asked == 1  # A only
        assert [t.port for t in await r.locate(SipUri.parse("sip:bare.test"), ["UDP"])] == [5060]
        assert [t.port for t in await r.locate(SipUri.parse("sips:bare.test"), ["TLS"])] == [5061]
        with pytest.raises(OSError):
            await r.locate(SipUri.parse("sip:missing.test"), ["UDP"])
        await asyncio.sleep(1.2)  # the TTL has passed: asked again
        before = r.asked
        await r.locate(SipUri.parse("sip:carrier.test"), ["UDP"])
        assert r.asked == before + 4
        assert r.cache.get(Query("a.carrier.test", "A"), time.monotonic()) == ["127.0.0.1"]


class Refuser(asyncio.DatagramProtocol):
    """A carrier node in maintenance: 503 to every request (ACKs aside)."""

    def __init__(self, name: str = "", log: list[str] | None = None, retry_after: int | None = None) -> None:
        self.methods: list[str] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.name, self.log, self.retry_after = name, log, retry_after

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        req = parse_message(data)
        if not isinstance(req, SipRequest) or req.method == "ACK":
            return
        self.methods.append(req.method)
        if self.log is not None:
            self.log.append(self.name)
        extra = [("Retry-After", str(self.retry_after))] if self.retry_after is not None else []
        assert self.transport is not None
        self.transport.sendto(make_response(req, 503, to_tag="down", extra=extra).serialize(), addr)


class OpenCarrier(Carrier):
    """The second carrier node: rings every INVITE (no digest: an IP-authenticated trunk)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.ua = UserAgent(UAConfig("127.0.0.1", transport.get_extra_info("sockname")[1], user="carrier"))


async def udp(factory: Any) -> tuple[asyncio.DatagramTransport, Any, int]:
    transport, proto = await asyncio.get_running_loop().create_datagram_endpoint(factory, local_addr=("127.0.0.1", 0))
    return transport, proto, int(transport.get_extra_info("sockname")[1])


@pytest.mark.timeout(60)
async def test_registration_fails_over_to_the_next_srv_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXD_TEST_SIP_PW", "pw-from-env")
    t1, down, p1 = await udp(Refuser)
    t2, registrar, p2 = await udp(lambda: UdpRegistrar(grant=300))
    with dnsmasq(zone(p1, p2)) as dns_port:
        daemon = await start_daemon(tmp_path, {"front": time_agent()}, default_agent="front", sip={
            "port": 0, "tcp": False, "rtp_port_min": 32600, "rtp_port_max": 32700,
            "dns": {"nameservers": [f"127.0.0.1:{dns_port}"]},
            "registrations": [{"name": "carrier", "registrar": "sip:carrier.test",
                               "aor": "sip:alice@carrier.test", "password_env": "VOXD_TEST_SIP_PW"}]})
        try:
            regs = daemon.registrations
            assert regs is not None
            await wait_for(regs.ready, 15.0)
            assert down.methods == ["REGISTER"]  # the preferred target answered 503 once
            assert len(registrar.transactions()) == 2  # challenged, then registered, at the second
            (st,) = regs.status()
            assert st["registered"] and st["last_status"] == 200 and st["target"] == f"127.0.0.1:{p2}"
            assert regs.clients[0].peer == ("127.0.0.1", p2)
            assert registrar.requests[0].uri == "sip:carrier.test"
        finally:
            await daemon.stop()
            t1.close()
            t2.close()


@pytest.mark.timeout(60)
async def test_registration_starts_again_from_the_best_target_after_all_failed(tmp_path: Path) -> None:
    order: list[str] = []
    t1, _, p1 = await udp(lambda: Refuser("first", order, retry_after=1))
    t2, _, p2 = await udp(lambda: Refuser("second", order, retry_after=1))
    with dnsmasq(zone(p1, p2)) as dns_port:
        daemon = await start_daemon(tmp_path, {"front": time_agent()}, default_agent="front", sip={
            "port": 0, "tcp": False, "rtp_port_min": 32600, "rtp_port_max": 32700,
            "dns": {"nameservers": [f"127.0.0.1:{dns_port}"]},
            "registrations": [{"name": "carrier", "registrar": "sip:carrier.test", "aor": "sip:alice@carrier.test"}]})
        try:
            await wait_for(lambda: len(order) >= 4, 15.0)
            assert order[:4] == ["first", "second", "first", "second"]  # the backoff (Retry-After), then the best again
            regs = daemon.registrations
            assert regs is not None and not regs.ready()
            (st,) = regs.status()
            assert st["last_status"] == 503 and st["state"] == "backoff"
        finally:
            await daemon.stop()
            t1.close()
            t2.close()


def test_nameservers_are_validated() -> None:
    assert SipDnsConfig(nameservers=["127.0.0.1:5353", "[::1]:53", "192.0.2.1"]).nameservers[2] == "192.0.2.1"
    for bad in (["dns.example:53"], ["127.0.0.1:0"], ["127.0.0.1:99999"]):
        with pytest.raises(ValueError, match="nameserver"):
            SipDnsConfig(nameservers=bad)


@pytest.mark.timeout(60)
async def test_trunk_call_fails_over_to_the_next_srv_target(tmp_path: Path) -> None:
    t1, down, p1 = await udp(Refuser)
    t2, carrier, p2 = await udp(OpenCarrier)
    with dnsmasq(zone(p1, p2)) as dns_port:
        daemon = await start_daemon(tmp_path, {"front": time_agent()}, sip={
            "port": 0, "tcp": False, "rtp_port_min": 32800, "rtp_port_max": 32900,
            "dns": {"nameservers": [f"127.0.0.1:{dns_port}"]},
            "trunks": [{"name": "carrier", "outbound": {"domain": "carrier.test", "from_user": "+15550001"}}]})
        try:
            key = await create_key(daemon.db, "t", ["calls:write", "calls:read"])
            url = f"http://127.0.0.1:{daemon.http_port}/api/v1/calls"
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:
                async with http.post(url, json={"agent": "front", "to": "+15551234567", "trunk": "carrier"}) as r:
                    assert r.status == 202, await r.text()
                    call_id = (await r.json())["id"]

                async def ringing() -> bool:
                    return bool(carrier.invites)

                await poll(ringing)
                assert down.methods == ["INVITE"]
                (invite,) = carrier.invites
                assert invite.request is not None and invite.request.uri == "sip:+15551234567@carrier.test;user=phone"
                async with http.get(f"{url}/{call_id}") as r:
                    meta = (await r.json())["metadata"]
                assert meta["sip_failover"] == f"127.0.0.1:{p1}/udp 503 Service Unavailable"
                assert meta["sip_call_id"] == invite.call_id
                carrier.refuse(invite.call_id, 486)

                async def ended() -> dict[str, Any] | None:
                    async with http.get(f"{url}/{call_id}") as r:
                        rec = await r.json()
                    return rec if rec.get("ended_at") else None

                rec = await poll(ended)
                assert rec["end_reason"] == "busy"  # 486 is the callee's answer: no failover
                assert down.methods == ["INVITE"]
                async with http.get(f"{url}/{call_id}/sip-trace") as r:
                    assert r.status == 200
                    trace = await r.text()
                # both attempts in the call's trace: the 503 from the first, then the second's answer
                assert trace.index("503 Service Unavailable") < trace.index("486 Busy Here")
                assert trace.count("INVITE sip:+15551234567@carrier.test;user=phone SIP/2.0") == 2
        finally:
            await daemon.stop()
            t1.close()
            t2.close()


class Silent(asyncio.DatagramProtocol):
    """A carrier node that has hung: it takes datagrams and never answers."""

    def __init__(self) -> None:
        self.received = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received += 1


@pytest.mark.timeout(60)
async def test_trunk_call_fails_over_after_a_timeout(tmp_path: Path) -> None:
    t1, silent, p1 = await udp(Silent)
    t2, carrier, p2 = await udp(OpenCarrier)
    with dnsmasq(zone(p1, p2)) as dns_port:
        daemon = await start_daemon(tmp_path, {"front": time_agent()}, sip={
            "port": 0, "tcp": False, "rtp_port_min": 33000, "rtp_port_max": 33100,
            "dns": {"nameservers": [f"127.0.0.1:{dns_port}"]},
            "trunks": [{"name": "carrier", "outbound": {"domain": "carrier.test"}}]})
        try:
            assert daemon.sip is not None and daemon.sip.ua is not None
            daemon.sip.ua.config.timers = Timers(t1=0.05)  # Timer B: 64 x T1 = 3.2 s, not 32 s
            key = await create_key(daemon.db, "t", ["calls:write", "calls:read"])
            url = f"http://127.0.0.1:{daemon.http_port}/api/v1/calls"
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:
                async with http.post(url, json={"agent": "front", "to": "+15551234567", "trunk": "carrier"}) as r:
                    assert r.status == 202, await r.text()
                    call_id = (await r.json())["id"]

                async def ringing() -> bool:
                    return bool(carrier.invites)

                await poll(ringing, 15.0)
                assert silent.received >= 3  # the INVITE and its retransmissions, unanswered
                async with http.get(f"{url}/{call_id}") as r:
                    meta = (await r.json())["metadata"]
                assert meta["sip_failover"].startswith(f"127.0.0.1:{p1}/udp 408")
                carrier.refuse(carrier.invites[0].call_id, 603)

                async def ended() -> dict[str, Any] | None:
                    async with http.get(f"{url}/{call_id}") as r:
                        rec = await r.json()
                    return rec if rec.get("ended_at") else None

                assert (await poll(ended))["end_reason"] == "declined"
        finally:
            await daemon.stop()
            t1.close()
            t2.close()


@pytest.mark.timeout(60)
async def test_a_sip_uri_dialled_without_a_trunk_is_located_too(tmp_path: Path) -> None:
    t1, down, p1 = await udp(Refuser)
    t2, carrier, p2 = await udp(OpenCarrier)
    with dnsmasq(zone(p1, p2)) as dns_port:
        daemon = await start_daemon(tmp_path, {"front": time_agent()}, sip={
            "port": 0, "tcp": False, "rtp_port_min": 33200, "rtp_port_max": 33300,
            "dns": {"nameservers": [f"127.0.0.1:{dns_port}"]}})
        try:
            key = await create_key(daemon.db, "t", ["calls:write", "calls:read"])
            url = f"http://127.0.0.1:{daemon.http_port}/api/v1/calls"
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:
                async with http.post(url, json={"agent": "front", "to": "sip:bob@carrier.test"}) as r:
                    assert r.status == 202, await r.text()
                    call_id = (await r.json())["id"]

                async def ringing() -> bool:
                    return bool(carrier.invites)

                await poll(ringing)
                assert down.methods == ["INVITE"]
                assert carrier.invites[0].request is not None
                assert carrier.invites[0].request.uri == "sip:bob@carrier.test"
                async with http.post(url, json={"agent": "front", "to": "sip:bob@missing.test"}) as r:
                    assert r.status == 422 and "missing.test" in await r.text()
                carrier.refuse(carrier.invites[0].call_id, 486)

                async def ended() -> bool:
                    async with http.get(f"{url}/{call_id}") as r:
                        return bool((await r.json()).get("ended_at"))

                await poll(ended)
        finally:
            await daemon.stop()
            t1.close()
            t2.close()
