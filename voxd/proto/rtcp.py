"""Basic RTCP sender and receiver reports (RFC 3550 §6.4)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .rtp import RtpParseError

SR, RR = 200, 201


@dataclass
class ReportBlock:
    ssrc: int
    fraction_lost: int = 0
    packets_lost: int = 0
    highest_sequence: int = 0
    jitter: int = 0
    last_sr: int = 0
    delay_since_last_sr: int = 0

    def serialize(self) -> bytes:
        lost = self.packets_lost & 0xFFFFFF
        return struct.pack("!IIIIII", self.ssrc, (self.fraction_lost & 0xFF) << 24 | lost,
                           self.highest_sequence, self.jitter, self.last_sr,
                           self.delay_since_last_sr)

    @classmethod
    def parse(cls, data: bytes, pos: int) -> ReportBlock:
        ssrc, lost_word, high, jitter, lsr, dlsr = struct.unpack_from("!IIIIII", data, pos)
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 1 << 24
        return cls(ssrc, lost_word >> 24, lost, high, jitter, lsr, dlsr)


@dataclass
class SenderReport:
    ssrc: int
    ntp_timestamp: int = 0
    rtp_timestamp: int = 0
    packet_count: int = 0
    octet_count: int = 0
    reports: list[ReportBlock] = field(default_factory=list)

    def serialize(self) -> bytes:
        body = struct.pack("!IQIII", self.ssrc, self.ntp_timestamp, self.rtp_timestamp,
                           self.packet_count, self.octet_count)
        body += b"".join(r.serialize() for r in self.reports)
        return _header(SR, len(self.reports), body) + body


@dataclass
class ReceiverReport:
    ssrc: int
    reports: list[ReportBlock] = field(default_factory=list)

    def serialize(self) -> bytes:
        body = struct.pack("!I", self.ssrc) + b"".join(r.serialize() for r in self.reports)
        return _header(RR, len(self.reports), body) + body


def _header(ptype: int, count: int, body: bytes) -> bytes:
    if count > 31:
        raise ValueError("at most 31 report blocks")
    return struct.pack("!BBH", 0x80 | count, ptype, len(body) // 4)


RtcpPacket = SenderReport | ReceiverReport


def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """Parse a compound RTCP packet; SR/RR are returned, other types skipped."""
    out: list[RtcpPacket] = []
    pos = 0
    if len(data) < 4:
        raise RtpParseError("RTCP packet shorter than 4 bytes")
    while pos < len(data):
        if len(data) - pos < 4:
            raise RtpParseError("truncated RTCP header")
        b0, ptype, words = struct.unpack_from("!BBH", data, pos)
        if b0 >> 6 != 2:
            raise RtpParseError("RTCP version is not 2")
        end = pos + 4 + 4 * words
        if end > len(data):
            raise RtpParseError("RTCP length exceeds packet")
        count = b0 & 0x1F
        body = pos + 4
        if ptype == SR:
            if end - body < 24 + 24 * count:
                raise RtpParseError("truncated sender report")
            ssrc, ntp, rtp_ts, packets, octets = struct.unpack_from("!IQIII", data, body)
            blocks = [ReportBlock.parse(data, body + 24 + 24 * i) for i in range(count)]
            out.append(SenderReport(ssrc, ntp, rtp_ts, packets, octets, blocks))
        elif ptype == RR:
            if end - body < 4 + 24 * count:
                raise RtpParseError("truncated receiver report")
            (ssrc,) = struct.unpack_from("!I", data, body)
            blocks = [ReportBlock.parse(data, body + 4 + 24 * i) for i in range(count)]
            out.append(ReceiverReport(ssrc, blocks))
        pos = end
    return out


def ntp_timestamp(unix_time: float) -> int:
    """64-bit NTP timestamp for a Unix time (for SR)."""
    seconds = unix_time + 2208988800
    return (int(seconds) << 32 | int((seconds % 1) * (1 << 32))) & 0xFFFFFFFFFFFFFFFF
