"""RTCP (RFC 3550 §6): SR, RR, SDES and BYE packets, compound packets, and the
sans-IO report logic of one RTP session (what to report, when, and what the peer
reported back: loss, jitter, round-trip time)."""

from __future__ import annotations

import math
import secrets
import struct
from dataclasses import dataclass, field

from .rtp import ReceiverStats, RtpParseError, RtpSender

SR, RR, SDES, BYE = 200, 201, 202, 203
CNAME = 1  # SDES item type


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


@dataclass
class SdesChunk:
    """One source's SDES items: (type, value) pairs, CNAME first (RFC 3550 §6.5)."""

    ssrc: int
    items: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def cname(self) -> str | None:
        for kind, value in self.items:
            if kind == CNAME:
                return value.decode("utf-8", "replace")
        return None

    def serialize(self) -> bytes:
        out = struct.pack("!I", self.ssrc)
        for kind, value in self.items:
            if not 0 < kind < 256 or len(value) > 255:
                raise ValueError("SDES item type must be 1-255 and its value at most 255 bytes")
            out += bytes([kind, len(value)]) + value
        return out + bytes(4 - len(out) % 4)  # a null item ends the list, then pad to 32 bits


@dataclass
class SourceDescription:
    chunks: list[SdesChunk] = field(default_factory=list)

    def serialize(self) -> bytes:
        body = b"".join(c.serialize() for c in self.chunks)
        return _header(SDES, len(self.chunks), body) + body


@dataclass
class Bye:
    ssrcs: list[int] = field(default_factory=list)
    reason: str = ""

    def serialize(self) -> bytes:
        body = b"".join(struct.pack("!I", s) for s in self.ssrcs)
        if self.reason:
            text = self.reason.encode()[:255]
            body += bytes([len(text)]) + text
            body += bytes(-len(body) % 4)
        return _header(BYE, len(self.ssrcs), body) + body


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye


def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """Parse a compound RTCP packet: SR, RR, SDES and BYE are returned, other types
    (APP, feedback...) skipped."""
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
        if b0 & 0x20:  # padding: the last octet counts the padding octets
            padding = data[end - 1] if end > body else 0
            if padding == 0 or padding > end - body:
                raise RtpParseError("bad RTCP padding length")
            end -= padding
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
        elif ptype == SDES:
            out.append(SourceDescription(_parse_chunks(data, body, end, count)))
        elif ptype == BYE:
            if end - body < 4 * count:
                raise RtpParseError("truncated BYE")
            ssrcs = list(struct.unpack_from(f"!{count}I", data, body))
            at = body + 4 * count
            reason = ""
            if at < end:
                size = data[at]
                if at + 1 + size > end:
                    raise RtpParseError("BYE reason exceeds packet")
                reason = data[at + 1 : at + 1 + size].decode("utf-8", "replace")
            out.append(Bye(ssrcs, reason))
        pos = pos + 4 + 4 * words
    return out


def _parse_chunks(data: bytes, pos: int, end: int, count: int) -> list[SdesChunk]:
    chunks: list[SdesChunk] = []
    for _ in range(count):
        if end - pos < 4:
            raise RtpParseError("truncated SDES chunk")
        chunk = SdesChunk(struct.unpack_from("!I", data, pos)[0])
        pos += 4
        while pos < end:  # a chunk cut short at the packet's end is accepted as is
            kind = data[pos]
            if kind == 0:
                pos += 4 - pos % 4  # the null item and padding up to the next 32-bit word
                break
            if pos + 2 > end or pos + 2 + data[pos + 1] > end:
                raise RtpParseError("SDES item exceeds packet")
            size = data[pos + 1]
            chunk.items.append((kind, data[pos + 2 : pos + 2 + size]))
            pos += 2 + size
        chunks.append(chunk)
    return chunks


def ntp_timestamp(unix_time: float) -> int:
    """64-bit NTP timestamp for a Unix time (for SR)."""
    seconds = unix_time + 2208988800
    return (int(seconds) << 32 | int((seconds % 1) * (1 << 32))) & 0xFFFFFFFFFFFFFFFF


def ntp_middle(ntp: int) -> int:
    """The middle 32 bits of a 64-bit NTP timestamp (LSR, and RTT arithmetic)."""
    return (ntp >> 16) & 0xFFFFFFFF


