"""SRTP on SIP calls through a daemon's real SIP and RTP sockets: a caller offering
RTP/SAVP with SDES keys gets an SRTP answer; everything the daemon sends (RTP, and the
RTCP BYE at the end) is SRTP/SRTCP that the caller's own libsrtp context authenticates
and decrypts, never cleartext; the caller's SRTP reaches the call; a forged packet from
the caller's host is dropped and does not latch the stream. Under ``srtp: required``
a plain offer gets 488; under ``off`` an SRTP-only offer does."""

from __future__ import annotations

import asyncio
import re
import socket
import struct
from pathlib import Path

from tests.daemons import start_daemon, talker_agent
from tests.interop.sipd import free_udp_tcp_port
from tests.security.test_media_sources import ack, recv_until, udp
from voxd.net.srtp import SrtpContext, SrtpError
from voxd.proto.rtp import RtpPacket, is_rtcp
from voxd.proto.sdes import CryptoAttribute, new_crypto
from voxd.proto.sdp import SessionDescription

CALLER = "127.0.0.1"
SUITE = "AES_CM_128_HMAC_SHA1_80"


def invite(sip_port: int, sip_sock: socket.socket, sdp: bytes, call_id: str) -> bytes:
    me = sip_sock.getsockname()
    head = (f"INVITE sip:2000@127.0.0.1:{sip_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {me[0]}:{me[1]};branch=z9hG4bK{call_id};rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:caller@127.0.0.1>;tag=c1\r\nTo: <sip:2000@127.0.0.1>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{me[0]}:{me[1]}>\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n")
    return head.encode() + sdp


def offer(rtp_port: int, proto: str, *cryptos: CryptoAttribute) -> bytes:
    lines = [f"v=0\r\no=- 1 1 IN IP4 {CALLER}\r\ns=-\r\nc=IN IP4 {CALLER}\r\nt=0 0\r\n"
             f"m=audio {rtp_port} {proto} 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=rtcp-mux\r\n"]
    lines += [f"a=crypto:{c.serialize()}\r\n" for c in cryptos]
    return "".join(lines).encode()


def bye(sip_port: int, sip_sock: socket.socket, ok: bytes, call_id: str) -> bytes:
    me = sip_sock.getsockname()
    to = re.search(rb"^To: (.*)$", ok, re.M | re.I)
    assert to is not None
    return (f"BYE sip:2000@127.0.0.1:{sip_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {me[0]}:{me[1]};branch=z9hG4bK{call_id}bye;rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:caller@127.0.0.1>;tag=c1\r\n").encode() + \
        b"To: " + to.group(1).strip() + b"\r\n" + \
        f"Call-ID: {call_id}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n".encode()


def reinvite(sip_port: int, sip_sock: socket.socket, ok: bytes, sdp: bytes, call_id: str) -> bytes:
    me = sip_sock.getsockname()
    to = re.search(rb"^To: (.*)$", ok, re.M | re.I)
    assert to is not None
    head = (f"INVITE sip:2000@127.0.0.1:{sip_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {me[0]}:{me[1]};branch=z9hG4bK{call_id}re;rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:caller@127.0.0.1>;tag=c1\r\n").encode() + \
        b"To: " + to.group(1).strip() + b"\r\n" + \
        (f"Call-ID: {call_id}\r\nCSeq: 3 INVITE\r\nContact: <sip:caller@{me[0]}:{me[1]}>\r\n"
         f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n").encode()
    return head + sdp


def rtp(seq: int, payload: bytes = b"\x55" * 160) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, seq * 160, 0x1234) + payload


async def drain(sock: socket.socket, seconds: float) -> list[bytes]:
    loop = asyncio.get_running_loop()
    out: list[bytes] = []
    end = loop.time() + seconds
    while (left := end - loop.time()) > 0:
        try:
            async with asyncio.timeout(left):
                out.append(await loop.sock_recv(sock, 2048))
        except TimeoutError:
            break
    return out


