"""RTP/RTCP packets, sender, receiver statistics and the jitter buffer."""

from __future__ import annotations

import random

import pytest

from voxd.proto.jitter import JitterBuffer
from voxd.proto.rtcp import (
    ReceiverReport,
    ReportBlock,
    SdesChunk,
    SenderReport,
    SourceDescription,
    ntp_timestamp,
    parse_rtcp,
)
from voxd.proto.rtp import ReceiverStats, RtpPacket, RtpParseError, RtpSender, is_rtcp


def test_rtp_round_trip_with_csrc_extension_padding_marker():
    pkt = RtpPacket(payload_type=8, sequence=65535, timestamp=2**32 - 1, ssrc=0xDEADBEEF,
                    marker=True, payload=b"\x55" * 160, csrc=[1, 2],
                    extension_profile=0xBEDE, extension=b"\x10\xff\x00\x00", padding=4)
    data = pkt.serialize()
    assert len(data) == 12 + 8 + 4 + 4 + 160 + 4
    assert data[0] == 0x80 | 0x20 | 0x10 | 2 and data[1] == 0x80 | 8
    assert RtpPacket.parse(data) == pkt


@pytest.mark.parametrize("bad", [b"", b"\x80" * 11, b"\x40" + b"\x00" * 11,
                                 b"\x8f" + b"\x00" * 11, b"\x90" + b"\x00" * 13,
                                 b"\x90" + b"\x00" * 11 + b"\x00\x00\x00\x05",
                                 b"\xa0" + b"\x00" * 11 + b"\x00", b"\xa0" + b"\x00" * 11 + b"\x40"])
def test_rtp_malformed(bad):
    with pytest.raises(RtpParseError):
        RtpPacket.parse(bad)


def test_sender_sequence_timestamp_marker():
    tx = RtpSender(0, ssrc=7, sequence=65534, timestamp=100)
    a, b, c = (tx.packet(b"x" * 160, 160) for _ in range(3))
    assert [p.sequence for p in (a, b, c)] == [65534, 65535, 0]
    assert [p.timestamp for p in (a, b, c)] == [100, 260, 420]
    assert [p.marker for p in (a, b, c)] == [True, False, False]
    tx.skip(800)
    d = tx.packet(b"x" * 160, 160)
    assert d.marker and d.timestamp == 580 + 800


def test_receiver_stats_loss_wrap_and_jitter():
    stats = ReceiverStats()
    seqs = [65530 + i for i in range(12) if i != 3]
    for n, seq in enumerate(seqs):
        pkt = RtpPacket(sequence=seq & 0xFFFF, timestamp=160 * n, ssrc=1)
        stats.update(pkt, n * 0.02 + (0.004 if n % 2 else 0))
    assert stats.extended_max == 65530 + 11 and stats.cycles == 65536
    assert stats.lost == 1 and stats.received == 11
    assert 0 < stats.jitter_ms < 10
    assert stats.fraction_lost() == (1 << 8) // 12


def test_rtcp_sr_rr_compound_round_trip():
    block = ReportBlock(ssrc=5, fraction_lost=12, packets_lost=-3, highest_sequence=70000,
                        jitter=40, last_sr=1, delay_since_last_sr=2)
    sr = SenderReport(1, ntp_timestamp(1.7e9), 1234, 10, 1600, [block])
    rr = ReceiverReport(2, [block, ReportBlock(6)])
    data = sr.serialize() + rr.serialize() + bytes.fromhex("81ca0001") + b"\x00" * 4  # + SDES
    assert is_rtcp(data) and not is_rtcp(RtpPacket().serialize())
    # an SDES chunk cut short after its SSRC is accepted (item-less)
    assert parse_rtcp(data) == [sr, rr, SourceDescription([SdesChunk(0)])]


@pytest.mark.parametrize("bad", [b"", b"\x80\xc8", b"\x80\xc8\x00\x05\x00",
                                 b"\x40\xc9\x00\x00", b"\x81\xc9\x00\x01\x00\x00\x00\x00"])
