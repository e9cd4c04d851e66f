"""One call's RTP media: a UDP socket, G.711, G.722 or Opus in and out, RFC 4733 and in-band DTMF.

Clocked by the shared MediaClock (through the call's CallLeg): each tick plays one
frame out of the jitter buffer into the call and sends one 20 ms packet of bot audio
(or of silence, which keeps NAT bindings and the far end's jitter buffer happy). Bot
audio is never burst: a tick sends exactly one packet. The payloads are made and
read by the negotiated codec's object (voxd.media.codecs), which owns the
resampling; a PCMU frame that already carries mu-law (a mu-law voice) goes out as
it came. The RTP clock is the codec's (`Codec.rtp_samples` a packet: 160 for G.711
and for G.722, whose clock is 8000 although it samples at 16 kHz, 960 for Opus);
in-band DTMF is listened for on G.711 only. While RFC 4733 digits are being sent they replace the audio, and the bot's
audio is held (`sending_dtmf`: the leg does not pull it), not dropped.

RTCP (RFC 3550): every ~5 s (randomised, RtcpSession in voxd.proto.rtcp) a compound
SR/RR + SDES CNAME goes to the peer, and SR + SDES + BYE when the stream closes. It
is sent from our RTCP socket (the odd port above the RTP port, bound by PortPool) to
the peer's RTP port + 1 or its a=rtcp address, or on the RTP socket and port under
rtcp-mux. If no RTCP socket is given, reports go from the RTP socket to the peer's
RTCP port (the peer then sees them come from our RTP port). The peer's reports are
accepted on either socket; what it says about our stream is in ``rtcp.peer``.

SRTP (RFC 3711, `srtp`: a voxd.net.srtp.SrtpContext keyed by SDES): every RTP and RTCP
packet is protected on its way out, in `_send` and `_send_rtcp`, the only two places
that write to a socket, so an SRTP call never sends cleartext media; what comes in is
unprotected after the source check and before anything reads it, and a packet that
does not authenticate is counted (`srtp_dropped`) and dropped without latching.

Media is taken only from the caller (voxd.net.media_source.SourceGuard: the
signalled address, latched once) and a call whose media stops for
``inactivity_s`` while not on hold is reported through ``on_inactive``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from voxd.media import codecs
from voxd.media.codecs.g711 import G711Decoder
from voxd.media.frame import SILENCE, AudioFrame
from voxd.media.tones import DtmfDetector
from voxd.net.media_source import InactivityTimer, SourceGuard
from voxd.net.srtp import SrtpContext, SrtpError
from voxd.proto.jitter import JitterBuffer
from voxd.proto.negotiate import Negotiated
from voxd.proto.rfc4733 import DtmfReceiver, DtmfSender, ScheduledPacket
from voxd.proto.rtcp import MIN_INTERVAL, RtcpSession
from voxd.proto.rtp import ReceiverStats, RtpPacket, RtpParseError, RtpSender, is_rtcp

log = logging.getLogger("voxd.rtp")



class PortPool:
    """Even RTP ports from a configured range, each with the odd port above for RTCP.

    :meth:`bind` binds both and returns the RTP socket; the RTCP one is kept until
    :meth:`rtcp_socket` hands it over (to the stream), or closed on :meth:`release`."""

    def __init__(self, low: int, high: int) -> None:
        self._free = list(range(low + (low % 2), high, 2))
        self._used: set[int] = set()
        self._rtcp: dict[int, socket.socket] = {}

    def bind(self, host: str) -> tuple[socket.socket, int]:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for _ in range(len(self._free)):
            port = self._free.pop(0)
            socks: list[socket.socket] = []
            try:
                for p in (port, port + 1):
                    socks.append(socket.socket(family, socket.SOCK_DGRAM))
                    socks[-1].bind((host, p))
            except OSError:
                for sock in socks:
                    sock.close()
                self._free.append(port)  # in use by someone else: try later
                continue
            for sock in socks:
                sock.setblocking(False)
            self._used.add(port)
            self._rtcp[port] = socks[1]
            return socks[0], port
        raise OSError("no free RTP port pair in the configured range")

    def rtcp_socket(self, port: int | None) -> socket.socket | None:
        """The RTCP socket bound with RTP ``port``; the caller owns it from now on."""
        return self._rtcp.pop(port, None) if port is not None else None

    def release(self, port: int) -> None:
        sock = self._rtcp.pop(port, None)
        if sock is not None:
            sock.close()
        if port in self._used:
            self._used.discard(port)
            self._free.append(port)

    @property
    def in_use(self) -> int:
        return len(self._used)


@dataclass
class RtpCounters:
    received: int = 0
    sent: int = 0
    ignored: int = 0  # unknown payload types, malformed packets
    wrong_source: int = 0  # RTP/RTCP from an address that is not the caller's: dropped
    send_errors: int = 0
    rtcp_sent: int = 0
    rtcp_received: int = 0
    srtp_dropped: int = 0  # SRTP/SRTCP that did not authenticate (or replayed): dropped


class _RtcpPort(asyncio.DatagramProtocol):
    """The odd-port socket: hands the peer's RTCP to its stream."""

    def __init__(self, stream: RtpStream) -> None:
        self.stream = stream

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.stream.rtcp_received(data, addr, on_rtcp_port=True)

    def error_received(self, exc: Exception) -> None:
        log.debug("rtcp socket error: %s", exc)