# -- report scheduling (RFC 3550 §6.2, §6.3.1, appendix A.7)

MIN_INTERVAL = 5.0  # seconds between reports; half of it before the first one
COMPENSATION = math.e - 1.5  # divides the randomised interval (§6.3.1)
HEADER_OVERHEAD = 28  # IPv4 + UDP octets counted in the average RTCP size (§6.2)
# G.711 at 20 ms: 160 + 12 (RTP) + 28 octets every 20 ms; RTCP gets 5% of it.
SESSION_BANDWIDTH = 10_000.0  # octets per second


def report_interval(*, members: int, senders: int, we_sent: bool, rtcp_bandwidth: float,
                    avg_rtcp_size: float, initial: bool, rand: float,
                    min_interval: float = MIN_INTERVAL) -> float:
    """Seconds until the next report (RFC 3550 §6.3.1 / A.7); ``rand`` is uniform in [0, 1).

    The deterministic interval is at least ``min_interval`` (half of it before the
    first report), randomised to 0.5-1.5 times and divided by e-3/2."""
    t_min = min_interval / 2 if initial else min_interval
    n = members
    if 0 < senders <= members * 0.25:  # senders share a quarter of the bandwidth
        if we_sent:
            rtcp_bandwidth *= 0.25
            n = senders
        else:
            rtcp_bandwidth *= 0.75
            n = members - senders
    t = max(avg_rtcp_size * n / rtcp_bandwidth, t_min)
    return t * (rand + 0.5) / COMPENSATION


@dataclass
class PeerReport:
    """What the peer last reported about our stream (its report block for our SSRC)."""

    reports: int = 0
    fraction_lost: float = 0.0  # 0..1, over the peer's last report interval
    cumulative_lost: int = 0
    jitter_ms: float = 0.0
    rtt_ms: float | None = None  # from LSR/DLSR (§6.4.1), once the peer echoes our SR
    sender_reports: int = 0  # SRs received from the peer
    bye: bool = False

    def as_dict(self) -> dict[str, object]:
        return {"reports": self.reports, "fraction_lost": round(self.fraction_lost, 4),
                "cumulative_lost": self.cumulative_lost, "jitter_ms": round(self.jitter_ms, 2),
                "rtt_ms": None if self.rtt_ms is None else round(self.rtt_ms, 2),
                "sender_reports": self.sender_reports, "bye": self.bye}


