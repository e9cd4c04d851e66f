"""RTCP from a call's RTP stream over real loopback sockets: reports reach the peer's
RTCP port (RTP port + 1, or the RTP port under rtcp-mux), parse, carry a reception
report for the peer's stream, and end with BYE; the peer's reports give loss and RTT.
tshark (third party) decodes what we send as RTCP SR + SDES + BYE."""

from __future__ import annotations

import asyncio
import shutil
import socket
import struct
import subprocess
from pathlib import Path

import pytest

from voxd.call.events import CallEnded
from voxd.core.calllog import CallRecord
from voxd.net.rtp import PortPool, RtpStream
from voxd.ops.metrics import Metrics
from voxd.proto import negotiate
from voxd.proto.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    SenderReport,
    SourceDescription,
    ntp_middle,
    ntp_timestamp,
    parse_rtcp,
)
from voxd.proto.rtp import RtpPacket, is_rtcp
from voxd.proto.sdp import SessionDescription

HOST = "127.0.0.1"
PEER_SSRC = 0x5EE12345


def peer_sockets() -> tuple[socket.socket, socket.socket]:
    """The far end: UDP sockets on an even port and the odd one above."""
    for _ in range(200):
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtp.bind((HOST, 0))
        port = rtp.getsockname()[1]
        if port % 2 == 0:
            rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                rtcp.bind((HOST, port + 1))
            except OSError:
                rtcp.close()
            else:
                rtp.setblocking(False)
                rtcp.setblocking(False)
                return rtp, rtcp
        rtp.close()
    raise OSError("no free port pair")


def offer_sdp(port: int, extra: str = "") -> SessionDescription:
    text = (f"v=0\r\no=- 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n{extra}")
    return SessionDescription.parse(text)


async def recv(sock: socket.socket, limit_s: float = 3.0) -> tuple[bytes, tuple[str, int]]:
    async with asyncio.timeout(limit_s):
        while True:
            try:
                return sock.recvfrom(2048)
            except BlockingIOError:
                await asyncio.sleep(0.005)


async def next_rtcp(sock: socket.socket) -> tuple[bytes, tuple[str, int]]:
    """Skip RTP (under rtcp-mux both arrive on one socket) until an RTCP packet."""
    while True:
        data, addr = await recv(sock)
        if is_rtcp(data):
            return data, addr


def drain(sock: socket.socket) -> None:
    while True:
        try:
            sock.recvfrom(2048)
        except BlockingIOError:
            return


@pytest.fixture
def pool() -> PortPool:
    return PortPool(42000, 42400)


async def open_stream(pool: PortPool, offer: SessionDescription) -> tuple[RtpStream, int]:
    sock, port = pool.bind(HOST)
    neg = negotiate.answer(offer, HOST, port)
    stream = RtpStream(neg, lambda frame: None, lambda digit, source: None, lambda: None, rtcp_min_interval=0.3)
    await stream.open(sock, pool.rtcp_socket(port))
    return stream, port


def release(pool: PortPool, port: int, stream: RtpStream, *peer: socket.socket) -> None:
    """End of a test: our stream, its ports, the peer's sockets."""
    stream.close()
    pool.release(port)
    for sock in peer:
        sock.close()


def send_media(peer: socket.socket, port: int, seqs: list[int]) -> None:
    for n, seq in enumerate(seqs):
        pkt = RtpPacket(payload_type=0, sequence=seq, timestamp=160 * n, ssrc=PEER_SSRC, payload=b"\xff" * 160)
        peer.sendto(pkt.serialize(), (HOST, port))


async def test_reports_reach_the_rtcp_port_and_carry_a_reception_report(pool: PortPool, tmp_path: Path) -> None:
    await exchange(pool, tmp_path / "rtcp.pcap")


