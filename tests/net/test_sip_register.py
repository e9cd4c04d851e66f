"""The daemon registers over its real SIP socket with a registrar on loopback (an
in-process UDP registrar that challenges with digest), shows the state in the API,
/metrics and /readyz, routes INVITEs for the AOR to the registration's agent, and
unregisters (Expires: 0) when it drains."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from tests.daemons import start_daemon, time_agent
from voxd.api.keys_cli import create_key
from voxd.net.sip_register import Registrations
from voxd.proto.sip import events as ev
from voxd.proto.sip.auth import DigestServer
from voxd.proto.sip.message import SipRequest, make_response, parse_message
from voxd.proto.sip.uri import NameAddr


class UdpRegistrar(asyncio.DatagramProtocol):
    def __init__(self, grant: int) -> None:
        self.digest = DigestServer("carrier", {"alice": "pw-from-env"}, algorithms=("MD5",))
        self.grant = grant
        self.requests: list[SipRequest] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.got = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def transactions(self) -> list[SipRequest]:
        """The requests without their retransmissions (same Via branch): on a loaded box a
        REGISTER is legitimately resent after Timer A before its answer is taken."""
        seen: set[str] = set()
        out: list[SipRequest] = []
        for req in self.requests:
            branch = re.search(r"branch=([^;,\s]+)", req.headers.get("Via") or "")
            key = branch.group(1) if branch else str(id(req))
            if key not in seen:
                seen.add(key)
                out.append(req)
        return out

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        req = parse_message(data)
        assert isinstance(req, SipRequest)
        self.requests.append(req)
        now = asyncio.get_running_loop().time()
        user, stale = self.digest.verify(req, now)
        if user is None:
            resp = make_response(req, 401, to_tag="r", extra=[
                ("WWW-Authenticate", c) for c in self.digest.challenges(now, stale=stale)])
        else:
            expires = int(req.headers.get("Expires") or "0")
            contacts = [(c, min(expires, self.grant)) for c in req.headers.get_all("Contact")]
            resp = make_response(req, 200, to_tag="r", extra=[
                ("Contact", f"{c};expires={e}") for c, e in contacts])
        assert self.transport is not None
        self.transport.sendto(resp.serialize(), addr)
        self.got.set()


async def wait_for(pred: Callable[[], bool], seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.mark.timeout(60)
async def test_register_refresh_state_and_unregister_on_drain(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXD_TEST_SIP_PW", "pw-from-env")
    loop = asyncio.get_running_loop()
    transport, registrar = await loop.create_datagram_endpoint(lambda: UdpRegistrar(grant=4),
                                                               local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    daemon = await start_daemon(tmp_path, {"front": time_agent(), "sales": time_agent()},
                                default_agent="front", sip={
                                    "port": 0, "tcp": False, "rtp_port_min": 32000, "rtp_port_max": 32100,
                                    "registrations": [{
                                        "name": "carrier", "registrar": f"sip:127.0.0.1:{port}",
                                        "aor": "sip:alice@carrier.example", "password_env": "VOXD_TEST_SIP_PW",
                                        "expires": 600, "agent": "sales"}],
                                    "trunks": [{"name": "edge", "allow": ["127.0.0.3/32"]}]})
    stopped = False
    try:
        regs = daemon.registrations
        assert isinstance(regs, Registrations)
        await wait_for(regs.ready)
        txns = registrar.transactions()
        assert "Authorization" not in txns[0].headers and "Authorization" in txns[1].headers
        # granted 4 s although 600 were asked: refreshed after ~2 s
        await wait_for(lambda: len(registrar.transactions()) > 2, 8.0)
        await wait_for(regs.ready)
        key = await create_key(daemon.db, "t", ["calls:read"])
        url = f"http://127.0.0.1:{daemon.http_port}"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:
            async with http.get(url + "/api/v1/sip/registrations") as r:
                assert r.status == 200
                (state,) = (await r.json())["registrations"]
            assert state["name"] == "carrier" and state["state"] == "registered" and state["registered"]
            assert state["last_status"] == 200 and state["granted_expires_s"] == 4 and state["agent"] == "sales"
            assert "pw-from-env" not in str(state)
            async with http.get(url + "/readyz") as r:
                assert (await r.json())["checks"]["sip_registrations"] is True
            async with http.get(url + "/metrics") as r:
                text = await r.text()
            assert 'voxd_sip_registration_up{registration="carrier"} 1.0' in text
        # an INVITE for the AOR from the registrar's address goes to the registration's agent
        call = ev.IncomingCall("c1", b"", NameAddr.parse("<sip:bob@x>"), NameAddr.parse("<sip:alice@carrier.example>"),
                               "alice", ("127.0.0.1", port))
        assert regs.route(call) == "sales"
        other = ev.IncomingCall("c2", b"", NameAddr.parse("<sip:bob@x>"), NameAddr.parse("<sip:alice@carrier.example>"),
                                "alice", ("127.0.0.2", port))
        assert regs.route(other) is None  # neither the registrar nor a trunk's source
        edge = ev.IncomingCall("c3", b"", NameAddr.parse("<sip:bob@x>"), NameAddr.parse("<sip:alice@carrier.example>"),
                               "alice", ("127.0.0.3", 5060))
        assert regs.route(edge) == "sales"  # the carrier's other network, admitted by sip.trunks
        before = len(registrar.requests)
        await daemon.stop()
        stopped = True
        unregister = [r for r in registrar.requests[before:] if r.headers.get("Expires") == "0"]
        assert unregister, "no Expires: 0 on drain"
        assert regs.status()[0]["state"] == "unregistered"
    finally:
        if not stopped:
            await daemon.stop()
        transport.close()


async def test_missing_password_is_reported_not_logged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOXD_TEST_SIP_PW_UNSET", raising=False)
    daemon = await start_daemon(tmp_path, {"front": time_agent()}, sip={
        "port": 0, "tcp": False, "rtp_port_min": 32200, "rtp_port_max": 32300,
        "registrations": [{"name": "c", "registrar": "sip:127.0.0.1:9", "aor": "sip:a@b",
                           "password_env": "VOXD_TEST_SIP_PW_UNSET"}]})
    try:
        (state,) = daemon.registrations.status()
        assert "password unavailable ($VOXD_TEST_SIP_PW_UNSET)" in state["last_reason"]
        assert daemon.registrations.ready() is False
    finally:
        await daemon.stop()


@pytest.mark.timeout(60)
async def test_reload_adds_and_removes_registrations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXD_TEST_SIP_PW", "pw-from-env")
    loop = asyncio.get_running_loop()
    transport, registrar = await loop.create_datagram_endpoint(lambda: UdpRegistrar(grant=300),
                                                               local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]

    def reg(name: str) -> dict[str, object]:
        return {"name": name, "registrar": f"sip:127.0.0.1:{port}", "aor": "sip:alice@carrier.example",
                "password_env": "VOXD_TEST_SIP_PW"}

    sip = {"port": 0, "tcp": False, "rtp_port_min": 32800, "rtp_port_max": 32900}
    daemon = await start_daemon(tmp_path, {"front": time_agent()}, sip={**sip, "registrations": [reg("a")]})
    try:
        regs = daemon.registrations
        await wait_for(regs.ready)
        first = regs.clients[0]
        cfg = daemon.cfg
        daemon.config_loader = lambda: cfg.model_copy(update={"sip": cfg.sip.model_copy(update={
            "registrations": [cfg.sip.registrations[0], type(cfg.sip.registrations[0]).model_validate(reg("b"))]})})
        await daemon.reload_now()
        assert [c.cfg.name for c in regs.clients] == ["a", "b"] and regs.clients[0] is first  # a carried on
        await wait_for(regs.ready)
        kept = daemon.cfg
        daemon.config_loader = lambda: kept.model_copy(update={"sip": kept.sip.model_copy(update={
            "registrations": [kept.sip.registrations[1]]})})
        before = len(registrar.requests)
        await daemon.reload_now()
        assert [c.cfg.name for c in regs.clients] == ["b"]
        assert any(r.headers.get("Expires") == "0" and r.call_id == first.reg.call_id  # type: ignore[union-attr]
                   for r in registrar.requests[before:])
    finally:
        await daemon.stop()
        transport.close()
