"""Calls of organisations other than the default, both ways, through the real daemon:
outbound through a trunk that lists the organisation (``sip.trunks[].orgs``; any other
organisation gets 404 for it), and inbound to its numbers held to its ``calls_concurrent``
and ``calls_per_day`` (486 Busy Here with Retry-After) while the default's calls connect."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.daemons import start_daemon
from tests.interop.sipd import free_udp_tcp_port
from tests.net.test_sip_srtp import bye
from tests.net.test_sip_trunk import Carrier, poll
from tests.orgs.test_org_routing import ORGS, agent, invite, keys
from tests.security.test_media_sources import ack, recv_until, udp
from voxd.app import Daemon
from voxd.config import ConfigError, VoxdConfig


@pytest.fixture
async def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Daemon, Carrier]]:
    monkeypatch.setenv("VOXD_TEST_TRUNK_PW", "trunk-pw")
    loop = asyncio.get_running_loop()
    transport, carrier = await loop.create_datagram_endpoint(Carrier, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    out = {"domain": "carrier.example", "proxy": f"sip:127.0.0.1:{port}", "username": "voxd-trunk",
           "password_env": "VOXD_TEST_TRUNK_PW", "from_user": "+15550001", "country_code": "1"}
    for org, name, text in (("acme", "sales", agent("Acme sales, hello.", "+15550100")),
                            ("globex", "front", agent("Globex front desk.", "+15550200"))):
        (tmp_path / "agents" / org).mkdir(parents=True)
        (tmp_path / "agents" / org / f"{name}.yaml").write_text(text)
    d = await start_daemon(tmp_path, {"desk": agent("The default desk.", "+15550000")}, default_agent="desk",
                           drain_timeout_s=0,
                           sip={"port": free_udp_tcp_port(), "allow_any": True, "tcp": False,
                                "rtp_port_min": 33800, "rtp_port_max": 33900,
                                "trunks": [{"name": "acme-carrier", "orgs": ["acme"], "outbound": out},
                                           {"name": "house", "outbound": out},
                                           {"name": "callers", "allow": ["127.0.0.0/8"]}]})
    assert d.db is not None
    for org in ORGS[1:]:
        await d.db.orgs().create(org)
    try:
        yield d, carrier
    finally:
        await d.stop()
        transport.close()


def test_trunk_orgs_are_validated() -> None:
    trunk = {"name": "t", "outbound": {"domain": "carrier.example"}}
    assert VoxdConfig.model_validate({"sip": {"trunks": [trunk]}}).sip.trunks[0].orgs == ("default",)
    for bad, says in (("acme", "must be a list"), (["Acme!"], "not an organisation name: 'Acme!'"),
                      ([1], "must be a list")):
        with pytest.raises((ConfigError, ValueError), match=re.escape(says)):
            VoxdConfig.model_validate({"sip": {"trunks": [{**trunk, "orgs": bad}]}})


@pytest.mark.timeout(60)
async def test_acme_dials_through_its_trunk_and_nobody_else_may(daemon: tuple[Daemon, Carrier]) -> None:
    d, carrier = daemon
    url = f"http://127.0.0.1:{d.http_port}/api/v1/calls"
    auth = await keys(d)
    async with aiohttp.ClientSession() as http:
        body = {"agent": "sales", "to": "+15551234567", "trunk": "acme-carrier"}
        # the trunk is not listed for globex or default: as unknown to them as a missing one
        for org, name in (("globex", "front"), ("default", "desk")):
            async with http.post(url, json={**body, "agent": name}, headers=auth[org]) as r:
                assert r.status == 404, (org, await r.text())
        async with http.post(url, json={**body, "trunk": "house"}, headers=auth["acme"]) as r:
            assert r.status == 404, await r.text()  # the default's trunk is not acme's
        async with http.post(url, json={**body, "agent": "desk"}, headers=auth["acme"]) as r:
            assert r.status == 404, await r.text()  # the default's agent is not acme's
        assert carrier.invites == []
        async with http.post(url, json=body, headers=auth["acme"]) as r:
            assert r.status == 202, await r.text()
            call_id = (await r.json())["id"]

        async def ringing() -> bool:
            return bool(carrier.invites)

        await poll(ringing)
        (inv,) = carrier.invites
        assert inv.request is not None and inv.request.uri == "sip:+15551234567@carrier.example;user=phone"
        async with http.get(url + "/active", headers=auth["acme"]) as r:
            assert [c["id"] for c in (await r.json())["calls"]] == [call_id]
        for other in ("default", "globex"):
            async with http.get(url + "/active", headers=auth[other]) as r:
                assert (await r.json())["calls"] == []
        carrier.refuse(inv.call_id, 486)

        async def ended() -> dict[str, Any] | None:
            async with http.get(f"{url}/{call_id}", headers=auth["acme"]) as r:
                rec = await r.json()
            return rec if rec.get("ended_at") else None

        rec = await poll(ended)
        assert rec["agent"] == "sales" and rec["metadata"]["trunk"] == "acme-carrier"
        for other in ("default", "globex"):
            async with http.get(f"{url}/{call_id}", headers=auth[other]) as r:
                assert r.status == 404
            async with http.get(url, headers=auth[other]) as r:
                assert (await r.json())["calls"] == []
        # the default organisation still dials through its own trunk
        async with http.post(url, json={"agent": "desk", "to": "+15557654321", "trunk": "house"},
                             headers=auth["default"]) as r:
            assert r.status == 202, await r.text()


async def _ring(d: Daemon, number: str, call_id: str) -> tuple[Any, bytes]:
    """An INVITE to ``number``; the socket and the final response."""
    assert d.sip is not None
    port = d.sip.port
    sip, rtp = udp("127.0.0.1"), udp("127.0.0.1")
    sip.sendto(invite(port, sip, number, rtp.getsockname()[1], call_id), ("127.0.0.1", port))
    final = await recv_until(sip, lambda b: re.match(rb"SIP/2.0 [2-6]\d\d", b) is not None, within=10)
    rtp.close()
    return sip, final


@pytest.mark.timeout(60)
async def test_inbound_calls_are_held_to_the_orgs_limits(daemon: tuple[Daemon, Carrier]) -> None:
    d, _carrier = daemon
    assert d.db is not None and d.sip is not None and d.calls is not None
    await d.db.orgs().set_limits("acme", {"calls_concurrent": 2})
    auth = await keys(d)
    # a burst of five to acme's number, and two to the default's, at once
    rung = await asyncio.gather(*(_ring(d, "+15550100", f"acme-burst-{i}") for i in range(5)),
                                *(_ring(d, "+15550000", f"default-{i}") for i in range(2)))
    port = d.sip.port
    try:
        acme, default = rung[:5], rung[5:]
        statuses = [int(final.split()[1]) for _s, final in acme]
        assert sorted(statuses) == [200, 200, 486, 486, 486]
        for _s, final in acme:
            if final.startswith(b"SIP/2.0 486"):
                assert b"Retry-After: 5" in final
        assert [final.split()[1] for _s, final in default] == [b"200", b"200"]
        ups = [(s, f, cid) for (s, f), cid in zip(rung, [*(f"acme-burst-{i}" for i in range(5)),
                                                        "default-0", "default-1"], strict=True)
               if f.startswith(b"SIP/2.0 200")]
        for s, final, cid in ups:
            s.sendto(ack(port, s, final, cid), ("127.0.0.1", port))
        async with aiohttp.ClientSession() as http:  # acme's usage counts its two inbound calls
            async with http.get(f"http://127.0.0.1:{d.http_port}/api/v1/usage", headers=auth["acme"]) as r:
                usage = await r.json()
            assert usage["active_calls"] == 2 and usage["limits"] == {"calls_concurrent": 2}
        assert d.calls.org_gate is not None and d.calls.org_gate.refused == {"acme": 3}
        for s, final, cid in ups:
            s.sendto(bye(port, s, final, cid), ("127.0.0.1", port))
            await recv_until(s, lambda b: b.startswith(b"SIP/2.0 200") and b"BYE" in b)
        for _ in range(100):
            if not d.calls.active:
                break
            await asyncio.sleep(0.02)
        await d.calls.flush()
        # the refused calls are not the organisation's calls: two today, and its calls per day now 2
        assert (await d.db.for_org("acme").calls().totals(0))["count"] == 2
        await d.db.orgs().set_limits("acme", {"calls_per_day": 2})
        d.calls.org_gate.cache._seen.clear()  # limits are cached for seconds: read them afresh
        s, final = await _ring(d, "+15550100", "acme-next-day")
        s.close()
        assert final.startswith(b"SIP/2.0 486")
        retry = re.search(rb"Retry-After: (\d+)", final)
        assert retry is not None and 1 <= int(retry.group(1)) <= 86400
        s, final = await _ring(d, "+15550000", "default-after")  # the default's are not held
        assert final.startswith(b"SIP/2.0 200")
        s.sendto(bye(port, s, final, "default-after"), ("127.0.0.1", port))
        await recv_until(s, lambda b: b"BYE" in b)
        s.close()
    finally:
        for s, _f in rung:
            s.close()


async def test_voxd_dial_org_uses_its_agents_and_only_its_trunks(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    import argparse
    import json

    from voxd.dial import run_dial

    (tmp_path / "agents" / "acme").mkdir(parents=True)
    (tmp_path / "agents" / "desk.yaml").write_text(agent("The default desk."))
    (tmp_path / "agents" / "acme" / "sales.yaml").write_text(agent("Acme sales."))
    out = {"domain": "127.0.0.1", "port": 9}
    (tmp_path / "voxd.yaml").write_text(json.dumps({
        "agents_dir": "agents", "state_dir": "state", "engines": {"silero_confirm": False, "preload": False},
        "sip": {"trunks": [{"name": "acme-carrier", "orgs": ["acme"], "outbound": out},
                           {"name": "house", "outbound": out}]}}))

    def args(org: str | None, name: str, trunk: str) -> argparse.Namespace:
        return argparse.Namespace(config=str(tmp_path / "voxd.yaml"), agent=name, org=org, target="+15551234567",
                                  trunk=trunk, from_user=None, sip_port=0, max_seconds=1.0, json=True)

    for org, name, trunk in ((None, "desk", "acme-carrier"), ("acme", "sales", "house")):
        assert await run_dial(args(org, name, trunk)) == 2
        assert f"no trunk {trunk!r}" in capsys.readouterr().err
    assert await run_dial(args("acme", "desk", "acme-carrier")) == 2  # agents/acme/ has no desk
    assert "desk.yaml" in capsys.readouterr().err
