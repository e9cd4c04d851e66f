#!/usr/bin/env python3
"""Fuzz the sans-IO wire decoders with hypothesis: only typed parse errors may escape.

Targets: SIP datagram parser, SIP stream framer, the UserAgent (which must never
raise), SDP parse + answer, RTP, RTCP, RFC 4733 payloads + receiver, SIP INFO
bodies and digest header parsing, the registration client fed registrar responses
(200 with Contact expires, 401/407 challenges, 423 Min-Expires, 503 Retry-After),
answering challenges on any request, dialled-number formatting, and SDES a=crypto
lines (RFC 4568) with the srtp policy answer and the SDP offer/answer calls use
(voxd.proto.secure_sdp), session-timer headers (RFC 4028 Session-Expires/Min-SE, the UAS
negotiation, in an INVITE and a refresh UPDATE), RSeq/RAck (RFC 3262, in a reliable 1xx
and a PRACK), and SIP traces (Call-ID, masking, pcap). Inputs are random bytes and structured
mutations (flip, truncate, splice, duplicate, insert tokens) of golden captures
from tests/data/. Prints how many inputs ran; exits 1 on any other exception.

    /work/venv/bin/python scripts/fuzz_sip.py [--count 100000] [--seed 0] [--only session-timer,rseq+rack]
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voxd.proto import secure_sdp  # noqa: E402
from voxd.proto.negotiate import SdpNegotiationError, answer  # noqa: E402
from voxd.proto.rfc4733 import DtmfReceiver, TelephoneEvent  # noqa: E402
from voxd.proto.rtcp import CNAME, Bye, SdesChunk, SourceDescription, parse_rtcp  # noqa: E402
from voxd.proto.rtp import RtpPacket, RtpParseError  # noqa: E402
from voxd.proto.sdes import CryptoAttribute, SdesError, answer_keys, mask_keys  # noqa: E402
from voxd.proto.sdp import SdpParseError, SessionDescription  # noqa: E402
from voxd.proto.sip import (  # noqa: E402
    DigestServer,
    SipParseError,
    StreamParser,
    UAConfig,
    UserAgent,
    bad_request,
    parse_info_dtmf,
    parse_message,
)
from voxd.proto.sip import agent as agent_module  # noqa: E402
from voxd.proto.sip.auth import Credentials, parse_auth_params  # noqa: E402
from voxd.proto.sip.challenge import retry_request  # noqa: E402
from voxd.proto.sip.events import IncomingCall  # noqa: E402
from voxd.proto.sip.headers import Headers  # noqa: E402
from voxd.proto.sip.message import SipRequest, SipResponse  # noqa: E402
from voxd.proto.sip.numbering import NumberError, format_number  # noqa: E402
from voxd.proto.sip.registration import Registration, RegistrationSpec  # noqa: E402
from voxd.proto.sip.reliable import parse_rack, parse_rseq  # noqa: E402
from voxd.proto.sip.replaces import Replaces, refer_to_with_replaces, replaces_in_refer_to  # noqa: E402
from voxd.proto.sip.session_timer import SessionExpires, TimerPolicy, negotiate_uas, parse_min_se  # noqa: E402
from voxd.proto.sip.trace import TraceEntry, call_id_of, mask_credentials, render_pcap  # noqa: E402
from voxd.proto.sip.uri import SipUri  # noqa: E402

DATA = ROOT / "tests" / "data"
TOKENS = [b"\r\n", b"\r\n\r\n", b";", b",", b":", b"<", b">", b'"', b"@", b" ", b"\t", b"=",
          b"\x00", b"\xff", b"Content-Length: 999999", b"l: 0", b"v: SIP/2.0/UDP [::1", b"%",
          b"sip:", b"tag=", b"m=audio 0 RTP/AVP", b"a=rtpmap:101 telephone-event/8000",
          b"c=IN IP4 0.0.0.0", b"CSeq: 4294967296 INVITE", b"To: <sip:x>;tag=", b"\r\n ",
          b"Authorization: Digest username=\"u\", nonce=", b"SIP/2.0 200 OK"]


def _load_rtp(path: Path) -> list[bytes]:
    blob, out, pos = path.read_bytes(), [], 0
    while pos + 2 <= len(blob):
        size = int.from_bytes(blob[pos : pos + 2], "big")
        out.append(blob[pos + 2 : pos + 2 + size])
        pos += 2 + size
    return out


def corpus() -> dict[str, list[bytes]]:
    sip = [p.read_bytes() for p in sorted((DATA / "sip").glob("*.sip"))]
    sip.append(b"SIP/2.0 180 Ringing\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\nf: <sip:a@b>;tag=1"
               b"\r\nt: <sip:c@d>;tag=2\r\ni: x\r\nCSeq: 1 INVITE\r\nl: 0\r\n\r\n")
    sdp = [m.split(b"\r\n\r\n", 1)[1] for m in sip if b"\r\n\r\nv=0" in m]
    rtp = [pkt for p in sorted((DATA / "rtp").glob("*.rtp")) for pkt in _load_rtp(p)]
    rtcp = [bytes.fromhex("80c8000600000001000000000000000000000000000000000000000000000000"),
            bytes.fromhex("81c90007000000020000000500000000000000000000000000000000000000000000"
                          "00000000")]
    # a compound report as voxd sends it at a call's end: SR + SDES CNAME + BYE with a reason
    rtcp.append(rtcp[0] + SourceDescription([SdesChunk(1, [(CNAME, b"voxd@127.0.0.1")])]).serialize()
                + Bye([1], "call ended").serialize())
    info = [b"Signal=5\r\nDuration=160\r\n", b"5", b"Signal=#\r\n"]
    head = (b"Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKreg;rport=5080\r\nFrom: <sip:a@c.example>;tag=1\r\n"
            b"To: <sip:a@c.example>;tag=r\r\nCall-ID: reg\r\nCSeq: 1 REGISTER\r\n")
    register = [
        b"SIP/2.0 200 OK\r\n" + head + b"Contact: <sip:a@127.0.0.1:5080>;expires=60, <sip:a@10.0.0.1>;expires=9\r\n"
        b"Service-Route: <sip:o@10.0.0.9;lr>\r\nPath: <sip:e@10.0.0.8;lr>\r\nExpires: 120\r\nl: 0\r\n\r\n",
        b"SIP/2.0 401 Unauthorized\r\n" + head + b'WWW-Authenticate: Digest realm="c", nonce="n1", '
        b'algorithm=SHA-256, qop="auth,auth-int", opaque="o", stale=true\r\nl: 0\r\n\r\n',
        b"SIP/2.0 407 Proxy Authentication Required\r\n" + head + b'Proxy-Authenticate: Digest realm="p", '
        b'nonce="n2", algorithm=MD5\r\nl: 0\r\n\r\n',
        b"SIP/2.0 423 Interval Too Brief\r\n" + head + b"Min-Expires: 3600\r\nl: 0\r\n\r\n",
        b"SIP/2.0 503 Service Unavailable\r\n" + head + b"Retry-After: 18 (maintenance);duration=60\r\nl: 0\r\n\r\n",
    ]
    crypto = [b"1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4",
              b"2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|1048576 KDR=1",
              b"3 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4;"
              b"inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|2^20|2:4 UNENCRYPTED_SRTCP"]
    timers = [b"1800", b"90;refresher=uac", b"600 ; refresher = UAS ; x=1", b"4294967296", b"0", b"x:90;refresher=uas",
              b"Min-SE: 120;lr", b"k: timer, 100rel", b"Require: timer"]
    rel = [b"1", b"4294967295", b"776656 1 INVITE", b"1 2147483647 invite", b"0 0 PRACK", b"RSeq: 12\r\nRAck: 12 1 INVITE"]
    replaces = [b"98732@sip.example.com;from-tag=r33th4x0r;to-tag=ff87ff", b"a@b;to-tag=1;from-tag=2;early-only",
                b"sip:carol@10.0.0.7:5060;transport=udp?Replaces=12345%40192.168.118.3%3Bto-tag%3D12345%3B"
                b"from-tag%3D5FFE-3994", b"sip:c@h?Subject=x&Replaces=a%3Bto-tag%3D1%3Bfrom-tag%3D2"]
    numbers = [b"+1 (555) 123-4567", b"0044 20 7946 0018", b"555.123.4567", b"*99#", b"+15551234567"]
    return {"sip": sip or [b"OPTIONS sip:x SIP/2.0\r\n\r\n"], "sdp": sdp or [b"v=0\r\n"],
            "rtp": rtp or [bytes(12)], "rtcp": rtcp, "info": info, "register": register, "numbers": numbers,
            "crypto": crypto, "timers": timers, "rel": rel, "replaces": replaces}


def mutate(data: bytes, seeds: list[bytes], rnd: random.Random) -> bytes:
    """A few structured mutations: flip, truncate, insert token, delete, duplicate, splice."""
    buf = bytearray(data)
    for _ in range(rnd.randint(0, 4)):
        op = rnd.randint(0, 5)
        pos = rnd.randint(0, len(buf))
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] = rnd.randint(0, 255)
        elif op == 1:
            del buf[pos:]
        elif op == 2:
            buf[pos:pos] = rnd.choice(TOKENS)
        elif op == 3:
            del buf[pos : pos + rnd.randint(1, 40)]
        elif op == 4:
            buf[pos:pos] = buf[pos : pos + rnd.randint(1, 60)]
        else:
            other = rnd.choice(seeds)
            buf[pos:] = other[rnd.randint(0, len(other)) :]
    return bytes(buf)


def mutated(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    """One in ten: hypothesis' own random bytes; otherwise a seed input mutated by a
    PRNG whose seed hypothesis draws (cheap per example, still reproducible)."""
    raw = st.binary(max_size=300)
    derived = st.builds(lambda data, n: mutate(data, seeds, random.Random(n)),
                        st.sampled_from(seeds), st.integers(0, 2**32 - 1))
    return st.one_of(derived, derived, derived, derived, derived, derived, derived, derived,
                     derived, raw)


def check_sip(data: bytes) -> None:
    try:
        msg = parse_message(data)
    except SipParseError as exc:
        resp = bad_request(exc)
        if resp is not None:
            parse_message(resp.serialize())  # our 400 must itself be valid
        return
    again = parse_message(msg.serialize())
    assert again.serialize() == msg.serialize(), "serialize is not a fixpoint"


def check_stream(data: bytes) -> None:
    parser = StreamParser()
    try:
        for i in range(0, len(data), 17):
            parser.feed(data[i : i + 17])
    except SipParseError:
        pass


_SERVER = DigestServer("fuzz", {"u": "p"}, secret=b"k" * 32)
_INVITES = [p.read_bytes() for p in sorted((DATA / "sip").glob("*_invite.sip"))]


def check_agent(data: bytes) -> None:
    """The UserAgent must never raise. Calls from the captured INVITEs are set up
    first (answered with the To-tag the captured ACK/BYE/INFO carry) so mutated
    in-dialog requests reach the dialog code, not only the 481 path."""
    ua = UserAgent(UAConfig("127.0.0.1", 5060), auth=lambda src, req: _SERVER
                   if data[:1] == b"A" else None)
    original_tag = getattr(agent_module, "new_tag")  # noqa: B009 - patched for the duration
    setattr(agent_module, "new_tag", lambda: "cap1")  # noqa: B010
    try:
        for n, invite in enumerate(_INVITES):
            for event in ua.receive(invite, ("127.0.0.1", 5062), 0.0):
                if isinstance(event, IncomingCall) and n % 2 == 0:
                    ua.answer(event.call_id, b"v=0\r\n", 0.0)
        for now in (0.0, 0.1):
            ua.receive(data, ("127.0.0.1", 5062), now)
    finally:
        setattr(agent_module, "new_tag", original_tag)  # noqa: B010
    ua.poll(100.0)
    ua.data_to_send()


def check_sdp(data: bytes) -> None:
    try:
        sdp = SessionDescription.parse(data)
    except SdpParseError:
        return
    again = SessionDescription.parse(sdp.serialize())
    assert again.serialize() == sdp.serialize(), "SDP serialize is not a fixpoint"
    try:
        neg = answer(sdp, "127.0.0.1", 30000)
    except SdpNegotiationError:
        return
    SessionDescription.parse(neg.sdp.serialize())


def check_rtp(data: bytes) -> None:
    try:
        pkt = RtpPacket.parse(data)
    except RtpParseError:
        return
    assert RtpPacket.parse(pkt.serialize()) == pkt, "RTP round trip"
    DtmfReceiver({pkt.payload_type}).feed(pkt)


def check_rtcp(data: bytes) -> None:
    try:
        parse_rtcp(data)
    except RtpParseError:
        pass


def check_events(data: bytes) -> None:
    rx = DtmfReceiver({101})
    for i in range(0, max(len(data) - 3, 1), 4):
        chunk = data[i : i + 4]
        try:
            TelephoneEvent.parse(chunk)
        except RtpParseError:
            pass
        rx.feed(RtpPacket(101, i, data[0] if data else 0, 1, payload=chunk))
    rx.flush()


def check_text(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    parse_info_dtmf("application/dtmf-relay", data)
    parse_info_dtmf("application/dtmf", data)
    parse_auth_params(text)


_REG_SPEC = RegistrationSpec("fuzz", "sip:127.0.0.1:5070", "sip:a@c.example", "a", Credentials("a", "p"),
                             transport="UDP")


def check_registration(data: bytes) -> None:
    """A registrar's response, whatever it holds, moves the client on or is ignored: it
    never raises. The response is made to match the REGISTER in flight (Call-ID, branch,
    CSeq method) so the mutated headers reach the expiry, challenge and backoff code."""
    try:
        msg = parse_message(data)
    except SipParseError:
        return
    if not isinstance(msg, SipResponse):
        return
    reg = Registration(_REG_SPEC, ("127.0.0.1", 5070), ("127.0.0.1", 5080), rand=lambda: 0.5)
    reg.start(0.0)
    (sent,) = reg.data_to_send()
    request = parse_message(sent)
    assert isinstance(request, SipRequest)
    msg.headers.set("Call-ID", reg.call_id)
    msg.headers.set("Via", request.headers.get("Via") or "")
    msg.headers.set("CSeq", request.headers.get("CSeq") or "")
    for now in (0.1, 0.2):
        reg.receive(msg, now)
        for out in reg.data_to_send():
            parse_message(out)  # what we send must parse
        deadline = reg.next_deadline()
        if deadline is not None:
            reg.poll(deadline)
    reg.unregister(5000.0)
    reg.data_to_send()
    if msg.status in (401, 407):
        retry = retry_request(request, msg, Credentials("a", "p"), 2)
        if retry is not None:
            parse_message(retry.serialize())


def check_number(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    for style in ("e164", "e164_no_plus", "as_dialled"):
        try:
            format_number(text, style=style, country_code="44", dial_prefix="9")
        except NumberError:
            pass


def check_crypto(data: bytes) -> None:
    """An a=crypto value parses (and round-trips) or raises SdesError; in an SDP offer it
    is answered, refused with SdesError, or skipped, under every policy."""
    text = data.decode("utf-8", "replace").replace("\r", " ").replace("\n", " ")
    try:
        attr = CryptoAttribute.parse(text)
    except SdesError:
        pass
    else:
        assert CryptoAttribute.parse(attr.serialize()) == attr, "a=crypto round trip"
    sdp = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           b"m=audio 4000 RTP/SAVP 0\r\na=crypto:" + text.encode() + b"\r\n")
    try:
        m = SessionDescription.parse(sdp).media[0]
    except (SdpParseError, IndexError):
        return
    for policy in ("off", "optional", "required"):
        try:
            answer_keys(m, policy)
        except SdesError:
            pass
    _check_secure_sdp(text)


_OFFER, _OURS = secure_sdp.offer("127.0.0.1", 30000, policy="optional")


def _check_secure_sdp(text: str) -> None:
    """The line in an offer (RTP/SAVP and best-effort RTP/AVP) and in an answer to our
    offer, through the SDP code calls use: answered with our own a=crypto (which must
    parse), or refused with SdpNegotiationError (488); masking leaves no key behind."""
    for proto in ("RTP/SAVP", "RTP/AVP"):
        sdp = (f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
               f"m=audio 4000 {proto} 0\r\na=crypto:{text}\r\n")
        try:
            offer = SessionDescription.parse(sdp)
        except SdpParseError:
            return
        for policy in ("off", "optional", "required"):
            try:
                neg = secure_sdp.answer(offer, "127.0.0.1", 30000, policy=policy)
            except SdpNegotiationError:
                continue
            out = SessionDescription.parse(neg.sdp.serialize())
            if neg.srtp is not None:
                (mine,) = out.media[0].attribute_values("crypto")
                assert CryptoAttribute.parse(mine) == neg.srtp.local, "our a=crypto does not round-trip"
            else:
                assert not out.media[0].attribute_values("crypto"), "a=crypto in a plain answer"
        try:
            secure_sdp.accept_answer(_OFFER, _OURS, offer, policy="optional")
        except SdpNegotiationError:
            pass
    masked = mask_keys(text)
    assert re.search(r"inline:[A-Za-z0-9+/=]", masked) is None, "a key survived masking"


_TIMER_INVITE = next((p.read_bytes() for p in sorted((DATA / "sip").glob("sipp_invite.sip"))), b"")


def _with_header(message: bytes, line: bytes) -> bytes:
    head, sep, body = message.partition(b"\r\n\r\n")
    return head + b"\r\n" + line + b"\r\n\r\n" + body if sep else message


def check_session_timer(data: bytes) -> None:
    """Session-Expires/Min-SE values parse (and round-trip) or raise SipParseError; the UAS
    negotiation answers or refuses them; in a real INVITE (then an UPDATE refresh in the
    dialog) the user agent answers 200/400/422 and never raises; its timers run."""
    text = data.decode("utf-8", "replace").replace("\r", " ").replace("\n", " ")
    try:
        se = SessionExpires.parse(text)
    except SipParseError:
        pass
    else:
        assert SessionExpires.parse(se.serialize()) == se, "Session-Expires round trip"
    try:
        parse_min_se(text)
    except SipParseError:
        pass
    for supported in ("", "timer"):
        headers = Headers([("Session-Expires", text), ("Min-SE", text[::-1]), ("Supported", supported)])
        try:
            neg = negotiate_uas(headers, TimerPolicy(expires=1800, min_se=90))
        except SipParseError:
            continue
        neg.headers()
    if not _TIMER_INVITE:
        return
    ua = UserAgent(UAConfig("127.0.0.1", 5060, session=TimerPolicy(expires=120, min_se=90)))
    invite = _with_header(_TIMER_INVITE, b"Supported: timer\r\nSession-Expires: " + data[:200].replace(b"\r", b" ")
                          .replace(b"\n", b" "))
    for event in ua.receive(invite, ("127.0.0.1", 5062), 0.0):
        if isinstance(event, IncomingCall):
            ua.answer(event.call_id, b"v=0\r\n", 0.0)
    for out, _ in ua.data_to_send():
        parse_message(out)
    for call in list(ua.calls.values()):  # ACKed, then refreshed by the peer, then left to expire
        call.state = call.state.CONFIRMED
        call.ok_retransmit = None
        update = (f"UPDATE sip:agent@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKu1\r\n"
                  f"From: {call.remote.serialize()}\r\nTo: {call.local.serialize()}\r\nCall-ID: {call.call_id}\r\n"
                  f"CSeq: 99 UPDATE\r\nContent-Length: 0\r\n").encode() + b"Session-Expires: " + data[:100].replace(
                      b"\r", b" ").replace(b"\n", b" ") + b"\r\n\r\n"
        ua.receive(update, ("127.0.0.1", 5062), 1.0)
    for now in (60.0, 200.0, 5000.0):
        ua.poll(now)
        ua.data_to_send()


def check_reliable(data: bytes) -> None:
    """RSeq/RAck values parse or raise SipParseError; a reliable 180 carrying them is
    PRACKed or ignored by the UAC, a PRACK carrying them is answered by the UAS."""
    text = data.decode("utf-8", "replace").replace("\r", " ").replace("\n", " ")
    for parse in (parse_rseq, parse_rack):
        try:
            parse(text)
        except SipParseError:
            pass
    uac = UserAgent(UAConfig("127.0.0.1", 5062))
    call_id = uac.invite("sip:agent@127.0.0.1:5060", 0.0, sdp=b"v=0\r\n", peer=("127.0.0.1", 5060))
    (invite_bytes, _), = uac.data_to_send()
    invite = parse_message(invite_bytes)
    assert isinstance(invite, SipRequest)
    uas = UserAgent(UAConfig("127.0.0.1", 5060))
    uas.receive(invite_bytes, ("127.0.0.1", 5062), 0.0)
    uas.data_to_send()
    try:
        uas.ring(call_id, 0.0)
    except KeyError:
        return
    for ringing, _ in uas.data_to_send():
        value = data[:120].replace(b"\r", b" ").replace(b"\n", b" ")
        mutated = ringing.replace(b"RSeq: ", b"RSeq: " + value + b" ", 1)
        uac.receive(mutated, ("127.0.0.1", 5060), 0.1)
        uac.receive(ringing, ("127.0.0.1", 5060), 0.2)
        for out, _ in uac.data_to_send():
            msg = parse_message(out)
            if isinstance(msg, SipRequest) and msg.method == "PRACK":
                bad = out.replace(b"RAck: ", b"RAck: " + value + b" ", 1)
                uas.receive(bad, ("127.0.0.1", 5062), 0.3)
                uas.receive(out, ("127.0.0.1", 5062), 0.4)
    for now in (1.0, 40.0):
        uas.poll(now)
        uac.poll(now)
    uas.data_to_send()
    uac.data_to_send()


def check_trace(data: bytes) -> None:
    """Any bytes: Call-ID extraction and masking never raise; a trace of them is a pcap."""
    call_id_of(data)
    masked = mask_credentials(data)
    assert b"uthorization" in data or masked == data
    render_pcap([TraceEntry(1.0, "in", ("127.0.0.1", 5080), ("::1", 5062), "udp", masked)])


def check_replaces(data: bytes) -> None:
    """A Replaces value or a Refer-To URI parses (and round-trips) or raises SipParseError."""
    text = data.decode("utf-8", "replace").replace("\r", " ").replace("\n", " ")
    try:
        value = Replaces.parse(text)
    except SipParseError:
        pass
    else:
        assert Replaces.parse(value.serialize()) == value
    try:
        uri = SipUri.parse(text)
        found = replaces_in_refer_to(uri)
    except SipParseError:
        return
    if found is not None:
        assert replaces_in_refer_to(refer_to_with_replaces(uri, found)) == found


def targets() -> list[tuple[str, Callable[[bytes], None], str]]:
    return [("sip", check_sip, "sip"), ("sip-stream", check_stream, "sip"),
            ("user-agent", check_agent, "sip"), ("sdp", check_sdp, "sdp"),
            ("rtp", check_rtp, "rtp"), ("rtcp", check_rtcp, "rtcp"),
            ("rfc4733", check_events, "rtp"), ("info+digest", check_text, "info"),
            ("registration", check_registration, "register"), ("numbers", check_number, "numbers"),
            ("sdes", check_crypto, "crypto"), ("session-timer", check_session_timer, "timers"),
            ("rseq+rack", check_reliable, "rel"), ("sip-trace", check_trace, "sip"),
            ("replaces", check_replaces, "replaces")]


def _make_test(check: Callable[[bytes], None], counter: list[int], seeds: list[bytes],
               examples: int, seed_value: int) -> Callable[[], None]:
    @seed(seed_value)
    @settings(max_examples=examples, deadline=None, database=None,
              phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
    @given(mutated(seeds))
    def fuzz(data: bytes) -> None:
        counter[0] += 1
        check(data)

    return fuzz


def run(count: int, seed_value: int = 0, *, quiet: bool = False, only: set[str] | None = None) -> dict[str, int]:
    """Run ``count`` inputs spread over the targets (or ``only`` these); raise on an
    unexpected exception."""
    seeds = corpus()
    plan = [t for t in targets() if only is None or t[0] in only]
    if not plan:
        raise SystemExit(f"no such target: {', '.join(sorted(only or ()))}")
    per_target, extra = divmod(count, len(plan))
    ran: dict[str, int] = {}
    for i, (name, check, kind) in enumerate(plan):
        counter = [0]
        examples = max(1, per_target + (1 if i < extra else 0))  # the remainder spread over the first ones
        fuzz = _make_test(check, counter, seeds[kind], examples, seed_value)
        started = time.monotonic()
        fuzz()
        ran[name] = counter[0]
        if not quiet:
            print(f"{name:12s} {counter[0]:7d} inputs  {time.monotonic() - started:6.1f} s",
                  flush=True)
    return ran


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="total inputs (all targets)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", help="run only these targets (comma-separated names, e.g. sdes)")
    args = parser.parse_args()
    started = time.monotonic()
    try:
        ran = run(args.count, args.seed, only=set(args.only.split(",")) if args.only else None)
    except Exception:
        traceback.print_exc()
        print("FAIL: an exception other than the typed parse errors escaped")
        return 1
    print(f"OK: {sum(ran.values())} inputs in {time.monotonic() - started:.1f} s, "
          "no unexpected exception")
    return 0


if __name__ == "__main__":
    sys.exit(main())
