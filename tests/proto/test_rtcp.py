"""RTCP compound packets and the sans-IO report logic (RFC 3550 §6)."""

from __future__ import annotations

import math

import pytest

from voxd.proto.rtcp import (
    CNAME,
    MIN_INTERVAL,
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpSession,
    SdesChunk,
    SenderReport,
    SourceDescription,
    ntp_middle,
    ntp_timestamp,
    parse_rtcp,
    report_interval,
)
from voxd.proto.rtp import ReceiverStats, RtpPacket, RtpParseError, RtpSender

OURS, THEIRS = 0x11111111, 0x22222222
WALL = 1_700_000_000.0


@pytest.mark.parametrize("cname_len", range(9))
def test_sdes_chunk_is_null_terminated_and_padded(cname_len: int):
    sdes = SourceDescription([SdesChunk(OURS, [(CNAME, b"c" * cname_len)])])
    data = sdes.serialize()
    assert len(data) % 4 == 0
    assert data[4 + 4 + 2 + cname_len] == 0  # at least one null octet ends the item list
    assert parse_rtcp(data) == [sdes]


def test_compound_sr_sdes_bye_round_trip():
    block = ReportBlock(THEIRS, 25, 2, 119, 9, 0x12345678, 32768)
    sr = SenderReport(OURS, ntp_timestamp(WALL), 160_000, 50, 8000, [block])
    sdes = SourceDescription([SdesChunk(OURS, [(CNAME, b"abc@example"), (2, b"voxd")]),
                              SdesChunk(THEIRS, [(CNAME, b"x")])])
    bye = Bye([OURS], "call ended")
    data = sr.serialize() + sdes.serialize() + bye.serialize()
    assert data[1] == 200 and len(data) % 4 == 0
    parsed = parse_rtcp(data)
    assert parsed == [sr, sdes, bye]
    assert parsed[1].chunks[0].cname == "abc@example"  # type: ignore[union-attr]
    assert parse_rtcp(Bye([OURS]).serialize()) == [Bye([OURS])]


def test_rtcp_padding_and_malformed_sdes_bye():
    rr = bytearray(ReceiverReport(OURS).serialize() + b"\x00\x00\x00\x04")
    rr[0] |= 0x20
    rr[3] += 1  # one more word: the padding
    assert parse_rtcp(bytes(rr)) == [ReceiverReport(OURS)]
    for bad in (bytes.fromhex("81ca0001") + b"\x00\x00\x00\x00" + bytes.fromhex("01ff"),  # count 1, item too long
                bytes.fromhex("81ca0001") + bytes.fromhex("0000000001050000"),
                bytes.fromhex("82cb0001") + b"\x00" * 4,  # two SSRCs announced, one present
                bytes.fromhex("81cb0002") + b"\x00" * 4 + b"\x09ab\x00"):  # reason longer than packet
        with pytest.raises(RtpParseError):
            parse_rtcp(bad)


def peer_stream(stats: ReceiverStats) -> None:
    """Sequence 100..119 with 105 and 110 lost; 20 ms apart, one packet 10 ms late."""
    for seq in range(100, 120):
        if seq in (105, 110):
            continue
        n = seq - 100
        late = 0.010 if seq == 118 else 0.0
        stats.update(RtpPacket(payload_type=0, sequence=seq, timestamp=1000 + 160 * n, ssrc=THEIRS),
                     5.0 + 0.02 * n + late)


def test_report_block_values_from_a_known_sequence():
    sender = RtpSender(0, ssrc=OURS, sequence=0, timestamp=0)
    for _ in range(50):
        sender.packet(b"\xff" * 160, 160)
    stats = ReceiverStats()
    peer_stream(stats)
    rtcp = RtcpSession(sender, stats, cname="test-cname")
    # the peer's SR arrives at t=10.0; our report goes out half a second later
    peer_sr = SenderReport(THEIRS, ntp_timestamp(WALL - 0.5), 4200, 18, 2880)
    rtcp.receive(peer_sr.serialize(), 10.0, WALL)
    data = rtcp.build_report(10.5, WALL + 0.5, rtp_timestamp=8000)
    sr, sdes = parse_rtcp(data)
    assert isinstance(sr, SenderReport) and isinstance(sdes, SourceDescription)
    assert (sr.ssrc, sr.ntp_timestamp, sr.rtp_timestamp, sr.packet_count, sr.octet_count) == (
        OURS, ntp_timestamp(WALL + 0.5), 8000, 50, 8000)
    (block,) = sr.reports
    # jitter: 0 until the late packet (|D| = 80), then |D| = 80 again: 80/16, then +75/16
    assert block == ReportBlock(ssrc=THEIRS, fraction_lost=(2 << 8) // 20, packets_lost=2,
                                highest_sequence=119, jitter=int(5 + 75 / 16),
                                last_sr=ntp_middle(ntp_timestamp(WALL - 0.5)), delay_since_last_sr=32768)
    assert sdes.chunks == [SdesChunk(OURS, [(CNAME, b"test-cname")])]
    # nothing heard since: the next report carries no block
    sr2 = parse_rtcp(rtcp.build_report(15.0, WALL + 5))[0]
    assert isinstance(sr2, SenderReport) and sr2.reports == []