async def exchange(pool: PortPool, pcap_path: Path) -> tuple[int, str]:
    """A stream and a peer trade media and reports; what we sent is saved as a pcap.
    Returns our SSRC and CNAME."""
    peer_rtp, peer_rtcp = peer_sockets()
    stream, port = await open_stream(pool, offer_sdp(peer_rtp.getsockname()[1]))
    try:
        # the peer sends 20 packets with two missing, and a sender report to our odd port
        send_media(peer_rtp, port, [s for s in range(1000, 1020) if s not in (1004, 1011)])
        peer_sr = SenderReport(PEER_SSRC, ntp_timestamp(1.7e9), 3200, 18, 2880)
        peer_rtcp.sendto(peer_sr.serialize(), (HOST, port + 1))
        for _ in range(10):
            stream.send_tick()  # we are a sender too
        await asyncio.sleep(0.05)
        assert stream.counters.received == 18 and stream.counters.rtcp_received == 1
        data, src = await next_rtcp(peer_rtcp)
        assert src == (HOST, port + 1)  # from our RTCP socket, to the peer's RTP port + 1
        sr, sdes = parse_rtcp(data)
        assert isinstance(sr, SenderReport) and sr.ssrc == stream.sender.ssrc
        assert sr.packet_count == 10 and sr.octet_count == 1600
        (block,) = sr.reports
        assert (block.ssrc, block.packets_lost, block.highest_sequence) == (PEER_SSRC, 2, 1019)
        assert block.fraction_lost == (2 << 8) // 20
        assert block.last_sr == ntp_middle(peer_sr.ntp_timestamp) and block.delay_since_last_sr > 0
        assert isinstance(sdes, SourceDescription) and sdes.chunks[0].ssrc == stream.sender.ssrc
        assert sdes.chunks[0].cname == stream.rtcp.cname

        # the peer answers with a receiver report echoing our SR: loss and round-trip time
        echo = ReportBlock(stream.sender.ssrc, 26, 1, 9, 80, ntp_middle(sr.ntp_timestamp), 0)  # answered at once
        peer_rtcp.sendto(ReceiverReport(PEER_SSRC, [echo]).serialize(), (HOST, port + 1))
        await asyncio.sleep(0.05)
        peer = stream.rtcp.peer
        assert peer.reports == 1 and peer.cumulative_lost == 1 and peer.jitter_ms == 10.0
        assert peer.rtt_ms is not None and 0 <= peer.rtt_ms < 1000

        # reports keep coming (randomised 0.5-1.5 x the 0.3 s minimum)
        later, _ = await next_rtcp(peer_rtcp)
        assert isinstance(parse_rtcp(later)[0], SenderReport)
        drain(peer_rtcp)
        for _ in range(3):
            stream.send_tick()  # still sending at hang-up: the BYE rides on an SR
        stream.close("bye now")
        last, _ = await next_rtcp(peer_rtcp)
        packets = parse_rtcp(last)
        assert [type(p) for p in packets] == [SenderReport, SourceDescription, Bye]
        assert packets[-1] == Bye([stream.sender.ssrc], "bye now")
        dst = peer_rtcp.getsockname()[1]
        await asyncio.to_thread(pcap_path.write_bytes, pcap([(data, port + 1, dst), (last, port + 1, dst)]))
        return stream.sender.ssrc, stream.rtcp.cname
    finally:
        release(pool, port, stream, peer_rtp, peer_rtcp)


async def test_rtcp_mux_uses_the_rtp_port(pool: PortPool) -> None:
    peer_rtp, peer_rtcp = peer_sockets()
    stream, port = await open_stream(pool, offer_sdp(peer_rtp.getsockname()[1], "a=rtcp-mux\r\n"))
    try:
        assert stream.neg.rtcp_mux and stream.neg.sdp.media[0].attribute("rtcp-mux") is not None
        assert stream.rtcp_transport is None
        send_media(peer_rtp, port, [1, 2, 3])
        peer_rtp.sendto(SenderReport(PEER_SSRC, ntp_timestamp(1.7e9)).serialize(), (HOST, port))
        await asyncio.sleep(0.05)
        assert stream.counters.rtcp_received == 1 and stream.counters.received == 3
        data, src = await next_rtcp(peer_rtp)
        assert src == (HOST, port)  # RTP and RTCP share our port and the peer's
        first = parse_rtcp(data)[0]
        assert isinstance(first, ReceiverReport)  # we have not sent media: RR
        assert first.reports[0].ssrc == PEER_SSRC and first.reports[0].highest_sequence == 3
        stream.close()
        await asyncio.sleep(0.05)
        drain(peer_rtp)  # no media, but RTCP was sent: a BYE came too (checked above for SR)
        with pytest.raises(BlockingIOError):
            peer_rtcp.recvfrom(2048)  # nothing on the odd port under mux
    finally:
        release(pool, port, stream, peer_rtp, peer_rtcp)