class RtpStream(asyncio.DatagramProtocol):
    def __init__(
        self,
        neg: Negotiated,
        on_audio: Callable[[AudioFrame], None] | None,
        on_dtmf: Callable[[str, str], None],
        next_frame: Callable[[], AudioFrame | None] | None,
        *,
        rtcp_min_interval: float = MIN_INTERVAL,
        signalled_hosts: tuple[str, ...] = (),
        inactivity_s: float = 0.0,
        on_inactive: Callable[[], None] | None = None,
        srtp: SrtpContext | None = None,
    ) -> None:
        self.neg = neg
        self.srtp = srtp
        self.remote = neg.remote_address
        self.guard = SourceGuard(neg.remote_address, signalled_hosts)
        self.inactivity = InactivityTimer(inactivity_s, time.monotonic())
        self.on_inactive = on_inactive
        self._ticks = 0
        self.on_audio = on_audio
        self.on_dtmf = on_dtmf
        self.next_frame = next_frame
        self.codec_pt = neg.codec.payload_type
        self.dtmf_pt = neg.telephone_event.payload_type if neg.telephone_event else None
        self.codec = codecs.get(neg.codec.name, neg.codec.clock_rate)
        self._enc = self.codec.encoder()
        self._dec = self.codec.decoder()
        self._samples = self.codec.rtp_samples  # timestamp units a packet
        rate = self.codec.clock_rate
        self.jitter = JitterBuffer(clock_rate=rate)
        self.stats = ReceiverStats(clock_rate=rate)
        self.sender = RtpSender(self.codec_pt, clock_rate=rate)
        self.dtmf_rx_types = set(neg.dtmf_payload_types)
        self.dtmf_rx = DtmfReceiver(self.dtmf_rx_types, rate)
        self.dtmf_tx = DtmfSender(self.sender, self.dtmf_pt) if self.dtmf_pt is not None else None
        self.inband = DtmfDetector(8000) if self.dtmf_pt is None and isinstance(self._dec, G711Decoder) else None
        self._silence = self.codec.silence()
        self._dtmf_out: list[ScheduledPacket] = []
        self._dtmf_started = 0.0
        self.transport: asyncio.DatagramTransport | None = None
        self.counters = RtpCounters()
        self.on_hold = neg.on_hold
        self.latched = False
        self.rtcp = RtcpSession(self.sender, self.stats, min_interval=rtcp_min_interval)
        self.rtcp_transport: asyncio.DatagramTransport | None = None
        self._rtcp_latched: tuple[str, int] | None = None  # where the peer's RTCP comes from
        self._rtcp_timer: asyncio.TimerHandle | None = None
        self._clock_ref: tuple[int, float] | None = None  # (RTP timestamp, monotonic time)
        self.closed = False

    async def open(self, sock: socket.socket, rtcp_sock: socket.socket | None = None) -> None:
        """Attach the RTP socket (and the RTCP one, if any) and start reporting."""
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, sock=sock)
        self.inactivity.heard(time.monotonic())  # the clock starts when the call's media does
        if rtcp_sock is not None:
            if self.neg.rtcp_mux:
                rtcp_sock.close()  # everything goes over the RTP port
            else:
                transport, _ = await loop.create_datagram_endpoint(lambda: _RtcpPort(self), sock=rtcp_sock)
                self.rtcp_transport = transport
        if self.closed:
            self.close()
            return
        self._schedule_rtcp()

    # -- asyncio
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if self.remote is not None and sock is not None:
            ipv6 = sock.family == socket.AF_INET6
            if (":" in self.remote[0]) != ipv6:
                # the offer named an address we cannot reach from this socket (linphone
                # advertises IPv6 sometimes): wait for the first packet and answer there
                log.info("rtp: remote %s is not reachable from our %s socket; latching", self.remote[0],
                         "IPv6" if ipv6 else "IPv4")
                self.remote = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if is_rtcp(data):
            self.rtcp_received(data, addr, on_rtcp_port=False)
            return
        if self.srtp is not None:
            if not self.guard.admit_rtp((addr[0], addr[1]), latch=False):
                self.counters.wrong_source += 1
                return
            try:
                data = self.srtp.unprotect(data)
            except SrtpError:
                self.counters.srtp_dropped += 1
                return
        if not self.guard.admit_rtp((addr[0], addr[1])):
            self.counters.wrong_source += 1
            return
        try:
            pkt = RtpPacket.parse(data)
        except RtpParseError:
            self.counters.ignored += 1
            return
        if not self.latched:
            # symmetric RTP (NAT): answer to where the caller's media really comes from
            self.remote = (addr[0], addr[1])
            self.latched = True
        self.inactivity.heard(time.monotonic())
        if pkt.payload_type == self.codec_pt:
            self.counters.received += 1
            now = time.monotonic()
            self.stats.update(pkt, now)
            self.jitter.push(pkt, now)
        elif pkt.payload_type in self.dtmf_rx_types:
            if pkt.ssrc == self.stats.ssrc:
                self.stats.note_sequence(pkt)  # events share the audio's sequence numbers
            for d in self.dtmf_rx.feed(pkt):
                self.on_dtmf(d.digit, "rfc4733")
        else:
            self.counters.ignored += 1

    def error_received(self, exc: Exception) -> None:
        log.debug("rtp socket error: %s", exc)

    # -- media clock
    def tick(self) -> None:
        self.send_tick()
        self.receive_tick()

    def receive_tick(self) -> None:
        """Play one frame of the caller into `on_audio` (or silence)."""
        if self.on_audio is not None:
            self.on_audio(self.receive_frame() or SILENCE)

    def receive_frame(self) -> AudioFrame | None:
        """The caller's next 20 ms out of the jitter buffer; None when it ran dry. Once a
        second, checks that the caller's media has not stopped (see `on_inactive`)."""
        self._ticks += 1
        if (self._ticks % 50 == 0 and self.on_inactive is not None  # checked once a second
                and self.inactivity.expired(time.monotonic(), on_hold=self.on_hold)):
            log.info("rtp: no media for %.0f s: ending the call", self.inactivity.timeout_s)
            self.on_inactive()
        payload = self.jitter.pop()
        size = self.codec.payload_bytes  # 0: variable (Opus)
        if not payload or (size and len(payload) != size):
            return None
        if not isinstance(self._dec, G711Decoder):
            return self._dec.decode_packet(payload)
        pcm8 = self._dec.narrowband(payload)
        if self.inband is not None:
            for digit in self.inband.feed(pcm8):
                self.on_dtmf(digit, "inband")
        return self._dec.decode_packet(payload, pcm8)

    @property
    def sending_dtmf(self) -> bool:
        """RFC 4733 events are going out: they replace the audio, so bot audio waits."""
        return bool(self._dtmf_out)

    def send_tick(self) -> None:
        """Send one 20 ms packet of bot audio (or silence, or a due DTMF event). While
        digits are going out the bot's audio is not taken from `next_frame` at all, so
        none of it is lost or counted as heard."""
        if self._dtmf_out:
            self._send_dtmf_due()
            return
        self.send_frame(self.next_frame() if self.next_frame is not None else None)

    def send_frame(self, out: AudioFrame | None) -> None:
        """This tick's packet: `out` encoded (None: silence), or a due DTMF event."""
        if self._dtmf_out:
            self._send_dtmf_due()
            return
        if out is None and self.codec.stateful:
            out = SILENCE  # through the encoder, which the far end's decoder follows
        data = self._silence if out is None else self._enc.encode(out)
        self._clock_ref = (self.sender.timestamp, time.monotonic())
        if self.on_hold:
            self.sender.skip(self._samples)
            return
        self._send(self.sender.packet(data, self._samples).serialize())

    def _send(self, data: bytes) -> None:
        if self.transport is not None and self.remote is not None:
            try:
                if self.srtp is not None:
                    data = self.srtp.protect(data)
                self.transport.sendto(data, self.remote)
            except (OSError, ValueError) as e:  # e.g. an address of the other family
                self.counters.send_errors += 1
                if self.counters.send_errors == 1:
                    log.warning("rtp: cannot send to %s: %s", self.remote, e)
                return
            self.counters.sent += 1

    # -- DTMF out
    def send_dtmf(self, digits: str) -> None:
        if self.dtmf_tx is None:
            raise ValueError("telephone-event was not negotiated for this call")
        self._dtmf_out = self.dtmf_tx.packets(digits)
        self._dtmf_started = time.monotonic()

    def _send_dtmf_due(self) -> None:
        elapsed = time.monotonic() - self._dtmf_started
        while self._dtmf_out and self._dtmf_out[0].at <= elapsed + 0.001:
            self._send(self._dtmf_out.pop(0).packet.serialize())
        if not self._dtmf_out:
            self.sender.start_talkspurt()

    # -- RTCP
    def rtcp_received(self, data: bytes, addr: tuple[str, int], *, on_rtcp_port: bool) -> None:
        if not self.guard.admit_rtcp((addr[0], addr[1])):
            self.counters.wrong_source += 1
            return
        if self.srtp is not None:
            try:
                data = self.srtp.unprotect_rtcp(data)
            except SrtpError:
                self.counters.srtp_dropped += 1
                return
        try:
            self.rtcp.receive(data, time.monotonic(), time.time())
        except RtpParseError:
            self.counters.ignored += 1
            return
        self.counters.rtcp_received += 1
        if on_rtcp_port and self._rtcp_latched is None:
            self._rtcp_latched = (addr[0], addr[1])  # symmetric RTCP, as for RTP

    def rtcp_destination(self) -> tuple[str, int] | None:
        if self._rtcp_latched is not None and not self.neg.rtcp_mux:
            return self._rtcp_latched
        return self.neg.rtcp_address(self.remote)

    def _schedule_rtcp(self) -> None:
        if self.closed:
            return
        delay = self.rtcp.next_interval(random.random())
        self._rtcp_timer = asyncio.get_running_loop().call_later(delay, self._rtcp_due)

    def _rtcp_due(self) -> None:
        self._rtcp_timer = None
        self._send_rtcp(self.rtcp.build_report(time.monotonic(), time.time(), self._rtp_now()))
        self._schedule_rtcp()

    def _rtp_now(self) -> int | None:
        """Our media clock now, extrapolated from the last frame (for the SR)."""
        if self._clock_ref is None:
            return None
        ts, at = self._clock_ref
        return (ts + int((time.monotonic() - at) * self.sender.clock_rate)) & 0xFFFFFFFF

    def _send_rtcp(self, data: bytes) -> None:
        dest = self.rtcp_destination()
        transport = self.rtcp_transport if self.rtcp_transport is not None else self.transport
        if transport is None or dest is None or transport.is_closing():
            return
        try:
            transport.sendto(self.srtp.protect_rtcp(data) if self.srtp is not None else data, dest)
        except (OSError, ValueError) as e:  # SrtpError is a ValueError: nothing goes out
            self.counters.send_errors += 1
            log.debug("rtcp: cannot send to %s: %s", dest, e)
            return
        self.counters.rtcp_sent += 1

    def close(self, reason: str = "") -> None:
        """Stop: RTCP BYE (if we ever sent anything), then close the sockets."""
        if self._rtcp_timer is not None:
            self._rtcp_timer.cancel()
            self._rtcp_timer = None
        if not self.closed and self.transport is not None:
            bye = self.rtcp.bye(time.monotonic(), time.time(), self._rtp_now(), reason)
            if bye is not None:
                self._send_rtcp(bye)
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        if self.rtcp_transport is not None:
            self.rtcp_transport.close()
