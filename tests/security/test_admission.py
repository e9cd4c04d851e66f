"""Issue 12, finding 6: one transport must not starve the others. A flood of websocket
calls from one address took every slot (`max_calls`) and a real SIP caller got 503."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
from pydantic import ValidationError

from tests.daemons import start_daemon, talker_agent
from tests.interop.sipd import free_udp_tcp_port
from tests.security.test_media_sources import ATTACKER, CALLER, answered_call, count_packets, rtp, udp
from voxd.api.keys_cli import create_key
from voxd.call.admission import Admission, AdmissionRefused
from voxd.config import VoxdConfig
from voxd.net.webtoken import WEB_TOKENS_KEY


def test_each_transport_holds_at_most_its_share() -> None:
    a = Admission(10, shares={"sip": 1.0, "websocket": 0.5})
    for i in range(5):
        a.admit(f"ws{i}", "websocket")
    with pytest.raises(AdmissionRefused, match="websocket holds its share of calls"):
        a.check("websocket")
    for i in range(5):
        a.admit(f"sip{i}", "sip")  # SIP still has the rest
    with pytest.raises(AdmissionRefused, match="10 calls active"):
        a.check("sip")
    a.release("ws0")
    a.check("websocket")
    assert a.in_use("websocket") == 4 and a.refused == {"transport": 1, "total": 1}


def test_unauthenticated_calls_are_capped_in_total_and_per_source() -> None:
    a = Admission(100, shares=None, unauthenticated_max_calls=3, unauthenticated_per_source=2)
    a.admit("a", "websocket", "10.0.0.1", authenticated=False)
    a.admit("b", "websocket", "10.0.0.1", authenticated=False)
    with pytest.raises(AdmissionRefused, match=r"10\.0\.0\.1 holds 2 unauthenticated calls"):
        a.check("websocket", "10.0.0.1", authenticated=False)
    a.check("websocket", "10.0.0.1", authenticated=True)  # a key-holder is not an anonymous caller
    a.admit("c", "websocket", "10.0.0.2", authenticated=False)
    with pytest.raises(AdmissionRefused, match="3 unauthenticated calls active"):
        a.check("websocket", "10.0.0.3", authenticated=False)
    a.release("a")
    a.check("websocket", "10.0.0.1", authenticated=False)


async def _websocket_call(url: str, key: str = "") -> bool:
    """True if the daemon started a call on this websocket (it stays open, silent)."""
    conn = aiohttp.TCPConnector(local_addr=(ATTACKER, 0))
    http = aiohttp.ClientSession(connector=conn)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        ws = await http.ws_connect(url + "/media/voxd?agent=talker&sample_rate=8000", headers=headers)
        first = json.loads((await ws.receive(timeout=5)).data)
    except (aiohttp.ClientError, TimeoutError, ValueError, TypeError):
        await http.close()
        return False
    if first.get("type") != "started":
        await http.close()
        return False
    _HELD.append((http, ws))
    return True


_HELD: list[tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]] = []


async def _attempts(url: str, n: int, key: str = "") -> int:
    started = 0
    for _ in range(n // 50):  # 50 at a time
        started += sum(await asyncio.gather(*(_websocket_call(url, key) for _ in range(50))))
    return started


async def test_300_websocket_calls_from_one_source_leave_room_for_a_sip_caller(tmp_path: Path) -> None:
    port = free_udp_tcp_port()
    d = await start_daemon(
        tmp_path, {"talker": talker_agent()}, default_agent="talker", drain_timeout_s=0,
        sip={"port": port, "allow_any": True, "max_calls": 20, "rtp_port_min": 33600, "rtp_port_max": 33700},
        http={"port": 0, "max_connections_per_source": 400, "max_connections": 600},
    )
    assert d.db is not None and d.calls is not None
    key = await create_key(d.db, "flood", ["calls:write"])
    url = f"http://127.0.0.1:{d.http_port}"
    sip, caller = udp(CALLER), udp(CALLER)
    try:
        # anonymous (this loopback listener takes them): 4 per source
        assert await _attempts(url, 50) == 4
        # with a key: the rest of websocket's share, 0.5 of 20
        assert await _attempts(url, 250, key) == 6
        assert len(d.calls.active) == 10
        media = await answered_call(port, sip, caller, "room-1")  # 200 OK, not 503
        caller.sendto(rtp(1), ("127.0.0.1", media))
        assert await count_packets(caller, 1.0) >= 40  # and the greeting's audio
        assert d.calls.admission.refused == {"unauthenticated_source": 46, "transport": 244}
    finally:
        sip.close()
        caller.close()
        for http, ws in _HELD:
            await ws.close()
            await http.close()
        _HELD.clear()
        await d.stop()


async def test_media_endpoints_need_a_credential_unless_opened_on_loopback(tmp_path: Path) -> None:
    d = await start_daemon(tmp_path, {"talker": talker_agent()}, default_agent="talker", drain_timeout_s=0,
                           http={"port": 0, "media_unauthenticated": False})
    assert d.db is not None
    key = await create_key(d.db, "caller", ["calls:write"])
    reader = await create_key(d.db, "reader", ["calls:read"])
    url = f"http://127.0.0.1:{d.http_port}"
    try:
        async with aiohttp.ClientSession() as http:
            for path in ("/media/voxd", "/media/twilio"):
                async with http.get(url + path, headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                                         "Sec-WebSocket-Version": "13",
                                                         "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}) as r:
                    assert r.status == 401, path
            for bad, status in ((reader, 403), ("vxk1_not_a_key", 403), ("vxw1.forged.token", 403)):
                async with http.get(url + "/media/voxd", headers={"Authorization": f"Bearer {bad}"}) as r:
                    assert r.status == status, bad
            async with http.ws_connect(url + "/media/voxd?sample_rate=8000",
                                       headers={"Authorization": f"Bearer {key}"}) as ws:
                assert json.loads((await ws.receive(timeout=5)).data)["type"] == "started"
            assert d._runner is not None
            token, _ = d._runner.app[WEB_TOKENS_KEY].mint("talker", ttl_s=60)  # what /talk/<agent>/token hands out
            async with http.ws_connect(url + f"/media/voxd?token={token}") as ws:
                started = json.loads((await ws.receive(timeout=5)).data)
                assert started["type"] == "started" and started["agent"] == "talker"
            async with http.get(url + f"/media/voxd?token={token}") as r:
                assert r.status == 403  # a web token works once
    finally:
        await d.stop()


def test_anonymous_media_only_on_a_loopback_listener() -> None:
    with pytest.raises(ValidationError, match=r"media_unauthenticated needs a loopback http\.host"):
        VoxdConfig.model_validate({"http": {"host": "0.0.0.0", "media_unauthenticated": True}})
    VoxdConfig.model_validate({"http": {"host": "::1", "media_unauthenticated": True}})
