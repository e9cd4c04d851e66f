"""SIGHUP's config re-read reaches the parts that hold settings: webhooks, WebRTC, Twilio,
the API's limits and SIP (trunks, codecs, ports)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp

from tests.daemons import start_daemon, time_agent
from tests.interop.sipd import free_udp_tcp_port
from voxd.api.keys_cli import create_key


async def test_reload_applies_webhook_webrtc_and_twilio_settings(tmp_path: Path) -> None:
    d = await start_daemon(tmp_path, {"fakey": time_agent()})
    try:
        assert d.webhooks is not None and d.webhooks.cfg.retry_schedule_s != [1.0, 2.0]
        new = d.cfg.model_copy(update={
            "webhooks": d.cfg.webhooks.model_copy(update={"retry_schedule_s": [1.0, 2.0], "concurrency_per_endpoint": 2}),
            "webrtc": d.cfg.webrtc.model_validate({"ice_servers": [{"urls": "stun:127.0.0.1:3478"}]}),
        })
        d.config_loader = lambda: new
        await d.reload_now()
        assert d.webhooks.cfg.retry_schedule_s == [1.0, 2.0]
        assert d.webhooks.worker.cfg.concurrency_per_endpoint == 2
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{d.http_port}/webrtc/ice") as r:
            assert await r.json() == {"ice_servers": [{"urls": "stun:127.0.0.1:3478"}]}
    finally:
        await d.stop()


async def test_reload_applies_api_limits(tmp_path: Path) -> None:
    d = await start_daemon(tmp_path, {"fakey": time_agent()})
    url = f"http://127.0.0.1:{d.http_port}/api/v1/agents"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as r:  # no key: the per-IP bucket applies
                assert r.status == 401 and '"ip";q=60' in r.headers["RateLimit-Policy"]
            d.config_loader = lambda: d.cfg.model_copy(update={"api": d.cfg.api.model_copy(update={"per_ip_per_minute": 2})})
            await d.reload_now()
            statuses = []
            for _ in range(3):
                async with http.get(url) as r:
                    statuses.append(r.status)
                    policy = r.headers.get("RateLimit-Policy", "")
            assert statuses == [401, 401, 429] and '"ip";q=2' in policy
    finally:
        await d.stop()


def invite(port: int, codec_pt: int, branch: str) -> bytes:
    sdp = (f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           f"m=audio 40000 RTP/AVP {codec_pt}\r\n").encode()
    head = (f"INVITE sip:2000@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port + 1};branch=z9hG4bK{branch};rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:test@127.0.0.1>;tag=t1\r\nTo: <sip:2000@127.0.0.1>\r\n"
            f"Call-ID: {branch}@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:test@127.0.0.1>\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n")
    return head.encode() + sdp


async def final_status(sock: socket.socket, port: int, msg: bytes) -> int:
    """Send an INVITE, ACK nothing: the first final (>= 200) response's status code."""
    sock.sendto(msg, ("127.0.0.1", port))
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(5):
        while True:
            data = await loop.sock_recv(sock, 65535)
            code = int(data.split(b" ", 2)[1])
            if code >= 200:
                return code


async def test_reload_applies_sip_settings_and_rebinds_rtp_ports(tmp_path: Path) -> None:
    """Trunks and codecs apply to the next INVITE; a new RTP port range re-binds (no calls up)."""
    port = free_udp_tcp_port()
    d = await start_daemon(tmp_path, {"fakey": time_agent()}, default_agent="fakey",
                           sip={"port": port, "rtp_port_min": 32000, "rtp_port_max": 32100, "ring_ms": 0},
                           drain_timeout_s=0)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    try:
        assert d.sip is not None
        trunk = {"name": "carrier", "allow": ["10.0.0.0/8"]}
        d.config_loader = lambda: d.cfg.model_copy(update={"sip": d.cfg.sip.model_validate(
            {**d.cfg.sip.model_dump(), "trunks": [trunk], "max_calls": 7})})
        await d.reload_now()
        assert d.calls is not None and d.calls.max_calls == 7 and d.sip.cfg.max_calls == 7
        assert await final_status(sock, port, invite(port, 0, "a1")) == 403  # loopback is no trunk's source
        d.config_loader = lambda: d.cfg.model_copy(update={"sip": d.cfg.sip.model_validate(
            {**d.cfg.sip.model_dump(), "trunks": [], "codecs": ["PCMU"]})})
        await d.reload_now()
        assert await final_status(sock, port, invite(port, 8, "a2")) == 488  # PCMA is no longer offered
        endpoint = d.sip
        d.config_loader = lambda: d.cfg.model_copy(update={"sip": d.cfg.sip.model_copy(
            update={"rtp_port_min": 32200, "rtp_port_max": 32300})})
        await d.reload_now()
        assert d.sip is not endpoint and d.sip.port == port and d.sip.cfg.codecs == ["PCMU"]
        rtp_sock, rtp_port = d.sip.ports.bind("127.0.0.1")
        rtp_sock.close()
        d.sip.ports.release(rtp_port)
        assert 32200 <= rtp_port < 32300
        # the control API places calls through the re-bound endpoint, not the stopped one
        key = await create_key(d.db, "ops", ["calls:write"])
        callee = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        callee.bind(("127.0.0.1", 0))
        callee.setblocking(False)
        try:
            to = f"sip:bob@127.0.0.1:{callee.getsockname()[1]}"
            async with aiohttp.ClientSession() as http, http.post(
                    f"http://127.0.0.1:{d.http_port}/api/v1/calls", json={"agent": "fakey", "to": to},
                    headers={"Authorization": f"Bearer {key}"}) as r:
                assert r.status in (200, 201, 202), await r.text()
            async with asyncio.timeout(5):
                data = await asyncio.get_running_loop().sock_recv(callee, 65535)
            assert data.startswith(b"INVITE sip:bob@127.0.0.1") and b"a=rtcp-mux" in data
        finally:
            callee.close()
    finally:
        sock.close()
        await d.stop()
