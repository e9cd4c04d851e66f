"""Issue 12, findings 4, 5 and 8 through the real SIP and RTP sockets of a daemon: media
only from the caller, a call whose media stops ends with a BYE, and SIP-over-TCP
connections bounded per source and in idleness.

Loopback is a /8 on Linux: the caller is 127.0.0.1, the attacker 127.0.0.3."""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

from tests.daemons import start_daemon, talker_agent
from tests.interop.sipd import free_udp_tcp_port
from voxd.store.calls import CallRepository

CALLER, ATTACKER = "127.0.0.1", "127.0.0.3"


def udp(host: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    s.setblocking(False)
    return s


def invite(sip_port: int, sip_sock: socket.socket, rtp_port: int, call_id: str) -> bytes:
    me = sip_sock.getsockname()
    sdp = (f"v=0\r\no=- 1 1 IN IP4 {CALLER}\r\ns=-\r\nc=IN IP4 {CALLER}\r\nt=0 0\r\n"
           f"m=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n").encode()
    head = (f"INVITE sip:2000@127.0.0.1:{sip_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {me[0]}:{me[1]};branch=z9hG4bK{call_id};rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:caller@127.0.0.1>;tag=c1\r\nTo: <sip:2000@127.0.0.1>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{me[0]}:{me[1]}>\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n")
    return head.encode() + sdp


def ack(sip_port: int, sip_sock: socket.socket, ok: bytes, call_id: str) -> bytes:
    me = sip_sock.getsockname()
    to = re.search(rb"^To: (.*)$", ok, re.M | re.I)
    assert to is not None
    return (f"ACK sip:2000@127.0.0.1:{sip_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {me[0]}:{me[1]};branch=z9hG4bK{call_id}ack;rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:caller@127.0.0.1>;tag=c1\r\n").encode() + \
        b"To: " + to.group(1).strip() + b"\r\n" + \
        f"Call-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n".encode()


async def recv_until(sock: socket.socket, pred: Callable[[bytes], bool], within: float = 5.0) -> bytes:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(within):
        while True:
            data = await loop.sock_recv(sock, 65535)
            if pred(data):
                return data


def rtp(seq: int, ssrc: int = 0x1234) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, seq * 160, ssrc) + b"\xff" * 160


async def answered_call(sip_port: int, sip: socket.socket, caller_rtp: socket.socket, call_id: str) -> int:
    """Place a call; the daemon's RTP port from its 200 OK."""
    sip.sendto(invite(sip_port, sip, caller_rtp.getsockname()[1], call_id), ("127.0.0.1", sip_port))
    ok = await recv_until(sip, lambda d: d.startswith(b"SIP/2.0 200"))
    sip.sendto(ack(sip_port, sip, ok, call_id), ("127.0.0.1", sip_port))
    m = re.search(rb"m=audio (\d+)", ok)
    assert m is not None
    return int(m.group(1))


async def count_packets(sock: socket.socket, seconds: float) -> int:
    loop = asyncio.get_running_loop()
    n, end = 0, loop.time() + seconds
    while (left := end - loop.time()) > 0:
        try:
            async with asyncio.timeout(left):
                await loop.sock_recv(sock, 2048)
            n += 1
        except TimeoutError:
            break
    return n


async def test_rtp_from_an_unsignalled_host_never_latches_the_stream(tmp_path: Path) -> None:
    """Finding 4: an attacker spraying the port before the caller speaks got the bot's audio."""
    port = free_udp_tcp_port()
    d = await start_daemon(tmp_path, {"talker": talker_agent()}, default_agent="talker", drain_timeout_s=0,
                           sip={"port": port, "allow_any": True, "rtp_port_min": 33000, "rtp_port_max": 33100})
    sip, caller, attacker = udp(CALLER), udp(CALLER), udp(ATTACKER)
    try:
        media = await answered_call(port, sip, caller, "hijack-1")
        for i in range(25):  # the attacker is first, and keeps at it
            attacker.sendto(rtp(i, ssrc=0xBAD), ("127.0.0.1", media))
        await asyncio.sleep(0.1)
        for i in range(10):
            caller.sendto(rtp(100 + i), ("127.0.0.1", media))
        attacker_got, caller_got = await asyncio.gather(count_packets(attacker, 1.0), count_packets(caller, 1.0))
        assert attacker_got == 0
        assert caller_got >= 40  # 20 ms packets of the greeting, to the caller only
        assert d.sip is not None
        (call,) = d.sip.sip_calls.values()
        assert call.rtp is not None
        assert call.rtp.counters.wrong_source == 25
        assert call.rtp.remote == caller.getsockname()
        # once latched, another port of the same host is not the caller either
        stray = udp(CALLER)
        stray.sendto(rtp(500), ("127.0.0.1", media))
        await asyncio.sleep(0.1)
        assert call.rtp.counters.wrong_source == 26
        stray.close()
    finally:
        for s in (sip, caller, attacker):
            s.close()
        await d.stop()


