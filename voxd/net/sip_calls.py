"""The SIP endpoint's call table: every SIP call in progress, inbound and outbound,
with its RTP media, its limit slot and its leg.

The table owns the calls' lifetimes (adding, ending, cleaning up), the outbound
side (INVITE with our offer, early media on 183, the ring timeout; busy, cancel and
timeouts end the record with a clear reason) and the tasks it starts. It acts on the
dialogs only through `Signalling`, which the endpoint implements with its sans-IO
user agent; the endpoint maps SIP events onto the table.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from voxd.agents.loader import LoadedAgent
from voxd.call.ports import AudioFrame, EndedBy, EndReason, PlaybackFinished, TransferOutcome
from voxd.call.reply import Voice
from voxd.call.session import CallSession
from voxd.media import codecs
from voxd.media.hold import HoldAudio
from voxd.net.leg import CallLeg, LegEnv
from voxd.net.rtp import PortPool, RtpStream
from voxd.net.srtp import SrtpContext
from voxd.proto import negotiate, secure_sdp
from voxd.proto.sdes import CryptoAttribute, Policy
from voxd.proto.sdp import SdpParseError, SessionDescription
from voxd.proto.sip.agent import parse_target
from voxd.proto.sip.errors import SipParseError
from voxd.proto.sip.locate import Failover

log = logging.getLogger("voxd.sip")

Addr = tuple[str, int]
FAILURE_REASONS: dict[int, EndReason] = {486: "busy", 600: "busy", 603: "declined", 487: "cancelled", 408: "no_answer",
                                         480: "unavailable", 404: "not_found"}


class Signalling(Protocol):
    """What the table asks of the SIP endpoint's user agent (each call sends what it queued)."""

    host: str  # our address as peers see it

    def bye(self, call: SipCall) -> None: ...

    def refer(self, call: SipCall, target: str) -> None: ...

    def invite(self, uri: str, sdp: bytes, peer: Addr, from_user: str, **options: Any) -> str:
        """Send an INVITE; returns the new dialog's Call-ID. ``options`` go to
        UserAgent.invite (a trunk's from_host, display_name, route, credentials, headers)."""

    def cancel(self, call_id: str) -> None: ...

    async def attended_transfer(self, call: SipCall, target: str, summary: str,
                                voice: Voice) -> TransferOutcome: ...


class SipCall:
    """One SIP call: dialog id and RTP stream; the Wire and TransportControl of its leg."""

    def __init__(self, table: SipCallTable, call_id: str, source: Addr) -> None:
        self.table = table
        self.call_id = call_id
        self.source = source
        self.rtp: RtpStream | None = None
        self.rtp_port: int | None = None
        self.session: CallSession | None = None
        self.leg: CallLeg | None = None
        self.transfer_result: asyncio.Future[bool] | None = None
        self.ended = False
        self.bye_sent = False
        self.holds_slot = False  # counted in the table's per-source limit
        self.outbound_offer: SessionDescription | None = None  # set for calls we place
        self.outbound_sock: socket.socket | None = None
        self.srtp_policy: Policy = "off"  # the trunk's (or sip.srtp): what this call offered or answered
        self.outbound_cryptos: list[CryptoAttribute] = []  # our offer's a=crypto lines
        # RFC 3263 failover (trunk calls): the targets left, and how the INVITE was sent
        self.failover: Failover | None = None
        self.invite_args: tuple[str, str, dict[str, Any]] | None = None  # (uri, from_user, options)
        # hold (voxd/net/sip_hold.py) and attended transfer (voxd/net/sip_attended.py)
        self.remote_hold = False  # the caller put us on hold (its re-INVITE)
        self.hold_audio: HoldAudio | None = None  # we hold the caller: this is what it hears
        self.attended = False  # an attended transfer is under way: its flow ends the call
        self.consult = False  # an attended transfer's call to the target (no session of its own)
        self.answered: asyncio.Future[bytes | None] | None = None  # consult: the target's answer SDP
        self.failed_status: int | None = None  # consult: how the target refused
        self.gone = asyncio.Event()  # set once the call is cleaned up

    # TransportControl
    async def hangup(self) -> None:
        self.table.signalling.bye(self)

    async def transfer(self, target: str) -> bool:
        loop = asyncio.get_running_loop()
        self.transfer_result = loop.create_future()
        try:
            self.table.signalling.refer(self, target)
        except (KeyError, SipParseError, ValueError) as e:
            log.warning("call %s: cannot transfer to %s: %s", self.call_id, target, e)
            return False
        try:
            async with asyncio.timeout(30):
                return await self.transfer_result
        except TimeoutError:
            return False

    async def send_dtmf(self, digits: str) -> None:
        if self.rtp is not None:
            self.rtp.send_dtmf(digits)

    async def attended_transfer(self, target: str, summary: str, voice: Voice) -> TransferOutcome:
        return await self.table.signalling.attended_transfer(self, target, summary, voice)

    # Wire
    def receive(self) -> AudioFrame | None:
        return self.rtp.receive_frame() if self.rtp is not None else None

    @property
    def holding(self) -> bool:
        """No bot speech this tick: digits are going out, or the caller is on hold."""
        return self.rtp is not None and (self.rtp.sending_dtmf or self.remote_hold or self.hold_audio is not None)

    def send(self, frame: AudioFrame | None) -> None:
        if self.rtp is not None:
            if self.hold_audio is not None and not self.rtp.sending_dtmf:
                frame = self.hold_audio.next_frame()
            self.rtp.send_frame(frame)

    def clear(self) -> PlaybackFinished | None:
        return None  # bot audio is pulled one frame per tick: nothing is queued below the session

    def release(self) -> None:
        self.table.session_ended(self)

    def _dtmf(self, digit: str, source: str) -> None:
        if self.leg is not None:
            self.leg.dtmf(digit, source)


