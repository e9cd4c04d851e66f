"""A scripted SIP caller on loopback, built from voxd's own stack: the sans-IO
`UserAgent` (INVITE/ACK/BYE, REFER with NOTIFY) on a UDP socket, SDP from
`voxd.proto.negotiate`, G.711 RTP from `voxd.proto.rtp`/`g711` and RFC 4733 digits
from `voxd.proto.rfc4733`.

A pump task sends one 20 ms packet every 20 ms of wall-clock time: the caller's queued
audio, else silence, with queued DTMF events in its place. Received RTP is decoded and
logged on the caller's own stream clock (`voxd.suites.wire.WireLog`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

import numpy as np

from voxd.proto import negotiate
from voxd.proto.g711 import ulaw_decode, ulaw_encode
from voxd.proto.rfc4733 import DtmfSender, ScheduledPacket
from voxd.proto.rtp import RtpPacket, RtpParseError, RtpSender, is_rtcp
from voxd.proto.sdp import SdpParseError, SessionDescription
from voxd.proto.sip import UAConfig, UserAgent
from voxd.proto.sip import events as ev
from voxd.suites.wire import FRAME, RATE, WireLog, is_sound

log = logging.getLogger("voxd.suites.sip")

Addr = tuple[str, int]
FRAME_S = FRAME / RATE
SILENT = ulaw_encode(np.zeros(FRAME, np.int16))


def trailing_quiet(pcm8k: np.ndarray) -> int:
    """Samples of silence after the last sounding 20 ms frame (whole frames, as sent)."""
    frames = (len(pcm8k) + FRAME - 1) // FRAME
    for k in range(frames - 1, -1, -1):
        if is_sound(pcm8k[k * FRAME:(k + 1) * FRAME]):
            return (frames - 1 - k) * FRAME
    return frames * FRAME


class CallRefused(Exception):
    pass


class _Sip(asyncio.DatagramProtocol):
    def __init__(self, caller: SipCaller) -> None:
        self.caller = caller

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.caller.on_sip(data, (addr[0], addr[1]))


class _Rtp(asyncio.DatagramProtocol):
    def __init__(self, caller: SipCaller) -> None:
        self.caller = caller

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.caller.on_rtp(data)


class SipCaller:
    """One call to ``target`` (``sip:agent@127.0.0.1:5080``) via ``peer``."""

    def __init__(self, target: str, peer: Addr, host: str = "127.0.0.1", from_user: str = "caller") -> None:
        self.target, self.peer, self.host, self.from_user = target, peer, host, from_user
        self.log = WireLog()
        self.call_id = ""
        self.answered = asyncio.get_running_loop().create_future()
        self.bye_received = False
        self.ended = asyncio.Event()
        self.ua: UserAgent | None = None
        self._sip: asyncio.DatagramTransport | None = None
        self._rtp: asyncio.DatagramTransport | None = None
        self._remote: Addr | None = None
        self._dtmf_pt: int | None = None
        self._sender = RtpSender(0)
        self._audio: deque[bytes] = deque()  # queued caller frames (mu-law, 20 ms each)
        self._dtmf: deque[ScheduledPacket] = deque()
        self._drained = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._offer: SessionDescription | None = None

    # ------------------------------------------------------------ set-up
    async def call(self, timeout_s: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        self._sip, _ = await loop.create_datagram_endpoint(lambda: _Sip(self), local_addr=(self.host, 0))
        self._rtp, _ = await loop.create_datagram_endpoint(lambda: _Rtp(self), local_addr=(self.host, 0))
        sip_port = self._sip.get_extra_info("sockname")[1]
        rtp_port = self._rtp.get_extra_info("sockname")[1]
        self.ua = UserAgent(UAConfig(self.host, sip_port, user=self.from_user, user_agent="voxd-test"))
        self._offer = negotiate.offer(self.host, rtp_port, ("PCMU",), rtcp_mux=True)
        self.call_id = self.ua.invite(self.target, time.monotonic(), sdp=self._offer.serialize(), peer=self.peer,
                                      from_user=self.from_user)
        self._flush()
        async with asyncio.timeout(timeout_s):
            await self.answered
        self._pump = asyncio.ensure_future(self._run_pump())

    def _established(self, answer: bytes) -> None:
        assert self._offer is not None
        try:
            neg = negotiate.accept_answer(self._offer, SessionDescription.parse(answer))
        except (SdpParseError, negotiate.SdpNegotiationError) as e:
            self.answered.set_exception(CallRefused(f"unusable SDP answer: {e}"))
            return
        self._remote = neg.remote_address
        self._dtmf_pt = neg.telephone_event.payload_type if neg.telephone_event is not None else None
        self.answered.set_result(None)

    # ------------------------------------------------------------ SIP
    def on_sip(self, data: bytes, addr: Addr) -> None:
        assert self.ua is not None
        for e in self.ua.receive(data, addr, time.monotonic()):
            self._on_event(e)
        self._flush()

    def _on_event(self, e: ev.Event) -> None:
        assert self.ua is not None
        if isinstance(e, ev.CallEstablished) and not self.answered.done():
            self._established(e.answer)
        elif isinstance(e, ev.CallFailed) and not self.answered.done():
            self.answered.set_exception(CallRefused(f"{e.status} {e.reason}"))
            self.ended.set()
        elif isinstance(e, ev.ByeReceived):
            self.bye_received = True
            self.ended.set()
        elif isinstance(e, ev.CallTerminated):
            self.ended.set()
        elif isinstance(e, ev.ReferReceived):
            self.log.transfers.append(e.refer_to)  # taken, as a carrier would: NOTIFY 200
            self.ua.notify_refer(e.call_id, 200, time.monotonic())

    def _flush(self) -> None:
        if self.ua is None or self._sip is None:
            return
        for data, addr in self.ua.data_to_send():
            self._sip.sendto(data, addr)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.ua.next_deadline()
        if deadline is not None:
            self._timer = asyncio.get_running_loop().call_later(max(0.0, deadline - time.monotonic()), self._poll)

    def _poll(self) -> None:
        assert self.ua is not None
        self._timer = None
        for e in self.ua.poll(time.monotonic()):
            self._on_event(e)
        self._flush()

    # ------------------------------------------------------------ RTP
    def on_rtp(self, data: bytes) -> None:
        if is_rtcp(data):
            return
        try:
            pkt = RtpPacket.parse(data)
        except RtpParseError:
            return
        if pkt.payload_type != 0:
            return
        elapsed = time.monotonic() - self._sent_at
        at = self.log.position + min(FRAME, max(0, round(elapsed * RATE)))
        self.log.received(ulaw_decode(pkt.payload), at)

    _sent_at = 0.0

    def _send(self, data: bytes) -> None:
        if self._rtp is not None and self._remote is not None:
            self._rtp.sendto(data, self._remote)

    async def _run_pump(self) -> None:
        loop = asyncio.get_running_loop()
        nxt = loop.time()
        dtmf_t0: float | None = None
        while not self.ended.is_set():
            if self._dtmf:
                dtmf_t0 = nxt if dtmf_t0 is None else dtmf_t0
                while self._dtmf and self._dtmf[0].at <= nxt - dtmf_t0 + 1e-6:
                    self._send(self._dtmf.popleft().packet.serialize())
                if not self._dtmf:
                    dtmf_t0 = None
            else:
                payload = self._audio.popleft() if self._audio else SILENT
                self._send(self._sender.packet(payload, FRAME).serialize())
            self._sent_at = time.monotonic()
            self.log.position += FRAME
            if not self._audio and not self._dtmf:
                self._drained.set()
            nxt += FRAME_S
            await asyncio.sleep(max(0.0, nxt - loop.time()))
        self._drained.set()

    # ------------------------------------------------------------ what the runner does
    async def play(self, pcm8k: np.ndarray, *, speech: bool = True) -> None:
        """Send ``pcm8k`` (int16, 8 kHz) in real time; returns when it has all gone out."""
        pcm = np.asarray(pcm8k, np.int16)
        data = ulaw_encode(pcm)
        for i in range(0, len(data), FRAME):
            self._audio.append((data[i:i + FRAME] + SILENT)[:FRAME])
        await self._wait_drained()
        if speech:  # the end of speech is the last sound sent, not the file's trailing silence
            self.log.speech_ended(self.log.position - trailing_quiet(pcm))

    async def digits(self, digits: str, gap_ms: int = 150) -> None:
        if self._dtmf_pt is None:
            raise CallRefused("the answer offered no telephone-event: cannot send RFC 4733 digits")
        self._dtmf.extend(DtmfSender(self._sender, self._dtmf_pt).packets(digits, duration_ms=100, gap_ms=gap_ms))
        await self._wait_drained()

    async def _wait_drained(self) -> None:
        self._drained.clear()
        if not self._audio and not self._dtmf:
            return
        waiter = asyncio.ensure_future(self._drained.wait())
        ended = asyncio.ensure_future(self.ended.wait())
        await asyncio.wait({waiter, ended}, return_when=asyncio.FIRST_COMPLETED)
        for t in (waiter, ended):
            t.cancel()

    async def hangup(self) -> None:
        if self.ua is not None and not self.ended.is_set():
            try:
                self.ua.bye(self.call_id, time.monotonic())
            except KeyError:
                pass
            self._flush()
            self.ended.set()

    async def close(self) -> None:
        await self.hangup()
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
        await asyncio.sleep(0.05)  # let the BYE's 200 come back
        if self._timer is not None:
            self._timer.cancel()
        for t in (self._sip, self._rtp):
            if t is not None:
                t.close()