async def test_a_call_whose_media_stops_ends_with_a_bye(tmp_path: Path) -> None:
    """Finding 8: a call whose BYE was lost lived until max_call_s (3,600 s)."""
    port = free_udp_tcp_port()
    d = await start_daemon(tmp_path, {"talker": talker_agent()}, default_agent="talker", drain_timeout_s=0,
                           sip={"port": port, "allow_any": True, "rtp_timeout_s": 2,
                                "rtp_port_min": 33200, "rtp_port_max": 33300})
    sip, caller = udp(CALLER), udp(CALLER)
    try:
        media = await answered_call(port, sip, caller, "silent-1")
        assert d.sip is not None and d.calls is not None
        (call,) = d.sip.sip_calls.values()
        assert call.session is not None
        call_id = call.session.record.id
        started = time.monotonic()
        for i in range(5):
            caller.sendto(rtp(i), ("127.0.0.1", media))
            await asyncio.sleep(0.02)
        bye = await recv_until(sip, lambda b: b.startswith(b"BYE "), within=6)
        waited = time.monotonic() - started
        assert 1.5 <= waited <= 4.5, waited
        assert b"Call-ID: silent-1" in bye
        async with asyncio.timeout(3):
            await call.session.ended.wait()
        await d.calls.flush()
        rec = await CallRepository(d.db).get(call_id)
        assert rec is not None and rec["end_reason"] == "media_timeout" and rec["ended_by"] == "system"
    finally:
        sip.close()
        caller.close()
        await d.stop()


async def _open(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(host, 0))


async def _is_closed(reader: asyncio.StreamReader, within: float) -> bool:
    try:
        async with asyncio.timeout(within):
            return await reader.read(1) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


async def test_sip_tcp_connections_are_capped_per_source_and_closed_when_idle(tmp_path: Path) -> None:
    """Finding 5: 1,100 idle connections from one address filled the descriptor table."""
    port = free_udp_tcp_port()
    d = await start_daemon(tmp_path, {"talker": talker_agent()}, default_agent="talker", drain_timeout_s=0,
                           sip={"port": port, "allow_any": True, "tcp_max_per_source": 5, "tcp_idle_s": 1.5,
                                "rtp_port_min": 33400, "rtp_port_max": 33500})
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for _ in range(8):
            conns.append(await _open(ATTACKER, port))
        closed = await asyncio.gather(*(_is_closed(r, 0.5) for r, _ in conns))
        assert closed.count(True) == 3 and closed[:5] == [False] * 5, closed
        # another source still gets in while that one is at its cap
        other = await _open(CALLER, port)
        conns.append(other)
        assert not await _is_closed(other[0], 0.3)
        assert d.sip is not None and d.sip.tcp_peers.refused == 3
        # a connection that keeps alive (RFC 5626 CRLF) stays; the silent ones are closed
        keep = conns[0]
        for _ in range(8):
            keep[1].write(b"\r\n\r\n")
            await keep[1].drain()
            await asyncio.sleep(0.25)
        silent = await asyncio.gather(*(_is_closed(r, 1.0) for r, _ in conns[1:5]))
        assert silent == [True] * 4
        assert not await _is_closed(keep[0], 0.1)
        assert d.sip.tcp_peers.idle_closed >= 4
    finally:
        for _, w in conns:
            w.close()
        await d.stop()
