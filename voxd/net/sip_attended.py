"""Attended (warm) transfer of a SIP call (RFC 5589 §7, REFER + Replaces RFC 3891).

    caller <== call ==> voxd                                         target
      re-INVITE sendonly (hold audio) <--
                                      -- INVITE (the consultation) -->
                                      <-- 200 / ACK ------------------
                                      -- the agent's voice: summary -->
      REFER Refer-To: <target-contact?Replaces=consult;to-tag;from-tag> <--
      --> 202, NOTIFY message/sipfrag 100 ... 200
      (the caller INVITEs the target with Replaces; the target drops our consultation)
      <-- BYE (ours to the caller), and to the target if it did not end it

Anything that goes wrong before the caller is handed over (the target does not answer
within sip.transfer_ring_s, hangs up during the summary, the REFER is refused or its
NOTIFY reports a failure) ends the consultation, takes the caller off hold and tells
the agent why (`TransferOutcome.reason`); the call carries on.

The consultation is a SIP call without a session of its own (`SipCall.consult`): its
media is driven here on the process's media clock (the summary out, whatever the
target says read and dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from voxd.call.ports import TransferOutcome
from voxd.call.reply import Voice, VoiceError
from voxd.media.playout import Playout
from voxd.net.sip_calls import SipCall
from voxd.net.sip_hold import hold_caller
from voxd.proto import negotiate, secure_sdp
from voxd.proto.sdp import SdpParseError, SessionDescription
from voxd.proto.sip import events as ev
from voxd.proto.sip.agent import parse_target
from voxd.proto.sip.errors import SipParseError

if TYPE_CHECKING:
    from voxd.net.sip import SipEndpoint

log = logging.getLogger("voxd.sip")

REFER_WAIT_S = 30.0  # the REFER accepted and its final NOTIFY
SUMMARY_MAX_S = 60.0  # the summary's playout
TARGET_BYE_WAIT_S = 2.0  # after success, the target ends our consultation itself (RFC 3891 §3)


def consult_event(ep: SipEndpoint, call: SipCall, e: ev.Event) -> None:
    """A SIP event of a consultation call (the endpoint's events go here for them)."""
    if isinstance(e, ev.CallEstablished):
        if call.answered is not None and not call.answered.done():
            call.answered.set_result(e.answer)
    elif isinstance(e, ev.CallFailed):
        call.failed_status = e.status
        call.bye_sent = True
        ep.table.cleanup(call)
    elif isinstance(e, ev.ByeReceived | ev.CallTerminated | ev.CallCancelled):
        call.bye_sent = True
        ep.table.cleanup(call)


class Consultation:
    """The call to the transfer target, with its media on the process's clock."""

    def __init__(self, ep: SipEndpoint, target: str) -> None:
        self.ep = ep
        self.target = target
        self.call: SipCall | None = None
        self.playout = Playout()
        self._clock: int | None = None
        self._offer: SessionDescription | None = None

    def dial(self) -> None:
        ep = self.ep
        uri = parse_target(self.target)
        peer = (uri.host, uri.port or 5060)
        sock, port = ep.ports.bind(ep.cfg.host)
        policy = ep.srtp_policy(peer)
        offer, cryptos = secure_sdp.offer(ep.host, port, ep.codec_prefs(peer), policy=policy, session_id=int(time.time()))
        try:
            call_id = ep.invite(uri.serialize(), offer.serialize(), peer, "voxd")
        except Exception:
            ep.ports.release(port)
            sock.close()
            raise
        call = SipCall(ep.table, call_id, peer)
        call.consult = True
        call.srtp_policy, call.outbound_cryptos = policy, cryptos
        call.rtp_port, call.outbound_offer, call.outbound_sock = port, offer, sock
        call.answered = asyncio.get_running_loop().create_future()
        ep.table.add(call)
        self.call, self._offer = call, offer

    async def answered(self, ring_s: float) -> str | None:
        """Wait for the target to answer and start the media; None, else why not."""
        call = self.call
        assert call is not None and call.answered is not None
        try:
            async with asyncio.timeout(ring_s):
                answer = await asyncio.shield(call.answered)
        except TimeoutError:
            with contextlib.suppress(KeyError):
                self.ep.cancel(call.call_id)
            return f"the target did not answer within {ring_s:g} s"
        if answer is None:
            status = call.failed_status
            return f"the target refused the call (SIP {status})" if status else "the target did not answer"
        try:
            neg = secure_sdp.accept_answer(call.outbound_offer or SessionDescription(), call.outbound_cryptos,
                                           SessionDescription.parse(answer), policy=call.srtp_policy)
        except (SdpParseError, negotiate.SdpNegotiationError) as err:
            return f"the target's answer was unusable ({err})"
        stream = self.ep.table.rtp_stream(call, neg)
        assert call.outbound_sock is not None
        await stream.open(call.outbound_sock, self.ep.ports.rtcp_socket(call.rtp_port))
        call.rtp = stream
        self._clock = self.ep.env.clock.register(self._tick)
        return None

    def _tick(self) -> None:
        rtp = self.call.rtp if self.call is not None else None
        if rtp is None or self.call is None or self.call.ended:
            return
        rtp.receive_frame()  # what the target says is not for the agent: read and dropped
        rtp.send_frame(self.playout.next_frame())

    async def say(self, voice: Voice, text: str) -> str | None:
        """Speak ``text`` to the target and wait until it has been played; None, else why not."""
        try:
            await voice(text, self.playout)
        except VoiceError as err:
            log.warning("attended transfer: the summary could not be synthesised: %s", err)
            return None  # the transfer goes on without it
        end = time.monotonic() + SUMMARY_MAX_S
        while self.playout.pending and time.monotonic() < end:
            if self.ended:
                return "the target hung up during the summary"
            await asyncio.sleep(0.05)
        return "the target hung up during the summary" if self.ended else None

    @property
    def ended(self) -> bool:
        return self.call is None or self.call.ended

    async def wait_ended(self, seconds: float) -> None:
        if self.call is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self.call.gone.wait()

    def close(self) -> None:
        """Stop its media; hang up if it is still up."""
        if self._clock is not None:
            self.ep.env.clock.unregister(self._clock)
            self._clock = None
        call = self.call
        if call is None or call.ended:
            return
        if call.rtp is not None:
            self.ep.bye(call)
        else:
            with contextlib.suppress(KeyError):
                self.ep.cancel(call.call_id)
        self.ep.table.cleanup(call)


async def attended_transfer(ep: SipEndpoint, call: SipCall, target: str, summary: str,
                            voice: Voice) -> TransferOutcome:
    """Hold the caller, call ``target``, say ``summary``, then REFER the caller to it with Replaces."""
    if ep.ua is None or call.rtp is None or call.session is None or call.ended:
        return TransferOutcome(False, "the call is not up")
    try:
        parse_target(target)
    except SipParseError:
        return TransferOutcome(False, f"{target!r} is not a SIP URI")
    note: dict[str, Any] = {"mode": "attended", "target": target, "progress": []}
    call.session.record.metadata["transfer"] = note
    call.attended = True
    consult = Consultation(ep, target)
    handed_over = False
    try:
        if not await hold_caller(ep, call, True):
            return _failed(note, "the caller could not be put on hold")
        try:
            consult.dial()
        except (SipParseError, OSError, ValueError) as err:
            return _failed(note, f"the target could not be called ({err})")
        assert consult.call is not None
        note["sip_call_id"] = consult.call.call_id
        why = await consult.answered(ep.cfg.transfer_ring_s)
        if why is None and summary:
            why = await consult.say(voice, summary)
        if why is None and consult.ended:
            why = "the target hung up"
        if why is not None:
            return _failed(note, why)
        handed_over, why = await _refer(ep, call, consult)
        if not handed_over:
            return _failed(note, why)
        await consult.wait_ended(TARGET_BYE_WAIT_S)
        note["outcome"] = "transferred"
        return TransferOutcome(True)
    finally:
        consult.close()
        call.attended = False
        if handed_over:
            call.session.record.end_reason = "transferred"
            ep.table.end(call, "transferred", "agent")
        elif not call.ended:
            await hold_caller(ep, call, False)


async def _refer(ep: SipEndpoint, call: SipCall, consult: Consultation) -> tuple[bool, str]:
    assert ep.ua is not None and consult.call is not None
    try:
        refer_to = ep.ua.refer_to_replacing(consult.call.call_id)
    except KeyError:
        return False, "the target hung up"
    call.transfer_result = asyncio.get_running_loop().create_future()
    try:
        ep.refer(call, refer_to)
    except KeyError:
        return False, "the caller hung up"
    try:
        async with asyncio.timeout(REFER_WAIT_S):
            ok = await call.transfer_result
    except TimeoutError:
        return False, f"the caller's phone did not complete the transfer within {REFER_WAIT_S:g} s"
    if ok:
        return True, ""
    progress = call.session.record.metadata.get("transfer", {}).get("progress", []) if call.session else []
    last = progress[-1] if progress else None
    return False, (f"the caller's phone could not reach the target (SIP {last})" if last
                   else "the caller's phone refused the transfer")


def _failed(note: dict[str, Any], why: str) -> TransferOutcome:
    note["outcome"] = "failed"
    note["reason"] = why
    log.info("attended transfer to %s failed: %s", note["target"], why)
    return TransferOutcome(False, why)
