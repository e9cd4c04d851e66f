"""RFC 3263 failover between two Kamailio carriers (tests/interop/kamailio/carrier.cfg),
all on loopback: dnsmasq answers NAPTR/SRV/A for ``carrier.example`` with the first
Kamailio preferred (SRV priority 10) over the second (20). voxd registers at the first;
when it stops, the next refresh finds its TCP port closed and registers at the second.
An outbound trunk call over TCP, with the first stopped, reaches the callee (sipp)
through the second, 407 challenge answered."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from pathlib import Path

import aiohttp
import pytest

from tests.interop.kamailio import free_port, kamailio
from tests.interop.test_kamailio import DOMAIN, PASSWORD, start, until
from tests.interop.test_sipp import records
from tests.servers import DNSMASQ, dnsmasq
from voxd.api.keys_cli import create_key

pytestmark = [pytest.mark.interop,
              pytest.mark.skipif(not shutil.which("sipp"), reason="sipp not installed"),
              pytest.mark.skipif(shutil.which(DNSMASQ) is None, reason="dnsmasq not installed"),
              pytest.mark.skipif(not shutil.which("kamailio") and not Path("/usr/sbin/kamailio").exists(),
                                 reason="kamailio not installed")]


def zone(first: int, second: int) -> list[str]:
    return [
        f'naptr-record={DOMAIN},10,10,"s","SIP+D2T","","_sip._tcp.{DOMAIN}"',
        f"srv-host=_sip._tcp.{DOMAIN},k1.{DOMAIN},{first},10,0",
        f"srv-host=_sip._tcp.{DOMAIN},k2.{DOMAIN},{second},20,0",
        f"host-record=k1.{DOMAIN},127.0.0.1",
        f"host-record=k2.{DOMAIN},127.0.0.1",
    ]


def folder(tmp: Path, name: str) -> Path:
    (tmp / name).mkdir(exist_ok=True)
    return tmp / name


@pytest.mark.timeout(120)
async def test_registration_moves_to_the_second_kamailio_when_the_first_stops(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with contextlib.AsyncExitStack() as first_stack, \
            kamailio(folder(tmp_path, "k2"), DOMAIN=DOMAIN, USER="alice", PASSWORD=PASSWORD, MAX_EXPIRES="6",
                     CALLEE="127.0.0.1:9") as k2:
        k1 = await first_stack.enter_async_context(kamailio(
            folder(tmp_path, "k1"), DOMAIN=DOMAIN, USER="alice", PASSWORD=PASSWORD, MAX_EXPIRES="6",
            CALLEE="127.0.0.1:9"))
        with dnsmasq(zone(k1.port, k2.port)) as dns_port:
            d = await start(tmp_path, {"dns": {"nameservers": [f"127.0.0.1:{dns_port}"]}, "registrations": [{
                "name": "kam", "registrar": f"sip:{DOMAIN}", "aor": f"sip:alice@{DOMAIN}",
                "password_env": "VOXD_TEST_CARRIER_PW", "transport": "tcp", "expires": 600}]},
                monkeypatch, http={"enabled": False})
            try:
                regs = d.registrations
                assert regs is not None
                await until(regs.ready, 15)
                assert k1.grep(f"REGISTER sip:alice@{DOMAIN}"), k1.lines()[-20:]  # the preferred one
                assert not k2.grep("REGISTER")
                assert regs.clients[0].peer == ("127.0.0.1", k1.port)
                await first_stack.aclose()  # the first carrier node goes away
                await until(lambda: bool(k2.grep(f"REGISTER sip:alice@{DOMAIN}")), 20)
                await until(regs.ready, 10)
                assert regs.clients[0].peer == ("127.0.0.1", k2.port)
                assert k2.grep("challenged REGISTER")  # digest at the second too
                (state,) = regs.status()
                assert state["registered"] and state["granted_expires_s"] == 6
            finally:
                await d.stop()


@pytest.mark.timeout(120)
async def test_outbound_call_reaches_the_callee_through_the_second_kamailio(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    callee_port = free_port()
    callee = await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(Path(__file__).parent / "sipp" / "uas_answer_rr.xml"), "-i", "127.0.0.1",
        "-p", str(callee_port), "-mi", "127.0.0.1", "-mp", str(free_port()),
        "-m", "1", "-nostdin", "-timeout", "60", "-timeout_error", cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    values = {"DOMAIN": DOMAIN, "USER": "voxd-out", "PASSWORD": PASSWORD, "MAX_EXPIRES": "60",
              "CALLEE": f"127.0.0.1:{callee_port}"}
    try:
        async with kamailio(folder(tmp_path, "k1"), **values) as k1:
            first = k1.port
        assert k1.proc.returncode is not None  # stopped: its port refuses connections
        async with kamailio(folder(tmp_path, "k2"), **values) as k2:
            with dnsmasq(zone(first, k2.port)) as dns_port:
                d = await start(tmp_path, {"dns": {"nameservers": [f"127.0.0.1:{dns_port}"]},
                                           "trunks": [{"name": "kam", "outbound": {
                                               "domain": DOMAIN, "transport": "tcp", "username": "voxd-out",
                                               "password_env": "VOXD_TEST_CARRIER_PW",
                                               "from_user": "+15550001"}}]},
                                monkeypatch, http={"port": 0}, engines={"preload": False})
                try:
                    key = await create_key(d.db, "t", ["calls:write", "calls:read"])
                    url = f"http://127.0.0.1:{d.http_port}/api/v1/calls"
                    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:
                        body = {"agent": "front", "to": "+1 555 123 4567", "trunk": "kam"}
                        async with http.post(url, json=body) as r:
                            assert r.status == 202, await r.text()
                            call_id = (await r.json())["id"]
                        await until(lambda: bool(d.calls and d.calls.active and any(
                            s.record.answered_at for s in d.calls.active.values())), 20)
                        await asyncio.sleep(2)  # the agent greets the callee
                        async with http.post(f"{url}/{call_id}/end") as r:
                            assert r.status == 202
                    try:
                        code = await asyncio.wait_for(callee.wait(), 20)
                    except TimeoutError:
                        code = None
                    assert code == 0, k2.lines()[-30:]  # sipp got INVITE, ACK and our BYE
                    (rec,) = await records(d)
                    assert rec["answered_at"] is not None and rec["metadata"]["trunk"] == "kam"
                    assert rec["metadata"]["sip_failover"].startswith(f"127.0.0.1:{first}/tcp unreachable")
                    assert k2.grep(f"challenged outbound INVITE to sip:+15551234567@{DOMAIN}")
                    assert k2.grep("authorized outbound INVITE")
                    assert not k1.grep("outbound INVITE")
                finally:
                    await d.stop()
    finally:
        if callee.returncode is None:
            callee.kill()
            await callee.wait()
