"""RFC 4733 telephone-event payloads: parse/serialize, a receiver and a sender."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .rtp import RtpPacket, RtpParseError, RtpSender

EVENT_CHARS = "0123456789*#ABCD"


def digit_to_event(digit: str) -> int:
    index = EVENT_CHARS.find(digit.upper())
    if index < 0 or len(digit) != 1:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    return index


@dataclass
class TelephoneEvent:
    """The 4-byte payload: event, E bit, volume (-dBm0), duration (timestamp units)."""

    event: int
    end: bool = False
    volume: int = 10
    duration: int = 0

    @property
    def digit(self) -> str | None:
        return EVENT_CHARS[self.event] if self.event < len(EVENT_CHARS) else None

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        if len(payload) < 4:
            raise RtpParseError("telephone-event payload shorter than 4 bytes")
        event, flags, duration = struct.unpack_from("!BBH", payload)
        return cls(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)

    def serialize(self) -> bytes:
        if not 0 <= self.volume <= 63 or not 0 <= self.event <= 255:
            raise ValueError("volume must be 0-63, event 0-255")
        flags = (0x80 if self.end else 0) | self.volume
        return struct.pack("!BBH", self.event, flags, min(self.duration, 0xFFFF))


@dataclass
class DtmfDigit:
    digit: str
    duration_ms: int
    timestamp: int
    ssrc: int


class DtmfReceiver:
    """Turns telephone-event packets into one :class:`DtmfDigit` per key press.

    A digit is emitted on its first end packet; repeated end packets (same SSRC
    and RTP timestamp) are ignored. If every end packet was lost, the digit is
    emitted when a packet for a new event (new timestamp) arrives, or on
    :meth:`flush` (call at hang-up). ``payload_types`` are the negotiated
    telephone-event numbers; packets of other types are ignored.
    """

    def __init__(self, payload_types: set[int] | frozenset[int], clock_rate: int = 8000) -> None:
        self.payload_types = frozenset(payload_types)
        self.clock_rate = clock_rate
        self._done: set[tuple[int, int]] = set()
        self._done_order: list[tuple[int, int]] = []
        self._pending: tuple[int, int, TelephoneEvent] | None = None

    def _emit(self, ssrc: int, ts: int, ev: TelephoneEvent) -> DtmfDigit | None:
        key = (ssrc, ts)
        self._done.add(key)
        self._done_order.append(key)
        if len(self._done_order) > 64:
            self._done.discard(self._done_order.pop(0))
        digit = ev.digit
        if digit is None:
            return None
        return DtmfDigit(digit, ev.duration * 1000 // self.clock_rate, ts, ssrc)

    def feed(self, packet: RtpPacket) -> list[DtmfDigit]:
        """Returns zero, one or (after lost end packets) two digits."""
        if packet.payload_type not in self.payload_types:
            return []
        try:
            ev = TelephoneEvent.parse(packet.payload)
        except RtpParseError:
            return []
        key = (packet.ssrc, packet.timestamp)
        out: list[DtmfDigit] = []
        if self._pending is not None and self._pending[:2] != key:
            ssrc, ts, old = self._pending
            self._pending = None
            if (ssrc, ts) not in self._done:
                got = self._emit(ssrc, ts, old)
                if got:
                    out.append(got)
        if key in self._done:
            return out
        if ev.end:
            self._pending = None
            got = self._emit(packet.ssrc, packet.timestamp, ev)
            if got:
                out.append(got)
        else:
            self._pending = (packet.ssrc, packet.timestamp, ev)
        return out

    def flush(self) -> list[DtmfDigit]:
        """Emit an event whose end packets never arrived."""
        if self._pending is None:
            return []
        ssrc, ts, ev = self._pending
        self._pending = None
        got = self._emit(ssrc, ts, ev)
        return [got] if got else []


@dataclass
class ScheduledPacket:
    """An RTP packet and when to send it, in seconds from the start of the sequence."""

    at: float
    packet: RtpPacket


class DtmfSender:
    """Builds the RFC 4733 packet sequence for a digit string (DTMF out).

    Each digit: a first packet with the marker bit, updates every
    ``interval_ms`` carrying the growing duration (same RTP timestamp), then the
    final duration three times with the E bit (RFC 4733 §2.5.1.4). Updates
    default to 20 ms, the audio packetization interval, which is what sipp,
    baresip and linphone send (see the captures in tests/data/rtp). Sequence
    numbers come from the shared :class:`RtpSender`, whose timestamp is advanced
    past the digits so audio resumes in step.
    """

    def __init__(self, rtp: RtpSender, payload_type: int, *, interval_ms: int = 20,
                 volume: int = 10) -> None:
        self.rtp = rtp
        self.payload_type = payload_type
        self.interval_ms = interval_ms
        self.volume = volume

    def packets(self, digits: str, *, duration_ms: int = 100,
                gap_ms: int = 60) -> list[ScheduledPacket]:
        rate = self.rtp.clock_rate
        out: list[ScheduledPacket] = []
        t = 0.0
        for digit in digits:
            event = digit_to_event(digit)
            start_ts = self.rtp.timestamp
            total = duration_ms * rate // 1000
            step = self.interval_ms * rate // 1000
            elapsed = step
            first = True
            while elapsed < total:
                out.append(self._packet(t, event, start_ts, elapsed, False, first))
                first = False
                t += self.interval_ms / 1000
                elapsed += step
            for _ in range(3):
                out.append(self._packet(t, event, start_ts, total, True, first))
                first = False
            t += self.interval_ms / 1000 + gap_ms / 1000
            samples = (duration_ms + gap_ms) * rate // 1000
            self.rtp.timestamp = (self.rtp.timestamp + samples) & 0xFFFFFFFF
        return out

    def _packet(self, at: float, event: int, ts: int, duration: int, end: bool,
                marker: bool) -> ScheduledPacket:
        payload = TelephoneEvent(event, end, self.volume, duration).serialize()
        pkt = RtpPacket(payload_type=self.payload_type, sequence=self.rtp.next_sequence(),
                        timestamp=ts, ssrc=self.rtp.ssrc, marker=marker, payload=payload)
        return ScheduledPacket(at, pkt)
