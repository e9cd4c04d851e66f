"""RTP packets (RFC 3550 §5.1), a sender and receiver statistics."""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass, field


class RtpParseError(ValueError):
    """Malformed RTP or RTCP packet."""


_HEADER = struct.Struct("!BBHII")


def is_rtcp(data: bytes) -> bool:
    """RTCP shares the port under rtcp-mux: packet types 192-223 (RFC 5761 §4)."""
    return len(data) >= 2 and 192 <= data[1] <= 223


@dataclass
class RtpPacket:
    payload_type: int = 0
    sequence: int = 0
    timestamp: int = 0
    ssrc: int = 0
    marker: bool = False
    payload: bytes = b""
    csrc: list[int] = field(default_factory=list)
    extension_profile: int | None = None
    extension: bytes = b""
    padding: int = 0

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        if len(data) < 12:
            raise RtpParseError("RTP packet shorter than 12 bytes")
        b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
        if b0 >> 6 != 2:
            raise RtpParseError("RTP version is not 2")
        cc = b0 & 0x0F
        pos = 12 + 4 * cc
        if len(data) < pos:
            raise RtpParseError("truncated CSRC list")
        csrc = list(struct.unpack_from(f"!{cc}I", data, 12))
        ext_profile: int | None = None
        ext = b""
        if b0 & 0x10:
            if len(data) < pos + 4:
                raise RtpParseError("truncated header extension")
            ext_profile, words = struct.unpack_from("!HH", data, pos)
            pos += 4
            if len(data) < pos + 4 * words:
                raise RtpParseError("truncated header extension")
            ext = data[pos : pos + 4 * words]
            pos += 4 * words
        end = len(data)
        padding = 0
        if b0 & 0x20:
            padding = data[-1]
            if padding == 0 or pos + padding > end:
                raise RtpParseError("bad RTP padding length")
            end -= padding
        return cls(
            payload_type=b1 & 0x7F, sequence=seq, timestamp=ts, ssrc=ssrc,
            marker=bool(b1 & 0x80), payload=data[pos:end], csrc=csrc,
            extension_profile=ext_profile, extension=ext, padding=padding,
        )

    def serialize(self) -> bytes:
        if len(self.csrc) > 15:
            raise ValueError("at most 15 CSRCs")
        if len(self.extension) % 4:
            raise ValueError("header extension must be a multiple of 4 bytes")
        if not 0 <= self.padding <= 255:
            raise ValueError("padding must be 0-255")
        b0 = 0x80 | len(self.csrc)
        if self.padding:
            b0 |= 0x20
        if self.extension_profile is not None:
            b0 |= 0x10
        b1 = (0x80 if self.marker else 0) | (self.payload_type & 0x7F)
        out = bytearray(_HEADER.pack(b0, b1, self.sequence & 0xFFFF,
                                     self.timestamp & 0xFFFFFFFF, self.ssrc & 0xFFFFFFFF))
        for c in self.csrc:
            out += struct.pack("!I", c)
        if self.extension_profile is not None:
            out += struct.pack("!HH", self.extension_profile, len(self.extension) // 4)
            out += self.extension
        out += self.payload
        if self.padding:
            out += bytes(self.padding - 1) + bytes([self.padding])
        return bytes(out)


class RtpSender:
    """Sequence/timestamp/SSRC state for one outgoing stream."""

    def __init__(self, payload_type: int, *, clock_rate: int = 8000, ssrc: int | None = None,
                 sequence: int | None = None, timestamp: int | None = None) -> None:
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.ssrc = secrets.randbits(32) if ssrc is None else ssrc
        self.sequence = secrets.randbits(16) if sequence is None else sequence
        self.timestamp = secrets.randbits(32) if timestamp is None else timestamp
        self.packets_sent = 0
        self.octets_sent = 0
        self._talkspurt = True

    def start_talkspurt(self) -> None:
        """The next packet begins a talkspurt (after silence): set the marker bit."""
        self._talkspurt = True

    def next_sequence(self) -> int:
        seq = self.sequence
        self.sequence = (self.sequence + 1) & 0xFFFF
        return seq

    def packet(self, payload: bytes, samples: int, *, payload_type: int | None = None) -> RtpPacket:
        """Wrap one frame of ``samples`` samples and advance the timestamp."""
        pkt = RtpPacket(
            payload_type=self.payload_type if payload_type is None else payload_type,
            sequence=self.next_sequence(), timestamp=self.timestamp, ssrc=self.ssrc,
            marker=self._talkspurt, payload=payload,
        )
        self._talkspurt = False
        self.timestamp = (self.timestamp + samples) & 0xFFFFFFFF
        self.packets_sent += 1
        self.octets_sent += len(payload)
        return pkt

    def skip(self, samples: int) -> None:
        """Advance the clock over a silent gap (no packets sent)."""
        self.timestamp = (self.timestamp + samples) & 0xFFFFFFFF
        self._talkspurt = True


class ReceiverStats:
    """Loss, extended sequence and interarrival jitter (RFC 3550 §6.4.1, A.1, A.8)."""

    def __init__(self, clock_rate: int = 8000) -> None:
        self.clock_rate = clock_rate
        self._reset(None, 0)

    def _reset(self, ssrc: int | None, seq: int) -> None:
        self.ssrc: int | None = ssrc
        self.received = 0
        self.base_seq = seq
        self.max_seq = seq
        self.cycles = 0
        self.jitter = 0.0  # in timestamp units
        self._transit: float | None = None
        self._expected_prior = 0
        self._received_prior = 0

    def update(self, packet: RtpPacket, arrival: float) -> None:
        self.note_sequence(packet)
        transit = arrival * self.clock_rate - packet.timestamp
        if self._transit is not None:
            d = abs(transit - self._transit)
            self.jitter += (d - self.jitter) / 16.0
        self._transit = transit

    def note_sequence(self, packet: RtpPacket) -> None:
        """Count a packet of the stream without a jitter sample (e.g. RFC 4733 events,
        which share the audio's sequence numbers but not its timing)."""
        if packet.ssrc != self.ssrc:
            self._reset(packet.ssrc, packet.sequence)
        else:
            delta = (packet.sequence - self.max_seq) & 0xFFFF
            if 0 < delta < 3000:
                if packet.sequence < self.max_seq:
                    self.cycles += 1 << 16
                self.max_seq = packet.sequence
        self.received += 1

    @property
    def extended_max(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        return self.extended_max - self.base_seq + 1 if self.ssrc is not None else 0

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.received)

    @property
    def jitter_ms(self) -> float:
        return 1000.0 * self.jitter / self.clock_rate

    def fraction_lost(self) -> int:
        """Fraction lost since the previous call, as an 8-bit fixed point number."""
        expected = self.expected - self._expected_prior
        received = self.received - self._received_prior
        self._expected_prior, self._received_prior = self.expected, self.received
        lost = expected - received
        return 0 if expected <= 0 or lost <= 0 else min(255, (lost << 8) // expected)
