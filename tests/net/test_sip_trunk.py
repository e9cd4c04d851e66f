"""Outbound calls through a trunk, over real sockets: `POST /api/v1/calls` with a plain
number and `trunk`; the carrier (an in-process UAS on loopback) challenges with digest,
sees the formatted number, the outbound proxy Route, caller ID, P-Asserted-Identity and
Privacy; a refused call's end reason names the SIP status and the trunk; the trunk's
concurrent-call cap answers 503."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.daemons import start_daemon, time_agent
from voxd.api.keys_cli import create_key
from voxd.net.sip_trunk import TrunkLoad
from voxd.proto.sip import UAConfig, UserAgent
from voxd.proto.sip import events as ev
from voxd.proto.sip.auth import DigestServer


class Carrier(asyncio.DatagramProtocol):
    """A UAS that challenges INVITEs and then holds them ringing until told to refuse."""

    def __init__(self) -> None:
        self.digest = DigestServer("carrier.example", {"voxd-trunk": "trunk-pw"}, algorithms=("MD5",))
        self.ua: UserAgent | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.invites: list[ev.IncomingCall] = []
        self.challenged = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        port = transport.get_extra_info("sockname")[1]
        self.ua = UserAgent(UAConfig("127.0.0.1", port, user="carrier"), auth=self._auth)

    def _auth(self, source: tuple[str, int], req: Any) -> DigestServer:
        if "Authorization" not in req.headers:
            self.challenged += 1
        return self.digest

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.ua is not None
        for e in self.ua.receive(data, addr, time.monotonic()):
            if isinstance(e, ev.IncomingCall):
                self.invites.append(e)
                self.ua.ring(e.call_id, time.monotonic())
        self.flush()

    def refuse(self, call_id: str, status: int) -> None:
        assert self.ua is not None
        self.ua.reject(call_id, status, time.monotonic())
        self.flush()

    def flush(self) -> None:
        assert self.ua is not None and self.transport is not None
        for data, dst in self.ua.data_to_send():
            self.transport.sendto(data, dst)


async def poll(pred: Any, seconds: float = 10.0) -> Any:
    for _ in range(int(seconds / 0.05)):
        value = await pred()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.mark.timeout(60)
async def test_trunk_call_digest_caller_id_caps_and_failure_reason(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXD_TEST_TRUNK_PW", "trunk-pw")
    loop = asyncio.get_running_loop()
    transport, carrier = await loop.create_datagram_endpoint(Carrier, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    daemon = await start_daemon(tmp_path, {"front": time_agent()}, sip={
        "port": 0, "tcp": False, "rtp_port_min": 32400, "rtp_port_max": 32500,
        "trunks": [{"name": "carrier", "outbound": {
            "domain": "carrier.example", "proxy": f"sip:127.0.0.1:{port}", "username": "voxd-trunk",
            "password_env": "VOXD_TEST_TRUNK_PW", "from_user": "+15550001", "from_display": "Front Desk",
            "asserted_identity": "sip:+15550001@carrier.example", "privacy": ["id"], "country_code": "1",
            "max_calls": 1}}]})
    try:
        key = await create_key(daemon.db, "t", ["calls:write", "calls:read"])
        url = f"http://127.0.0.1:{daemon.http_port}/api/v1/calls"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:
            body = {"agent": "front", "to": "(555) 123-4567", "trunk": "carrier"}
            async with http.post(url, json=body) as r:
                assert r.status == 202, await r.text()
                call_id = (await r.json())["id"]

            async def ringing() -> bool:
                return bool(carrier.invites)

            await poll(ringing)
            (invite,) = carrier.invites
            assert carrier.challenged == 1 and invite.auth_user == "voxd-trunk"  # 401 answered
            req = invite.request
            assert req is not None
            assert req.uri == "sip:+15551234567@carrier.example;user=phone"
            assert req.headers.get_all("Route") == [f"<sip:127.0.0.1:{port};lr>"]
            assert invite.from_.uri.user == "+15550001" and invite.from_.uri.host == "carrier.example"
            assert invite.from_.display_name == "Front Desk"
            assert req.headers.get("P-Asserted-Identity") == "<sip:+15550001@carrier.example>"
            assert req.headers.get("Privacy") == "id"
            assert "trunk-pw" not in req.serialize().decode()
            # the trunk's one call is ringing: the next is refused with 503
            async with http.post(url, json={**body, "to": "+15557654321"}) as r:
                assert r.status == 503 and "max_calls 1" in (await r.json())["detail"]
            # a plain number needs a trunk only when several have outbound settings: one does here
            async with http.post(url, json={"agent": "front", "to": "+1555", "trunk": "nope"}) as r:
                assert r.status == 404
            carrier.refuse(invite.call_id, 486)

            async def ended() -> dict[str, Any] | None:
                async with http.get(f"{url}/{call_id}") as r:
                    rec = await r.json()
                return rec if rec.get("ended_at") else None

            rec = await poll(ended)
            assert rec["end_reason"] == "busy"  # the closed vocabulary; the detail is in metadata
            assert rec["metadata"]["end_detail"] == "SIP 486 Busy Here via trunk carrier"
            assert rec["metadata"]["trunk"] == "carrier" and rec["metadata"]["sip_status"] == 486
            async with http.post(url, json={"agent": "front", "to": "not a number"}) as r:
                assert r.status == 422
    finally:
        await daemon.stop()
        transport.close()


def test_calls_per_second_bucket() -> None:
    load = TrunkLoad(refilled_at=0.0)
    assert load.admit(0.0, 0, 2.0) is None and load.admit(0.0, 0, 2.0) is None
    assert load.admit(0.0, 0, 2.0) == "more than 2 calls per second"
    assert load.admit(0.5, 0, 2.0) is None  # one token back after half a second
    assert load.admit(0.5, 0, 0.0) is None and load.active == 4
    load.active = 3
    assert load.admit(1.0, 3, 0.0) == "3 calls in progress (max_calls 3)"