@pytest.mark.parametrize("takes_mux", [True, False])
async def test_an_outbound_call_offers_rtcp_mux_and_follows_the_answer(pool: PortPool, takes_mux: bool) -> None:
    """Calls we place offer rtcp-mux (RFC 5761): a callee that takes it gets RTCP on its
    RTP port; one that does not, on the port above (our odd port is held either way)."""
    peer_rtp, peer_rtcp = peer_sockets()
    sock, port = pool.bind(HOST)
    ours = negotiate.offer(HOST, port)
    answer = offer_sdp(peer_rtp.getsockname()[1], "a=rtcp-mux\r\n" if takes_mux else "")
    neg = negotiate.accept_answer(ours, answer)
    stream = RtpStream(neg, lambda frame: None, lambda digit, source: None, lambda: None, rtcp_min_interval=0.3)
    await stream.open(sock, pool.rtcp_socket(port))
    try:
        assert neg.rtcp_mux is takes_mux and (stream.rtcp_transport is None) is takes_mux
        send_media(peer_rtp, port, [7, 8, 9])
        data, src = await next_rtcp(peer_rtp if takes_mux else peer_rtcp)
        assert src == (HOST, port if takes_mux else port + 1)
        assert parse_rtcp(data)[0].reports[0].ssrc == PEER_SSRC
    finally:
        release(pool, port, stream, peer_rtp, peer_rtcp)


async def test_no_bye_from_a_stream_that_never_sent(pool: PortPool) -> None:
    peer_rtp, peer_rtcp = peer_sockets()
    stream, port = await open_stream(pool, offer_sdp(peer_rtp.getsockname()[1]))
    stream.close()
    await asyncio.sleep(0.05)
    with pytest.raises(BlockingIOError):
        peer_rtcp.recvfrom(2048)
    release(pool, port, stream, peer_rtp, peer_rtcp)


def test_port_pool_binds_the_odd_port_and_releases_it() -> None:
    pool = PortPool(42400, 42600)
    sock, port = pool.bind(HOST)
    assert port % 2 == 0
    rtcp = pool.rtcp_socket(port)
    assert rtcp is not None and rtcp.getsockname() == (HOST, port + 1)
    assert pool.rtcp_socket(port) is None  # handed over once
    rtcp.close()
    sock.close()
    pool.release(port)
    sock, port2 = pool.bind(HOST)  # unclaimed RTCP sockets are closed on release
    pool.release(port2)
    sock.close()
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind((HOST, port2 + 1))
    probe.close()


def test_call_end_metrics_observe_the_round_trip() -> None:
    metrics = Metrics()
    rtp = {"received": 10, "sent": 10, "lost": 0, "jitter_ms": 1.0}
    for rtt in (42.0, None):
        rec = CallRecord(id="c", agent="a", agent_version="1", transport="sip",
                         metadata={"rtp": {**rtp, "rtcp": {"sent": 3, "received": 2, "peer": {"rtt_ms": rtt}}}})
        metrics.on_call_event(CallEnded(rec))
    assert metrics.registry.get_sample_value("voxd_rtp_round_trip_seconds_count") == 1  # calls without an RTT skip it
    assert metrics.registry.get_sample_value("voxd_rtp_round_trip_seconds_sum") == pytest.approx(0.042)


# -- a third-party decoder: tshark reads the packets from a pcap file


def pcap(packets: list[tuple[bytes, int, int]]) -> bytes:
    """A pcap (LINKTYPE_RAW: IPv4 packets) of UDP datagrams 127.0.0.1:src -> :dst."""
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)
    for n, (payload, sport, dport) in enumerate(packets):
        udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
        header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), n, 0, 64, 17, 0,
                             socket.inet_aton(HOST), socket.inet_aton(HOST))
        words = struct.unpack("!10H", header)
        total = sum(words)
        total = (total & 0xFFFF) + (total >> 16)
        total = (total & 0xFFFF) + (total >> 16)
        header = header[:10] + struct.pack("!H", ~total & 0xFFFF) + header[12:]
        frame = header + udp
        out += struct.pack("<IIII", 1_700_000_000 + n, 0, len(frame), len(frame)) + frame
    return out