class SipCallTable:
    def __init__(self, env: LegEnv, ports: PortPool, signalling: Signalling, bind_host: str, *,
                 rtp_timeout_s: float = 0.0) -> None:
        self.env = env
        self.rtp_timeout_s = rtp_timeout_s
        self.ports = ports
        self.signalling = signalling
        self.bind_host = bind_host
        self.calls: dict[str, SipCall] = {}
        self.per_source: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.on_cleanup: Callable[[SipCall], None] | None = None  # the call is gone (its SIP trace is kept)

    def get(self, call_id: str) -> SipCall | None:
        return self.calls.get(call_id)

    @property
    def active(self) -> int:
        return sum(self.per_source.values())

    def add(self, call: SipCall) -> None:
        """The call is admitted: it counts against the limits until its dialog ends."""
        self.calls[call.call_id] = call
        self.per_source[call.source[0]] += 1
        call.holds_slot = True

    def rtp_stream(self, call: SipCall, neg: negotiate.Negotiated) -> RtpStream:
        """The call's RTP stream: media only from the hosts the call was signalled from
        and named, latched once; ended with a BYE when media stops (not on hold); SRTP
        when the offer/answer gave keys."""
        return RtpStream(
            neg, None, call._dtmf, None,
            signalled_hosts=(call.source[0],), inactivity_s=self.rtp_timeout_s,
            on_inactive=lambda: self.end(call, "media_timeout", "system"),
            srtp=SrtpContext.from_keys(neg.srtp) if neg.srtp is not None else None,
        )

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------ outbound
    async def dial(self, agent: LoadedAgent, target: str, *, codec_names: list[str], from_user: str = "voxd",
                   ring_timeout_s: float = 45.0, peer: Addr | None = None,
                   invite_options: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None,
                   srtp: Policy = "off", variables: dict[str, str] | None = None,
                   failover: Failover | None = None) -> CallSession:
        """Place a call to `target` (sip:user@host[:port]); returns the session at once.
        The session starts (the agent speaks first only if it has a greeting) when answered.
        ``srtp``: the trunk's policy (SDES a=crypto offered; RTP/SAVP when required).
        ``failover``: the other targets of a trunk's DNS name (:meth:`retarget`)."""
        uri = parse_target(target)
        peer = peer or (uri.host, uri.port or 5060)  # a trunk's proxy, else the target's host
        host = self.signalling.host
        sock, port = self.ports.bind(self.bind_host)
        offer, cryptos = secure_sdp.offer(host, port, codec_names, policy=srtp, session_id=int(time.time()))
        call_id = self.signalling.invite(uri.serialize(), offer.serialize(), peer, from_user, **(invite_options or {}))
        call = SipCall(self, call_id, peer)
        call.failover = failover
        call.invite_args = (uri.serialize(), from_user, dict(invite_options or {}))
        call.srtp_policy, call.outbound_cryptos = srtp, cryptos
        call.rtp_port = port
        call.outbound_offer = offer
        call.outbound_sock = sock
        leg = CallLeg(self.env, "sip", call, call)
        session = leg.admit(agent, from_uri=f"sip:{from_user}@{host}", to_uri=uri.serialize(),
                            direction="outbound", metadata={"sip_call_id": call_id, **(metadata or {})},
                            variables=variables)
        call.session, call.leg = session, leg
        self.add(call)
        self.spawn(self._ring_timeout(call, ring_timeout_s))
        return session

    def retarget(self, call: SipCall, peer: Addr) -> str:
        """The INVITE again, to the next target (RFC 3263 §4.3: the previous one timed out,
        answered 503 or could not be reached): a new transaction and Call-ID, the same
        offer; the call keeps its session and media port."""
        assert call.invite_args is not None and call.outbound_offer is not None
        uri, from_user, options = call.invite_args
        old = call.call_id
        call_id = self.signalling.invite(uri, call.outbound_offer.serialize(), peer, from_user, **options)
        self.release_slot(call)
        self.calls.pop(old, None)
        call.call_id, call.source = call_id, peer
        self.add(call)
        if call.session is not None:
            call.session.record.metadata["sip_call_id"] = call_id
        return call_id

    async def _ring_timeout(self, call: SipCall, after_s: float) -> None:
        await asyncio.sleep(after_s)
        if call.rtp is None or (call.session is not None and call.session.record.answered_at is None):
            try:
                self.signalling.cancel(call.call_id)
            except KeyError:
                pass

    async def start_media(self, call: SipCall, answer_sdp: bytes, *, early: bool) -> bool:
        """Bind the RTP stream to the callee's answer (200, or 183 early media)."""
        if call.rtp is not None or call.session is None or call.outbound_offer is None:
            return call.rtp is not None
        try:
            neg = secure_sdp.accept_answer(call.outbound_offer, call.outbound_cryptos,
                                           SessionDescription.parse(answer_sdp), policy=call.srtp_policy)
        except (SdpParseError, negotiate.SdpNegotiationError) as e:
            log.info("call %s: answer refused: %s", call.call_id, e)
            return False
        stream = self.rtp_stream(call, neg)
        if call.leg is not None:
            call.leg.codec = codecs.get(neg.codec.name, neg.codec.clock_rate)
        assert call.outbound_sock is not None
        await stream.open(call.outbound_sock, self.ports.rtcp_socket(call.rtp_port))
        call.rtp = stream
        s = call.session
        s.record.metadata["codec"] = neg.codec.name
        s.record.metadata["srtp"] = neg.srtp.suite if neg.srtp is not None else None
        if early:
            s.record.metadata["early_media"] = True
        return True

    async def answered(self, call: SipCall, answer: bytes) -> None:
        """Our INVITE was answered with `answer`: media on it, and the agent starts."""
        if not await self.start_media(call, answer, early=False):
            self.end(call, "bad_answer_sdp", "system")
            self.signalling.bye(call)
            return
        assert call.leg is not None
        await call.leg.answered()

    async def early_media(self, call: SipCall, sdp: bytes) -> None:
        if await self.start_media(call, sdp, early=True) and call.leg is not None:
            call.leg.start_media()  # listen (and stay quiet) before the answer

    # ------------------------------------------------------------ the end
    def release_slot(self, call: SipCall) -> None:
        """A call stops counting against the limits as soon as its dialog ends."""
        if call.holds_slot:
            call.holds_slot = False
            src = call.source[0]
            self.per_source[src] -= 1
            if self.per_source[src] <= 0:
                del self.per_source[src]

    def end(self, call: SipCall, reason: EndReason, by: EndedBy) -> None:
        """The dialog ended (or failed): end the call's leg, which releases its media."""
        self.release_slot(call)
        if call.leg is not None and call.session is not None and not call.session.closed:
            self.spawn(call.leg.end(reason, by))
        else:
            self.cleanup(call)

    def session_ended(self, call: SipCall) -> None:
        # the session closed (either side): make sure the dialog ends too
        if not call.ended and call.session is not None and call.session.record.ended_by != "caller":
            self.signalling.bye(call)
        self.cleanup(call)

    def cleanup(self, call: SipCall) -> None:
        if call.ended:
            return
        call.ended = True
        call.gone.set()
        if call.answered is not None and not call.answered.done():
            call.answered.set_result(None)
        if call.rtp is None and call.outbound_sock is not None:
            call.outbound_sock.close()
        if call.rtp is not None:
            stats = call.rtp
            if call.session is not None:
                call.session.record.metadata["rtp"] = {
                    "received": stats.counters.received, "sent": stats.counters.sent,
                    "ignored": stats.counters.ignored, "lost": stats.stats.lost,
                    "srtp_dropped": stats.counters.srtp_dropped,
                    "jitter_ms": round(stats.stats.jitter_ms, 2),
                    # RTCP: what the peer reported about our stream (loss, jitter, RTT)
                    "rtcp": {"sent": stats.counters.rtcp_sent, "received": stats.counters.rtcp_received,
                             "peer": stats.rtcp.peer.as_dict()},
                }
            call.rtp.close()
        if call.rtp_port is not None:
            self.ports.release(call.rtp_port)
        self.calls.pop(call.call_id, None)
        self.release_slot(call)
        if self.on_cleanup is not None:
            self.on_cleanup(call)

    async def close_all(self) -> None:
        for call in list(self.calls.values()):
            if call.leg is not None and call.session is not None and not call.session.closed:
                await call.leg.end("shutdown", "system")
            self.cleanup(call)

    def cancel_tasks(self) -> None:
        for t in list(self._tasks):
            t.cancel()
