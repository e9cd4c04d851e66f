"""Hold on SIP calls, both ways, and a dialog replaced by an INVITE with Replaces.

- The caller holds us (a re-INVITE with ``sendonly``/``inactive``/``c=0.0.0.0``): the
  endpoint answers with the mirrored direction (voxd/proto/negotiate.py) and calls
  :func:`caller_hold_changed`: the session stops listening (no turns) and the wire
  sends none of the bot's speech until the caller takes the call off hold.
- We hold the caller (:func:`hold_caller`, an attended transfer's consultation): a
  re-INVITE offering ``sendonly``, hold audio (sip.hold_audio, or a tone pattern) goes
  out instead of the bot, and the session does not listen; off hold: ``sendrecv`` again.
- :func:`replace_dialog`: an INVITE whose Replaces named one of our calls (RFC 3891;
  matched by the user agent) takes that call over: the call's session carries on with
  the new party's media, and the replaced dialog is ended with a BYE.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from voxd.media import codecs
from voxd.proto import negotiate, secure_sdp
from voxd.proto.sdes import SdesError, accept_keys, offered
from voxd.proto.sdp import DIRECTIONS, SdpParseError, SessionDescription
from voxd.proto.sip import events as ev

if TYPE_CHECKING:
    from voxd.net.sip import SipEndpoint
    from voxd.net.sip_calls import SipCall

log = logging.getLogger("voxd.sip")

REOFFER_WAIT_S = 5.0  # a re-INVITE of ours still in progress: wait this long to send the next


def with_direction(sdp: bytes, direction: str) -> bytes:
    """Our last SDP offered again with the audio stream's direction changed and the
    origin's version increased (RFC 3264 §8)."""
    desc = SessionDescription.parse(sdp)
    parts = desc.origin.split()
    if len(parts) >= 3 and parts[2].isdigit():
        parts[2] = str(int(parts[2]) + 1)
        desc.origin = " ".join(parts)
    for media in desc.media:
        if media.kind == "audio" and media.port != 0:
            media.attributes = [(k, v) for k, v in media.attributes if k not in DIRECTIONS] + [(direction, None)]
    return desc.serialize()


def _set_session_held(call: SipCall) -> None:
    if call.session is not None:
        call.session.set_held(call.remote_hold or call.hold_audio is not None)


def caller_hold_changed(call: SipCall, held: bool) -> None:
    """The caller's re-INVITE put the call on hold (or took it off)."""
    if held != call.remote_hold:
        log.info("call %s: caller %s", call.call_id, "holds" if held else "resumes")
    call.remote_hold = held
    _set_session_held(call)


async def hold_caller(ep: SipEndpoint, call: SipCall, on: bool) -> bool:
    """Put the caller on hold with hold audio (or take it off); False when the
    re-INVITE could not be sent (the call is gone)."""
    ua = ep.ua
    dialog = ua.calls.get(call.call_id) if ua is not None else None
    if ua is None or dialog is None or call.ended:
        return False
    sdp = with_direction(dialog.local_sdp, "sendonly" if on else "sendrecv")
    deadline = time.monotonic() + REOFFER_WAIT_S
    while True:
        try:
            ua.reoffer(call.call_id, sdp, time.monotonic())
            break
        except RuntimeError:  # the previous re-INVITE (or a session refresh) is in progress
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.1)
        except KeyError:
            return False
    ep.flush()
    call.hold_audio = ep.hold_audio() if on else None
    _set_session_held(call)
    return True


def reoffer_answered(ep: SipEndpoint, call: SipCall, answer: bytes) -> None:
    """The caller answered our hold/unhold re-INVITE: its media address, and on an SRTP
    call the key its answer chose for the crypto line we offered again (RFC 4568 §7.1.4)."""
    ua = ep.ua
    dialog = ua.calls.get(call.call_id) if ua is not None else None
    if call.rtp is None or dialog is None or not answer:
        return
    try:
        desc = SessionDescription.parse(answer)
        ours = SessionDescription.parse(dialog.local_sdp).audio()
    except SdpParseError:
        log.info("call %s: unreadable answer to our re-INVITE", call.call_id)
        return
    media = desc.audio()
    if media is None or ours is None:
        return
    ip = desc.connection_address(media)
    if ip and ip not in ("0.0.0.0", "::") and media.port:
        call.rtp.remote = (ip, media.port)
    if call.rtp.srtp is None:
        return
    try:
        keys = accept_keys(offered(ours), media, "required")  # an SRTP call never falls back
    except SdesError as e:
        log.warning("call %s: the answer to our re-INVITE has no usable SRTP key (%s): hanging up", call.call_id, e)
        ep.table.end(call, "failed", "system")
        return
    if keys is not None:
        call.rtp.srtp.rekey(keys)
        call.rtp.neg.srtp = keys


async def replace_dialog(ep: SipEndpoint, old: SipCall, e: ev.IncomingCall) -> None:
    """``e`` replaces ``old``'s dialog: answer it, move the call's media to it, BYE the old one."""
    ua = ep.ua
    assert ua is not None
    now = time.monotonic()
    if not ep.source_allowed(e.source) or old.leg is None or old.session is None or old.ended:
        ua.reject(e.call_id, 403 if not ep.source_allowed(e.source) else 481, now)
        ep.flush()
        return
    try:
        offer = SessionDescription.parse(e.offer)
        sock, port = ep.ports.bind(ep.cfg.host)
    except SdpParseError:
        ua.reject(e.call_id, 488, now, reason="Bad SDP")
        ep.flush()
        return
    except OSError:
        ua.reject(e.call_id, 503, now, retry_after=5, reason="No media ports")
        ep.flush()
        return
    policy = ep.srtp_policy(e.source)
    try:
        neg = secure_sdp.answer(offer, ep.host, port, ep.codec_prefs(e.source), policy=policy, session_id=int(now))
    except negotiate.SdpNegotiationError:
        ep.ports.release(port)
        sock.close()
        ua.reject(e.call_id, 488, now, reason="Not Acceptable Here")
        ep.flush()
        return
    old_id, old_rtp, old_port = old.call_id, old.rtp, old.rtp_port
    table = ep.table
    table.release_slot(old)
    table.calls.pop(old_id, None)
    old.call_id, old.source, old.srtp_policy = e.call_id, e.source, policy
    table.add(old)
    stream = table.rtp_stream(old, neg)
    await stream.open(sock, ep.ports.rtcp_socket(port))
    old.rtp, old.rtp_port = stream, port
    old.leg.codec = codecs.get(neg.codec.name, neg.codec.clock_rate)
    if old_rtp is not None:
        old_rtp.close()
    if old_port is not None:
        ep.ports.release(old_port)
    record = old.session.record
    record.metadata["replaced"] = {"sip_call_id": old_id, "by": e.call_id, "from": e.from_.uri.serialize()}
    caller_hold_changed(old, neg.on_hold)
    try:
        ua.answer(e.call_id, neg.sdp.serialize(), time.monotonic())
    except KeyError:  # the new party gave up meanwhile: the call goes on the old dialog's end
        pass
    try:
        ua.bye(old_id, time.monotonic())  # RFC 3891 §3: the replaced dialog ends
    except KeyError:
        pass
    log.info("call %s: dialog %s replaced by %s", record.id, old_id, e.call_id)
    ep.flush()