async def test_an_sdes_call_is_srtp_both_ways_and_never_cleartext(tmp_path: Path) -> None:
    port = free_udp_tcp_port()
    d = await start_daemon(tmp_path, {"talker": talker_agent()}, default_agent="talker", drain_timeout_s=0,
                           sip={"port": port, "allow_any": True, "srtp": "optional",
                                "rtp_port_min": 33400, "rtp_port_max": 33500})
    sip, caller, forger = udp(CALLER), udp(CALLER), udp(CALLER)
    ours = new_crypto(3, SUITE)
    try:
        sip.sendto(invite(port, sip, offer(caller.getsockname()[1], "RTP/SAVP", new_crypto(2, "AES_CM_128_HMAC_SHA1_32"),
                                           ours), "srtp-1"), ("127.0.0.1", port))
        ok = await recv_until(sip, lambda b: b.startswith(b"SIP/2.0 200"))
        sip.sendto(ack(port, sip, ok, "srtp-1"), ("127.0.0.1", port))
        answer = SessionDescription.parse(ok.split(b"\r\n\r\n", 1)[1])
        media = answer.audio()
        assert media is not None and media.proto == "RTP/SAVP"
        (line,) = media.attribute_values("crypto")
        theirs = CryptoAttribute.parse(line)
        assert (theirs.tag, theirs.suite) == (3, SUITE) and theirs.key_salt != ours.key_salt
        ctx = SrtpContext(SUITE, ours.key_salt, theirs.key_salt)
        # a forged packet first, from another port of the caller's host: dropped, no latch
        forger.sendto(SrtpContext(SUITE, new_crypto().key_salt, theirs.key_salt).protect(rtp(1)),
                      ("127.0.0.1", media.port))
        await asyncio.sleep(0.1)
        assert d.sip is not None
        (call,) = d.sip.sip_calls.values()
        assert call.rtp is not None and call.rtp.srtp is not None
        assert call.rtp.counters.srtp_dropped == 1 and not call.rtp.guard.latched
        for i in range(10):
            caller.sendto(ctx.protect(rtp(10 + i)), ("127.0.0.1", media.port))
        got = await drain(caller, 1.0)
        assert len(got) >= 30, len(got)
        assert await drain(forger, 0.2) == []  # the stream latched to the caller, not the forger
        assert call.rtp.counters.received == 10 and call.rtp.counters.srtp_dropped == 1
        assert call.session is not None and call.session.record.metadata["srtp"] == SUITE
        cleartext = [ctx.unprotect(p) for p in got if not is_rtcp(p)]
        for raw, clear in zip(got, cleartext, strict=False):
            assert len(raw) == len(clear) + 10 and raw[12:len(clear)] != clear[12:]
        assert {RtpPacket.parse(c).payload_type for c in cleartext} == {0}
        # a re-INVITE with a new key: answered with the key voxd already sends with, and the
        # caller's media under the new key is taken; a plain re-offer is refused (488)
        fresh = new_crypto(3, SUITE)
        sip.sendto(reinvite(port, sip, ok, offer(caller.getsockname()[1], "RTP/SAVP", fresh), "srtp-1"),
                   ("127.0.0.1", port))
        again = await recv_until(sip, lambda b: b.startswith(b"SIP/2.0 200") and b"3 INVITE" in b)
        sip.sendto(ack(port, sip, again, "srtp-1").replace(b"CSeq: 1 ACK", b"CSeq: 3 ACK"), ("127.0.0.1", port))
        assert b"a=crypto:" + theirs.serialize().encode() in again  # same key, same tag
        ctx = SrtpContext(SUITE, fresh.key_salt, theirs.key_salt)
        for i in range(5):
            caller.sendto(ctx.protect(rtp(40 + i)), ("127.0.0.1", media.port))
        await drain(caller, 0.3)
        assert call.rtp.counters.received == 15 and call.rtp.counters.srtp_dropped == 1
        sip.sendto(reinvite(port, sip, ok, offer(caller.getsockname()[1], "RTP/AVP"), "srtp-1").replace(
            b"CSeq: 3 INVITE", b"CSeq: 4 INVITE").replace(b"bKsrtp-1re;", b"bKsrtp-1re2;"), ("127.0.0.1", port))
        assert (await recv_until(sip, lambda b: b"4 INVITE" in b and not b.startswith(b"SIP/2.0 100"))
                ).startswith(b"SIP/2.0 488")
        got = await drain(caller, 0.5)
        assert got and all(len(p) > 172 for p in got if not is_rtcp(p))  # still SRTP (160 + 12 + 10)
        assert [ctx.unprotect(p) for p in got if not is_rtcp(p)]
        # the caller hangs up: the daemon's RTCP BYE comes as SRTCP (rtcp-mux: same port)
        sip.sendto(bye(port, sip, ok, "srtp-1").replace(b"CSeq: 2 BYE", b"CSeq: 5 BYE"), ("127.0.0.1", port))
        tail = await drain(caller, 1.0)
        rtcp = [p for p in tail if is_rtcp(p)]
        assert rtcp, "no RTCP at the end of the call"
        cname = call.rtp.rtcp.cname.encode()
        assert all(cname not in p for p in rtcp)  # the CNAME (and the rest) is encrypted
        assert any(cname in ctx.unprotect_rtcp(p) for p in rtcp)
        try:
            SrtpContext(SUITE, ours.key_salt, new_crypto().key_salt).unprotect_rtcp(rtcp[0])
            raise AssertionError("SRTCP authenticated under another key")
        except SrtpError:
            pass
    finally:
        for s in (sip, caller, forger):
            s.close()
        await d.stop()


