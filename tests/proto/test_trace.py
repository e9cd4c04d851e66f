"""SIP traces: Call-ID extraction, credential masking, text rendering, and pcap files that
tshark (a third-party reader) decodes back into the same SIP messages."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from voxd.proto.pcap import UdpPacket, write_pcap
from voxd.proto.sip.trace import TraceEntry, call_id_of, mask_credentials, render_pcap, render_text

DATA = Path(__file__).parents[1] / "data" / "sip"
AUTHED = (b'INVITE sip:2000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKa\r\n'
          b'i: abc@h \r\nAuthorization: Digest username="alice", realm="voxd", nonce="n1", uri="sip:2000@127.0.0.1",'
          b' response="6629fae49393a05397450978507c4ef1", algorithm=MD5\r\nproxy-authorization: Digest '
          b'username="alice", response=0123abcd,\r\n cnonce="c"\r\nAuthorization: Basic YWxpY2U6cHc=\r\n'
          b'Content-Length: 17\r\n\r\nresponse="kept"\r\n')


def test_call_id_of_full_and_compact_forms():
    assert call_id_of((DATA / "sipp_invite.sip").read_bytes()) == "1-12301@127.0.0.1"
    assert call_id_of(AUTHED) == "abc@h"
    assert call_id_of(b"\r\n\r\n") is None and call_id_of(b"garbage") is None
    assert call_id_of(b"SIP/2.0 200 OK\r\nCall-Id:x\r\n\r\nCall-ID: body") == "x"


def test_credentials_masked_body_untouched():
    masked = mask_credentials(AUTHED)
    assert b"6629fae4" not in masked and b"0123abcd" not in masked and b"YWxpY2U6cHc=" not in masked
    assert masked.count(b'response="<masked>"') == 2 and b"Authorization: Basic <masked>" in masked
    assert b'username="alice"' in masked and b'nonce="n1"' in masked  # only the secret part goes
    assert masked.endswith(b'\r\n\r\nresponse="kept"\r\n')
    plain = (DATA / "sipp_invite.sip").read_bytes()
    assert mask_credentials(plain) is plain


def _entries() -> list[TraceEntry]:
    invite = (DATA / "sipp_invite.sip").read_bytes()
    ok = (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1\r\nFrom: <sip:a@b>;tag=1\r\n"
          b"To: <sip:c@d>;tag=2\r\nCall-ID: 1-12301@127.0.0.1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
    bye6 = ok.replace(b"SIP/2.0 200 OK", b"BYE sip:c@[::1]:5080 SIP/2.0").replace(b"1 INVITE", b"2 BYE")
    local, peer = ("127.0.0.1", 5080), ("127.0.0.1", 5061)
    return [TraceEntry(1764700000.25, "in", local, peer, "udp", invite),
            TraceEntry(1764700000.5, "out", local, peer, "udp", ok),
            TraceEntry(1764700001.0, "in", ("::1", 5080), ("::1", 5061), "tcp", bye6)]


def test_text_rendering():
    text = render_text(_entries())
    first = text.splitlines()[0]
    assert first == "2025-12-02T18:26:40.250000Z in  127.0.0.1:5080 <- 127.0.0.1:5061 UDP"
    assert "\n2025-12-02T18:26:40.500000Z out 127.0.0.1:5080 -> 127.0.0.1:5061 UDP\nSIP/2.0 200 OK\n" in text
    assert "[::1]:5080 <- [::1]:5061 TCP\nBYE sip:c@[::1]:5080 SIP/2.0" in text
    assert "\r" not in text


def test_entry_json_round_trip_keeps_bytes():
    e = TraceEntry(1.5, "out", ("127.0.0.1", 1), ("10.0.0.1", 2), "udp", bytes(range(256)))
    assert TraceEntry.from_json(e.as_json()) == e


def test_pcap_headers_by_hand():
    blob = write_pcap([UdpPacket(2.5, ("10.0.0.1", 5060), ("10.0.0.2", 5080), b"x")])
    assert blob[:4] == bytes.fromhex("d4c3b2a1") and len(blob) == 24 + 16 + 14 + 20 + 8 + 1
    assert blob[24:32] == (2).to_bytes(4, "little") + (500000).to_bytes(4, "little")


@pytest.mark.skipif(not shutil.which("tshark"), reason="tshark not installed")
def test_tshark_reads_the_pcap_as_sip(tmp_path: Path):
    path = tmp_path / "trace.pcap"
    path.write_bytes(render_pcap(_entries()))
    fields = ["frame.time_epoch", "ip.src", "ipv6.src", "udp.srcport", "udp.dstport", "sip.Method",
              "sip.Status-Code", "sip.Call-ID", "udp.checksum.status", "ip.checksum.status"]
    out = subprocess.run(
        ["tshark", "-r", str(path), "-o", "udp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE", "-T", "fields",
         "-E", "separator=|", *[x for f in fields for x in ("-e", f)]],
        capture_output=True, text=True, check=True, timeout=60).stdout
    rows = [line.split("|") for line in out.strip().splitlines()]
    assert [(r[1] or r[2], r[3], r[4], r[5], r[6], r[7]) for r in rows] == [
        ("127.0.0.1", "5061", "5080", "INVITE", "", "1-12301@127.0.0.1"),
        ("127.0.0.1", "5080", "5061", "", "200", "1-12301@127.0.0.1"),
        ("::1", "5061", "5080", "BYE", "", "1-12301@127.0.0.1"),
    ]
    assert [round(float(r[0]), 2) for r in rows] == [1764700000.25, 1764700000.5, 1764700001.0]
    assert [r[8] for r in rows] == ["1", "1", "1"]  # UDP checksums verified good (IPv4 and IPv6)
    assert [r[9] for r in rows[:2]] == ["1", "1"]  # the IPv4 header checksums are right


def test_sdes_master_keys_never_reach_a_trace():
    key = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"
    sdp = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           "m=audio 4000 RTP/SAVP 0\r\n"
           f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}|2^20|1:32\r\n")
    msg = (f"INVITE sip:bot@127.0.0.1 SIP/2.0\r\nCall-ID: abc\r\nContent-Type: application/sdp\r\n"
           f"Content-Length: {len(sdp)}\r\n\r\n{sdp}").encode()
    masked = mask_credentials(msg)
    assert key.encode() not in masked
    assert b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:***" in masked