@pytest.mark.interop
@pytest.mark.skipif(not shutil.which("tshark"), reason="tshark not installed")
async def test_tshark_decodes_our_compound_packets(pool: PortPool, tmp_path: Path) -> None:
    path = tmp_path / "rtcp.pcap"
    ssrc, cname = await exchange(pool, path)
    fields = ["rtcp.pt", "rtcp.senderssrc", "rtcp.ssrc.identifier", "rtcp.ssrc.ext_high", "rtcp.ssrc.cum_nr",
              "rtcp.sdes.type", "rtcp.sdes.text", "rtcp.length_check", "_ws.expert.message"]
    cmd = ["tshark", "-r", str(path), "-o", "rtcp.heuristic_rtcp:TRUE", "-T", "fields", "-E", "separator=;",
           "-E", "aggregator=,"]
    for f in fields:
        cmd += ["-e", f]
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    rows = [line.split(";") for line in out.decode().strip().splitlines()]
    assert len(rows) == 2, out.decode()
    report, bye = (dict(zip(fields, row, strict=True)) for row in rows)
    ours = f"0x{ssrc:08x}"
    assert report["rtcp.pt"] == "200,202"  # SR, SDES
    assert report["rtcp.senderssrc"] == ours and report["rtcp.ssrc.identifier"] == f"0x{PEER_SSRC:08x},{ours}"
    assert report["rtcp.ssrc.ext_high"] == "1019" and report["rtcp.ssrc.cum_nr"] == "2"
    assert report["rtcp.sdes.type"] == "1,0" and report["rtcp.sdes.text"] == cname  # CNAME, END
    assert bye["rtcp.pt"] == "200,202,203"  # SR, SDES, BYE
    assert bye["rtcp.sdes.text"] == f"{cname},bye now"  # tshark shows the BYE reason as text too
    for row in (report, bye):
        assert row["rtcp.length_check"] == "1" and row["_ws.expert.message"] == ""  # lengths OK, no warnings


@pytest.mark.parametrize(("pt", "codec"), [(0, "PCMU"), (8, "PCMA")])
async def test_pcmu_payloads_reach_the_session_as_they_came(pool: PortPool, pt: int, codec: str) -> None:
    """A PCMU call hands each packet's bytes on with the decoded frame (for recognisers that
    take mu-law); PCMA and concealed frames give none."""
    peer_rtp, peer_rtcp = peer_sockets()
    text = (f"v=0\r\no=- 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
            f"m=audio {peer_rtp.getsockname()[1]} RTP/AVP {pt}\r\n")
    sock, port = pool.bind(HOST)
    neg = negotiate.answer(SessionDescription.parse(text), HOST, port)
    assert neg.codec.name == codec
    got: list[tuple[int, bytes | None]] = []
    stream = RtpStream(neg, lambda f: got.append((len(f.pcm), f.payload)), lambda d, s: None, lambda: None)
    await stream.open(sock, pool.rtcp_socket(port))
    try:
        payloads = [bytes([n]) * 160 for n in range(1, 9)]
        for n, payload in enumerate(payloads):
            pkt = RtpPacket(payload_type=pt, sequence=100 + n, timestamp=160 * n, ssrc=PEER_SSRC, payload=payload)
            peer_rtp.sendto(pkt.serialize(), (HOST, port))
        await asyncio.sleep(0.05)
        for _ in range(30):
            stream.receive_tick()
        played = [m for n, m in got if n == 640 and m is not None]
        if codec == "PCMU":  # what the jitter buffer played (it trims a burst), in order, byte for byte
            order = [payloads.index(m) for m in played]
            assert len(played) >= 4 and order == sorted(set(order))
        else:
            assert played == []
        assert all(n == 640 for n, _ in got) and got[-1][1] is None  # the buffer ran dry: silence, no bytes
    finally:
        stream.close()
        peer_rtp.close()
        peer_rtcp.close()