async def test_policies_refuse_with_488(tmp_path: Path) -> None:
    port = free_udp_tcp_port()
    d = await start_daemon(tmp_path, {"talker": talker_agent()}, default_agent="talker", drain_timeout_s=0,
                           sip={"port": port, "allow_any": True, "srtp": "required",
                                "rtp_port_min": 33600, "rtp_port_max": 33700})
    sip, caller = udp(CALLER), udp(CALLER)
    try:
        # required: a plain offer (or best-effort a=crypto with an unknown suite) is refused
        sip.sendto(invite(port, sip, offer(caller.getsockname()[1], "RTP/AVP"), "plain-1"), ("127.0.0.1", port))
        assert (await recv_until(sip, lambda b: b.startswith(b"SIP/2.0 4"))).startswith(b"SIP/2.0 488")
        # required, best-effort SRTP (RTP/AVP + a=crypto) is answered encrypted, on RTP/AVP
        sip.sendto(invite(port, sip, offer(caller.getsockname()[1], "RTP/AVP", new_crypto()), "be-1"),
                   ("127.0.0.1", port))
        ok = await recv_until(sip, lambda b: b.startswith(b"SIP/2.0 200"))
        assert b"m=audio " in ok and b" RTP/AVP " in ok and b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" in ok
        sip.sendto(ack(port, sip, ok, "be-1"), ("127.0.0.1", port))
        sip.sendto(bye(port, sip, ok, "be-1"), ("127.0.0.1", port))
        await recv_until(sip, lambda b: b.startswith(b"SIP/2.0 200") and b"BYE" in b.split(b"CSeq:")[1][:20])
        assert d.sip is not None and d.calls is not None
        assert d.sip.srtp_policy((CALLER, 5060)) == "required"
    finally:
        await d.stop()
    port = free_udp_tcp_port()
    (tmp_path / "off").mkdir()
    d = await start_daemon(tmp_path / "off", {"talker": talker_agent()}, default_agent="talker", drain_timeout_s=0,
                           sip={"port": port, "srtp": "required", "rtp_port_min": 33600, "rtp_port_max": 33700,
                                "trunks": [{"name": "lo", "allow": ["127.0.0.0/8"], "srtp": "off"}]})
    try:
        # the trunk's policy wins over sip.srtp: off refuses an SRTP-only offer
        sip.sendto(invite(port, sip, offer(caller.getsockname()[1], "RTP/SAVP", new_crypto()), "savp-1"),
                   ("127.0.0.1", port))
        assert (await recv_until(sip, lambda b: b.startswith(b"SIP/2.0 4"))).startswith(b"SIP/2.0 488")
    finally:
        for s in (sip, caller):
            s.close()
        await d.stop()