def test_receiver_report_when_we_do_not_send():
    sender = RtpSender(0, ssrc=OURS)
    stats = ReceiverStats()
    rtcp = RtcpSession(sender, stats)
    peer_stream(stats)
    rr = parse_rtcp(rtcp.build_report(1.0, WALL))[0]
    assert isinstance(rr, ReceiverReport) and rr.reports[0].last_sr == 0  # no SR from the peer yet
    sender.packet(b"\xff" * 160, 160)
    assert isinstance(parse_rtcp(rtcp.build_report(2.0, WALL))[0], SenderReport)
    assert isinstance(parse_rtcp(rtcp.build_report(3.0, WALL))[0], SenderReport)  # sent since the last-but-one
    assert isinstance(parse_rtcp(rtcp.build_report(4.0, WALL))[0], ReceiverReport)


def test_peer_report_loss_jitter_and_round_trip_time():
    sender = RtpSender(0, ssrc=OURS)
    sender.packet(b"\xff" * 160, 160)
    rtcp = RtcpSession(sender, ReceiverStats())
    sr = parse_rtcp(rtcp.build_report(0.0, WALL))[0]
    assert isinstance(sr, SenderReport)
    # the peer held our SR for 250 ms; its RR reaches us 350 ms after we sent the SR
    block = ReportBlock(OURS, 64, 7, 1000, 160, ntp_middle(sr.ntp_timestamp), 65536 // 4)
    rtcp.receive(ReceiverReport(THEIRS, [block]).serialize() + Bye([THEIRS], "bye").serialize(), 0.35, WALL + 0.35)
    peer = rtcp.peer
    assert peer.reports == 1 and peer.fraction_lost == 0.25 and peer.cumulative_lost == 7
    assert peer.jitter_ms == 20.0 and peer.bye
    assert peer.rtt_ms is not None and abs(peer.rtt_ms - 100.0) < 0.1
    assert peer.as_dict()["rtt_ms"] == round(peer.rtt_ms, 2)


def test_bye_only_after_sending_and_last_in_the_compound():
    sender = RtpSender(0, ssrc=OURS)
    rtcp = RtcpSession(sender, ReceiverStats())
    assert rtcp.bye(0.0, WALL) is None  # never sent anything: no BYE (§6.3.7)
    sender.packet(b"\xff" * 160, 160)
    data = rtcp.bye(1.0, WALL, reason="hangup")
    assert data is not None
    kinds = [type(p) for p in parse_rtcp(data)]
    assert kinds == [SenderReport, SourceDescription, Bye]
    assert parse_rtcp(data)[-1] == Bye([OURS], "hangup")


def test_report_interval_randomisation():
    comp = math.e - 1.5
    args = {"members": 2, "senders": 2, "we_sent": True, "rtcp_bandwidth": 500.0, "avg_rtcp_size": 128.0}
    assert report_interval(**args, initial=False, rand=0.0) == pytest.approx(0.5 * MIN_INTERVAL / comp)
    assert report_interval(**args, initial=False, rand=0.999) == pytest.approx(1.499 * MIN_INTERVAL / comp)
    assert report_interval(**args, initial=True, rand=0.5) == pytest.approx(MIN_INTERVAL / 2 / comp)
    # 100 members, 2 senders: the senders share a quarter of the bandwidth (still under
    # the minimum), the 98 receivers three quarters (well over it)
    big = {**args, "members": 100, "senders": 2}
    assert report_interval(**big, initial=False, rand=0.5) == pytest.approx(MIN_INTERVAL / comp)
    assert report_interval(**{**big, "we_sent": False}, initial=False, rand=0.5) == pytest.approx(
        128 * 98 / (500 * 0.75) / comp)
    rtcp = RtcpSession(RtpSender(0), ReceiverStats(), min_interval=1.0)
    first = rtcp.next_interval(0.5)
    rtcp.build_report(0.0, WALL)
    assert first == pytest.approx(0.5 / comp) and rtcp.next_interval(0.5) == pytest.approx(1.0 / comp)
