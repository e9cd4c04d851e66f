"""Per-trunk codec preference on real sockets: voxd's INVITE through a trunk offers the
trunk's codecs in its order (G.722 on 9 with G722/8000, Opus on a dynamic number with
its fmtp), the carrier answers G.722 and the call runs on it; RTP then flows both
ways in 160-byte G.722 packets 160 timestamp units apart."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.daemons import start_daemon, time_agent
from tests.net.test_sip_trunk import Carrier, poll
from voxd.api.keys_cli import create_key
from voxd.media import codecs
from voxd.media.frame import SILENCE
from voxd.proto import negotiate
from voxd.proto.rtp import RtpPacket, RtpSender, is_rtcp
from voxd.proto.sdp import SessionDescription
from voxd.proto.sip import events as ev


class AnsweringCarrier(Carrier):
    """Answers (after the digest challenge) with G.722, from its own RTP socket."""

    def __init__(self, rtp: socket.socket) -> None:
        super().__init__()
        self.rtp = rtp
        self.answered: negotiate.Negotiated | None = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.ua is not None
        for e in self.ua.receive(data, addr, time.monotonic()):
            if isinstance(e, ev.IncomingCall):
                self.invites.append(e)
                self.answered = negotiate.answer(SessionDescription.parse(e.offer), "127.0.0.1",
                                                 self.rtp.getsockname()[1], ["G722"])
                self.ua.answer(e.call_id, self.answered.sdp.serialize(), time.monotonic())
        self.flush()


@pytest.mark.timeout(60)
async def test_a_trunk_offers_its_codecs_in_order_and_runs_on_the_answer(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXD_TEST_TRUNK_PW", "trunk-pw")
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("127.0.0.1", 0))
    rtp.setblocking(False)
    loop = asyncio.get_running_loop()
    transport, carrier = await loop.create_datagram_endpoint(lambda: AnsweringCarrier(rtp),
                                                             local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    daemon = await start_daemon(tmp_path, {"front": time_agent()}, sip={
        "port": 0, "tcp": False, "rtp_port_min": 32700, "rtp_port_max": 32800, "srtp": "off",
        "trunks": [{"name": "carrier", "codecs": ["opus", "g722", "pcmu"], "outbound": {
            "domain": "carrier.example", "proxy": f"sip:127.0.0.1:{port}", "username": "voxd-trunk",
            "password_env": "VOXD_TEST_TRUNK_PW"}}]})
    try:
        key = await create_key(daemon.db, "t", ["calls:write", "calls:read"])
        url = f"http://127.0.0.1:{daemon.http_port}/api/v1/calls"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:
            async with http.post(url, json={"agent": "front", "to": "+15551234567", "trunk": "carrier"}) as r:
                assert r.status == 202, await r.text()
                call_id = (await r.json())["id"]

            async def invited() -> bool:
                return carrier.answered is not None

            await poll(invited)
            offer = SessionDescription.parse(carrier.invites[-1].offer).audio()
            assert offer is not None
            assert offer.formats == ["111", "9", "0", "101", "110"]
            assert ("rtpmap", "9 G722/8000") in offer.attributes
            assert ("fmtp", f"111 {negotiate.OPUS_FMTP}") in offer.attributes
            assert carrier.answered is not None and carrier.answered.codec.name == "G722"
            voxd_rtp = carrier.answered.remote_address
            assert voxd_rtp is not None

            # the carrier talks G.722; voxd's packets come back G.722 on its 8000 clock
            enc = codecs.get("G722").encoder()
            sender = RtpSender(9)
            got: list[RtpPacket] = []
            for _ in range(100):
                rtp.sendto(sender.packet(enc.encode(SILENCE), 160).serialize(), voxd_rtp)
                await asyncio.sleep(0.02)
                while True:
                    try:
                        data = rtp.recv(2048)
                    except BlockingIOError:
                        break
                    if not is_rtcp(data):
                        got.append(RtpPacket.parse(data))
                if len(got) >= 20:
                    break
            assert len(got) >= 20
            assert {p.payload_type for p in got} == {9} and {len(p.payload) for p in got} == {160}
            steps = {(b.timestamp - a.timestamp) & 0xFFFFFFFF for a, b in itertools.pairwise(got)
                     if b.sequence == (a.sequence + 1) & 0xFFFF}
            assert steps == {160}, steps

            async def record() -> dict[str, Any] | None:
                async with http.get(f"{url}/{call_id}") as r:
                    rec = await r.json()
                return rec if rec.get("metadata", {}).get("codec") else None

            rec = await poll(record)
            assert rec["metadata"]["codec"] == "G722" and rec["metadata"]["trunk"] == "carrier"
            async with http.post(f"{url}/{call_id}/end") as r:
                assert r.status < 300, await r.text()

            async def ended() -> dict[str, Any] | None:
                async with http.get(f"{url}/{call_id}") as r:
                    rec = await r.json()
                return rec if rec.get("ended_at") else None

            await poll(ended)  # its record written before the daemon stops
    finally:
        await daemon.stop()
        transport.close()
        rtp.close()
