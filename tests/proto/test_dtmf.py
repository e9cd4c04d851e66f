"""RFC 4733 telephone-event and SIP INFO DTMF."""

from __future__ import annotations

import pytest

from voxd.proto.rfc4733 import DtmfReceiver, DtmfSender, TelephoneEvent, digit_to_event
from voxd.proto.rtp import RtpPacket, RtpParseError, RtpSender
from voxd.proto.sip import parse_info_dtmf


def test_payload_round_trip():
    ev = TelephoneEvent(event=11, end=True, volume=10, duration=1280)
    data = ev.serialize()
    assert data == bytes([11, 0x80 | 10, 0x05, 0x00])
    assert TelephoneEvent.parse(data) == ev and ev.digit == "#"
    assert TelephoneEvent(16).digit is None  # flash
    with pytest.raises(RtpParseError):
        TelephoneEvent.parse(b"\x01\x02")


def event_packets(digit: str, ts: int, *, pt: int = 101, seq: int = 0, ends: int = 3,
                  updates: int = 4, ssrc: int = 9) -> list[RtpPacket]:
    ev = digit_to_event(digit)
    pkts = [RtpPacket(pt, seq + i, ts, ssrc, marker=i == 0,
                      payload=TelephoneEvent(ev, False, 10, 160 * (i + 1)).serialize())
            for i in range(updates)]
    pkts += [RtpPacket(pt, seq + updates + i, ts, ssrc,
                       payload=TelephoneEvent(ev, True, 10, 160 * (updates + 1)).serialize())
             for i in range(ends)]
    return pkts


def feed_all(rx: DtmfReceiver, pkts: list[RtpPacket]) -> str:
    return "".join(d.digit for p in pkts for d in rx.feed(p))


def test_receiver_one_digit_per_event_despite_repeated_ends():
    rx = DtmfReceiver({101})
    pkts = event_packets("1", 1000) + event_packets("1", 3000, seq=10)
    assert feed_all(rx, pkts) == "11"
    # late duplicate of an old end packet
    assert rx.feed(pkts[-1]) == [] and rx.feed(pkts[5]) == []


def test_receiver_emits_when_all_end_packets_were_lost():
    rx = DtmfReceiver({101})
    lost_end = event_packets("7", 1000, ends=0)
    got = feed_all(rx, lost_end + event_packets("8", 4000, seq=20))
    assert got == "78"
    only_start = event_packets("9", 9000, ends=0, seq=40)
    assert feed_all(rx, only_start) == ""
    assert [d.digit for d in rx.flush()] == ["9"] and rx.flush() == []


def test_receiver_uses_negotiated_payload_type_only():
    rx = DtmfReceiver({96})
    assert feed_all(rx, event_packets("4", 1000, pt=101)) == ""
    assert feed_all(rx, event_packets("4", 1000, pt=96)) == "4"
    assert rx.feed(RtpPacket(96, 99, 5000, 9, payload=b"\x01")) == []  # short payload ignored


def test_receiver_duration_and_ssrc_separation():
    rx = DtmfReceiver({101})
    (digit,) = [d for p in event_packets("5", 1000) for d in rx.feed(p)]
    assert digit.duration_ms == 100 and digit.timestamp == 1000
    assert feed_all(rx, event_packets("5", 1000, ssrc=10)) == "5"


def test_sender_sequence_and_receiver_agree():
    rtp = RtpSender(0, ssrc=5, sequence=65530, timestamp=1000)
    sender = DtmfSender(rtp, 101)
    sched = sender.packets("1#", duration_ms=100, gap_ms=60)
    first = [s for s in sched if TelephoneEvent.parse(s.packet.payload).event == 1]
    assert first[0].packet.marker and not any(s.packet.marker for s in first[1:])
    assert {s.packet.timestamp for s in first} == {1000}
    durations = [TelephoneEvent.parse(s.packet.payload).duration for s in first]
    assert durations == [160, 320, 480, 640, 800, 800, 800]
    assert [TelephoneEvent.parse(s.packet.payload).end for s in first] == [False] * 4 + [True] * 3
    assert [round(s.at, 3) for s in first] == [0.0, 0.02, 0.04, 0.06, 0.08, 0.08, 0.08]
    seqs = [s.packet.sequence for s in sched]
    assert seqs[:8] == [65530, 65531, 65532, 65533, 65534, 65535, 0, 1]
    assert sched[7].packet.timestamp == 1000 + 1280 and sched[7].packet.marker
    assert rtp.timestamp == 1000 + 2 * 1280
    rx = DtmfReceiver({101})
    assert "".join(d.digit for s in sched for d in rx.feed(s.packet)) == "1#"
    with pytest.raises(ValueError):
        sender.packets("x")


@pytest.mark.parametrize(("ctype", "body", "expected"), [
    ("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", ("5", 160)),
    ("Application/DTMF-Relay; charset=x", b"signal= #\nduration=250", ("#", 250)),
    ("application/dtmf-relay", b"Signal=11\r\nDuration=100", ("#", 100)),
    ("application/dtmf-relay", b"Signal=*\r\n", ("*", None)),
    ("application/dtmf", b"7", ("7", None)),
    ("application/dtmf", b"10\r\n", ("*", None)),
])
def test_info_bodies(ctype, body, expected):
    got = parse_info_dtmf(ctype, body)
    assert got is not None and (got.digit, got.duration_ms) == expected


@pytest.mark.parametrize(("ctype", "body"), [
    ("application/dtmf-relay", b"Duration=160"), ("application/dtmf-relay", b"Signal=55"),
    ("application/dtmf", b"x"), ("text/plain", b"5"), ("application/dtmf", b""),
])
def test_info_bodies_without_digit(ctype, body):
    assert parse_info_dtmf(ctype, body) is None