def test_rtcp_malformed(bad):
    with pytest.raises(RtpParseError):
        parse_rtcp(bad)


def stream(n: int, *, ssrc: int = 1, start: int = 0) -> list[RtpPacket]:
    return [RtpPacket(0, (start + i) & 0xFFFF, 160 * i, ssrc, payload=bytes([i % 256]))
            for i in range(n)]


def run(jb: JitterBuffer, arrivals: list[tuple[float, RtpPacket]], ticks: int,
        tick0: float = 0.0) -> list[int | None]:
    """Push packets by arrival time and pop every 20 ms; payload byte or None."""
    arrivals = sorted(arrivals, key=lambda a: a[0])
    out: list[int | None] = []
    i = 0
    for t in range(ticks):
        now = tick0 + t * 0.02
        while i < len(arrivals) and arrivals[i][0] <= now:
            jb.push(arrivals[i][1], arrivals[i][0])
            i += 1
        got = jb.pop()
        out.append(None if got is None else got[0])
    return out


def test_jitter_buffer_in_order():
    jb = JitterBuffer()
    out = run(jb, [(i * 0.02, p) for i, p in enumerate(stream(50))], 60)
    played = [x for x in out if x is not None]
    assert played == list(range(50))
    assert out.index(0) <= 2  # starts after about one frame of buffering


def test_jitter_buffer_reorders_and_drops_duplicates():
    pkts = stream(40)
    arrivals = [(i * 0.02, p) for i, p in enumerate(pkts)]
    arrivals[10], arrivals[11] = (arrivals[11][0], pkts[10]), (arrivals[10][0], pkts[11])
    arrivals[10] = (0.2 + 0.015, pkts[10])  # 10 arrives 15 ms late, after 11
    arrivals.append((0.3, pkts[15]))  # duplicate
    jb = JitterBuffer(min_ms=40)
    out = [x for x in run(jb, arrivals, 60) if x is not None]
    assert out == list(range(40)) and jb.duplicates == 1


def test_jitter_buffer_loss_gives_none_and_late_packet_is_dropped():
    pkts = stream(40)
    arrivals = [(i * 0.02, p) for i, p in enumerate(pkts) if i != 20]
    arrivals.append((1.5, pkts[20]))  # far too late
    jb = JitterBuffer()
    out = run(jb, arrivals, 90)
    start = out.index(0)
    assert out[start : start + 40] == [*range(20), None, *range(21, 40)]
    assert jb.late == 1 and jb.missing >= 1


def test_jitter_buffer_seq_wrap_and_ssrc_change():
    first = stream(30, start=65520)
    second = stream(30, ssrc=2, start=100)
    arrivals = [(i * 0.02, p) for i, p in enumerate(first)]
    arrivals += [(0.7 + i * 0.02, p) for i, p in enumerate(second)]  # after a pause
    jb = JitterBuffer()
    played = [x for x in run(jb, arrivals, 80) if x is not None]
    assert played == list(range(30)) + list(range(30))
    assert jb.resets == 1


def test_jitter_buffer_adapts_depth_to_jitter():
    rnd = random.Random(4)
    pkts = stream(400)
    arrivals = [(i * 0.02 + rnd.uniform(0, 0.06), p) for i, p in enumerate(pkts)]
    jb = JitterBuffer(min_ms=20, max_ms=120)
    out = run(jb, arrivals, 420)
    assert 60 <= jb.target_ms <= 120
    assert jb.played >= 380  # few frames lost to jitter once adapted
    calm = JitterBuffer()
    run(calm, [(i * 0.02, p) for i, p in enumerate(stream(200))], 210)
    assert calm.target_ms <= 40
    assert out.count(None) > 0


def test_jitter_buffer_bounds():
    with pytest.raises(ValueError):
        JitterBuffer(min_ms=10, frame_ms=20)
