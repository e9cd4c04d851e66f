"""Outbound SIP over TLS with SRTP, over real sockets: a carrier on loopback (Python's
ssl server with a certificate from a CA made in the test, and voxd's sans-IO user agent
as its UAS). voxd registers over TLS and places calls through a `transport: tls`,
`srtp: required` trunk: the carrier's certificate is verified against `sip.tls.ca_file`
and its name; the REGISTER and both calls share one connection; Via says TLS and Contact
`;transport=tls`; the offer is RTP/SAVP with SDES keys and the media voxd sends is SRTP
the carrier decrypts with them. A trunk naming the carrier by an address its certificate
does not carry is refused before any SIP is sent; once the carrier drops the connection,
voxd's BYE is not sent over UDP instead."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization

from tests.daemons import start_daemon, time_agent
from tests.net.test_sip_tls import issue, make_ca
from tests.net.test_sip_trunk import poll
from voxd.api.keys_cli import create_key
from voxd.net.srtp import SrtpContext
from voxd.proto import secure_sdp
from voxd.proto.rtp import RtpPacket, is_rtcp
from voxd.proto.sdp import SessionDescription
from voxd.proto.sip import StreamParser, UAConfig, UserAgent
from voxd.proto.sip import events as ev
from voxd.proto.sip.message import SipRequest, make_response


class TlsCarrier(asyncio.Protocol):
    """One accepted TLS connection of the carrier; REGISTER answered 200, INVITEs kept."""

    def __init__(self, owner: Carrier) -> None:
        self.owner = owner
        self.parser = StreamParser()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.owner.connections.append(self)

    def data_received(self, data: bytes) -> None:
        peer = self.transport.get_extra_info("peername") if self.transport else ("", 0)
        for msg in self.parser.feed(data):
            self.owner.messages.append(msg.serialize())
            if isinstance(msg, SipRequest) and msg.method == "REGISTER":
                contact = msg.headers.get("Contact") or ""
                resp = make_response(msg, 200, to_tag="reg", extra=[("Contact", f"{contact};expires=600")])
                self.write(resp.serialize())
                continue
            for e in self.owner.ua.receive_message(msg, (peer[0], peer[1]), time.monotonic()):
                if isinstance(e, ev.IncomingCall):
                    self.owner.invites.append(e)
            self.owner.flush()

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


class Carrier:
    def __init__(self, port: int) -> None:
        self.ua = UserAgent(UAConfig("localhost", port, user="carrier"), reliable=lambda addr: True)
        self.connections: list[TlsCarrier] = []
        self.messages: list[bytes] = []
        self.invites: list[ev.IncomingCall] = []

    def flush(self) -> None:
        for data, _ in self.ua.data_to_send():
            self.connections[-1].write(data)


@pytest.mark.timeout(60)
async def test_tls_trunk_and_registration_share_a_verified_connection_with_srtp(tmp_path: Path) -> None:
    ca = make_ca()
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca[0].public_bytes(serialization.Encoding.PEM))
    crt, key = issue(ca, tmp_path, serial=7)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(str(crt), str(key))
    loop = asyncio.get_running_loop()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    carrier = Carrier(port)
    server = await loop.create_server(lambda: TlsCarrier(carrier), "127.0.0.1", port, ssl=server_ctx)
    media = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    media.bind(("127.0.0.1", 0))
    media.setblocking(False)
    trap = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # where a cleartext BYE would land
    daemon = await start_daemon(tmp_path, {"front": time_agent()}, sip={
        "port": 0, "rtp_port_min": 32800, "rtp_port_max": 32900, "tls": {"ca_file": str(ca_file)},
        "registrations": [{"name": "reg", "registrar": f"sip:localhost:{port}", "aor": "sip:100@localhost",
                           "transport": "tls"}],
        "trunks": [{"name": "carrier", "srtp": "required",
                    "outbound": {"domain": "localhost", "port": port, "transport": "tls"}},
                   {"name": "by-address", "outbound": {"domain": "127.0.0.1", "port": port, "transport": "tls"}}]})
    try:
        assert daemon.registrations is not None

        async def registered() -> bool:
            return daemon.registrations is not None and daemon.registrations.ready()

        await poll(registered)
        register = carrier.messages[0].decode()
        assert register.startswith("REGISTER sip:localhost:") and "Via: SIP/2.0/TLS " in register
        assert ";transport=tls>" in register
        api_key = await create_key(daemon.db, "t", ["calls:write", "calls:read"])
        url = f"http://127.0.0.1:{daemon.http_port}/api/v1/calls"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {api_key}"}) as http:
            body = {"agent": "front", "to": "+15551234567", "trunk": "carrier"}
            async with http.post(url, json=body) as r:
                assert r.status == 202, await r.text()
                call_id = (await r.json())["id"]

            async def ringing() -> bool:
                return bool(carrier.invites)

            await poll(ringing)
            invite = carrier.invites[0]
            req = invite.request
            assert req is not None and req.uri == f"sip:+15551234567@localhost:{port};user=phone;transport=tls"
            assert (req.headers.get("Via") or "").startswith("SIP/2.0/TLS ")
            assert ";transport=tls>" in (req.headers.get("Contact") or "")
            offer = SessionDescription.parse(invite.offer)
            assert offer.media[0].proto == "RTP/SAVP" and len(offer.media[0].attribute_values("crypto")) == 2
            neg = secure_sdp.answer(offer, "127.0.0.1", media.getsockname()[1], policy="required")
            assert neg.srtp is not None
            carrier.ua.answer(invite.call_id, neg.sdp.serialize(), time.monotonic())
            carrier.flush()
            ctx = SrtpContext(neg.srtp.suite, neg.srtp.local.key_salt, neg.srtp.remote.key_salt)
            got: list[bytes] = []
            async with asyncio.timeout(10):
                while len(got) < 20:
                    got.append(await loop.sock_recv(media, 2048))
            rtp = [p for p in got if not is_rtcp(p)]
            clear = [RtpPacket.parse(ctx.unprotect(p)) for p in rtp]
            assert {p.payload_type for p in clear} == {0} and all(len(c.payload) == 160 for c in clear)
            assert all(c.payload not in p for c, p in zip(clear, rtp, strict=True))
            # a second call on the same connection (refused: its reason names the status)
            async with http.post(url, json={**body, "to": "+15557654321"}) as r:
                assert r.status == 202, await r.text()

            async def two() -> bool:
                return len(carrier.invites) == 2

            await poll(two)
            refused = carrier.invites[1].call_id
            carrier.ua.reject(refused, 486, time.monotonic())
            carrier.flush()

            async def acked() -> bool:
                return any(m.startswith(b"ACK ") and refused.encode() in m for m in carrier.messages)

            await poll(acked)
            assert len(carrier.connections) == 1  # REGISTER and both calls: one TLS connection
            assert daemon.sip is not None and daemon.sip.connector.opened == 1
            # the certificate names localhost, not 127.0.0.1: refused, nothing sent
            before = len(carrier.messages)
            async with http.post(url, json={**body, "trunk": "by-address"}) as r:
                text = await r.text()
                assert r.status >= 400 and "certificate" in text, (r.status, text)
            assert len(carrier.messages) == before
            # the carrier drops the connection; voxd's BYE is then not sent over UDP in the clear
            trap.bind(("127.0.0.1", port))
            trap.setblocking(False)
            assert carrier.connections[0].transport is not None
            carrier.connections[0].transport.close()
            await asyncio.sleep(0.3)
            async with http.post(f"{url}/{call_id}/end") as r:
                assert r.status < 300, await r.text()

            async def ended() -> dict[str, Any] | None:
                async with http.get(f"{url}/{call_id}") as r:
                    rec = await r.json()
                return rec if rec.get("ended_at") else None

            rec = await poll(ended)
            assert rec["metadata"]["srtp"] == "AES_CM_128_HMAC_SHA1_80"
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(1.0):
                    await loop.sock_recv(trap, 4096)
    finally:
        await daemon.stop()
        server.close()
        media.close()
        trap.close()