class RtcpSession:
    """RTCP for one RTP session with one peer: builds our compound reports (SR or RR,
    then SDES CNAME; BYE last when leaving), times them and digests the peer's.

    ``now`` is a monotonic clock and ``wall`` Unix time (for NTP timestamps), both in
    seconds. The caller owns the sockets and the timer."""

    def __init__(self, sender: RtpSender, stats: ReceiverStats, *, cname: str | None = None,
                 min_interval: float = MIN_INTERVAL,
                 session_bandwidth: float = SESSION_BANDWIDTH) -> None:
        self.sender = sender
        self.stats = stats
        # RFC 7022: a random CNAME per session, not user@host
        self.cname = cname if cname is not None else secrets.token_urlsafe(12)
        self.min_interval = min_interval
        self.rtcp_bandwidth = 0.05 * session_bandwidth
        self.avg_rtcp_size = 100.0 + HEADER_OVERHEAD  # refined by every packet (§6.3.3)
        self.initial = True
        self.peer = PeerReport()
        self.reports_sent = 0
        self._sent_marks = (0, 0)  # packets_sent at the last two reports (for we_sent)
        self._received_mark = 0  # stats.received at the last report
        self._peer_sending = False
        self._lsr = 0  # middle 32 bits of the peer's last SR, and when it arrived
        self._lsr_at = 0.0
        self._lsr_ssrc: int | None = None

    @property
    def we_sent(self) -> bool:
        """We sent RTP since the last-but-one report: report as a sender (§6.4)."""
        return self.sender.packets_sent > self._sent_marks[0]

    def next_interval(self, rand: float) -> float:
        peer_seen = self.stats.ssrc is not None or self._lsr_ssrc is not None
        senders = int(self.we_sent) + int(self._peer_sending)
        return report_interval(members=1 + int(peer_seen), senders=senders, we_sent=self.we_sent,
                               rtcp_bandwidth=self.rtcp_bandwidth, avg_rtcp_size=self.avg_rtcp_size,
                               initial=self.initial, rand=rand, min_interval=self.min_interval)

    def report_block(self, now: float) -> ReportBlock | None:
        """Reception report for the peer's stream, if it sent since our last report."""
        st = self.stats
        if st.ssrc is None or st.received == self._received_mark:
            return None
        self._received_mark = st.received
        lost = max(-(1 << 23), min((1 << 23) - 1, st.expected - st.received))
        lsr = dlsr = 0
        if self._lsr_ssrc == st.ssrc:
            lsr = self._lsr
            dlsr = min(0xFFFFFFFF, int((now - self._lsr_at) * 65536))
        return ReportBlock(st.ssrc, st.fraction_lost(), lost, st.extended_max & 0xFFFFFFFF,
                           min(0xFFFFFFFF, int(st.jitter)), lsr, dlsr)

    def build_report(self, now: float, wall: float, rtp_timestamp: int | None = None,
                     bye_reason: str | None = None) -> bytes:
        """Our compound packet: SR (if we sent lately) or RR, SDES CNAME, and BYE when
        ``bye_reason`` is given. ``rtp_timestamp`` is our media clock at ``wall``."""
        blocks = [b] if (b := self.report_block(now)) is not None else []
        first: SenderReport | ReceiverReport
        if self.we_sent:
            ts = self.sender.timestamp if rtp_timestamp is None else rtp_timestamp
            first = SenderReport(self.sender.ssrc, ntp_timestamp(wall), ts & 0xFFFFFFFF,
                                 self.sender.packets_sent & 0xFFFFFFFF,
                                 self.sender.octets_sent & 0xFFFFFFFF, blocks)
        else:
            first = ReceiverReport(self.sender.ssrc, blocks)
        sdes = SourceDescription([SdesChunk(self.sender.ssrc, [(CNAME, self.cname.encode())])])
        data = first.serialize() + sdes.serialize()
        if bye_reason is not None:
            data += Bye([self.sender.ssrc], bye_reason).serialize()
        self._sent_marks = (self._sent_marks[1], self.sender.packets_sent)
        self.initial = False
        self.reports_sent += 1
        self._average(len(data))
        return data

    def bye(self, now: float, wall: float, rtp_timestamp: int | None = None,
            reason: str = "") -> bytes | None:
        """The last compound packet, ending in BYE; None if we never sent RTP or RTCP
        (such a participant must not send BYE, §6.3.7)."""
        if not self.reports_sent and not self.sender.packets_sent:
            return None
        return self.build_report(now, wall, rtp_timestamp, bye_reason=reason)

    def receive(self, data: bytes, now: float, wall: float) -> list[RtcpPacket]:
        """Digest a compound packet from the peer (raises RtpParseError if malformed)."""
        packets = parse_rtcp(data)
        self._average(len(data))
        arrival = ntp_middle(ntp_timestamp(wall))
        for pkt in packets:
            if isinstance(pkt, SenderReport | ReceiverReport):
                if pkt.ssrc == self.sender.ssrc:
                    continue  # our own packet looped back
                if isinstance(pkt, SenderReport):
                    self._lsr, self._lsr_at, self._lsr_ssrc = ntp_middle(pkt.ntp_timestamp), now, pkt.ssrc
                    self.peer.sender_reports += 1
                    self._peer_sending = True
                for block in pkt.reports:
                    if block.ssrc == self.sender.ssrc:
                        self._peer_block(block, arrival)
            elif isinstance(pkt, Bye) and any(s != self.sender.ssrc for s in pkt.ssrcs):
                self.peer.bye = True
                self._peer_sending = False
        return packets

    def _peer_block(self, block: ReportBlock, arrival: int) -> None:
        p = self.peer
        p.reports += 1
        p.fraction_lost = block.fraction_lost / 256
        p.cumulative_lost = block.packets_lost
        p.jitter_ms = 1000.0 * block.jitter / self.sender.clock_rate
        if block.last_sr:
            rtt = (arrival - block.last_sr - block.delay_since_last_sr) & 0xFFFFFFFF
            if rtt < 1 << 31:  # a negative RTT (clock oddities) is not recorded
                p.rtt_ms = 1000.0 * rtt / 65536

    def _average(self, size: int) -> None:
        self.avg_rtcp_size += (size + HEADER_OVERHEAD - self.avg_rtcp_size) / 16
