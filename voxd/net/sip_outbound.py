"""Outbound SIP calls (voxd as the caller): INVITE with our offer, early media on 183,
the agent talks once the callee answers; busy, cancel and timeouts end the call record
with a clear reason."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from voxd.agents.loader import LoadedAgent
from voxd.call.session import CallSession
from voxd.core.endreason import EndReason
from voxd.media import codecs
from voxd.net.leg import CallLeg
from voxd.proto import negotiate
from voxd.proto.sdp import SdpParseError, SessionDescription
from voxd.proto.sip.agent import parse_target

if TYPE_CHECKING:
    from voxd.net.sip import SipCall, SipEndpoint

FAILURE_REASONS: dict[int, EndReason] = {486: "busy", 600: "busy", 603: "declined", 487: "cancelled", 408: "no_answer", 480: "unavailable", 404: "not_found"}


async def dial(endpoint: SipEndpoint, agent: LoadedAgent, target: str, *, from_user: str = "voxd",
               ring_timeout_s: float = 45.0) -> CallSession:
    """Place a call to `target` (sip:user@host[:port]); returns the session at once.
    The session starts (the agent speaks first only if it has a greeting) when answered."""
    from voxd.net.sip import SipCall

    assert endpoint.ua is not None
    uri = parse_target(target)
    peer = (uri.host, uri.port or 5060)
    sock, port = endpoint.ports.bind(endpoint.cfg.host)
    offer = negotiate.offer(endpoint.host, port, endpoint.cfg.codecs, session_id=int(time.time()))
    call_id = endpoint.ua.invite(uri.serialize(), time.monotonic(), sdp=offer.serialize(), peer=peer, from_user=from_user)
    call = SipCall(endpoint, call_id, peer)
    call.rtp_port = port
    call.outbound_offer = offer
    call.outbound_sock = sock
    leg = CallLeg(endpoint.env, "sip", call, call)
    session = leg.admit(agent, from_uri=f"sip:{from_user}@{endpoint.host}", to_uri=uri.serialize(),
                        direction="outbound", metadata={"sip_call_id": call_id})
    call.session, call.leg = session, leg
    endpoint.sip_calls[call_id] = call
    endpoint.per_source[peer[0]] += 1
    call.holds_slot = True
    endpoint._flush()

    async def ring_timeout() -> None:
        await asyncio.sleep(ring_timeout_s)
        if call.rtp is None or session.record.answered_at is None:
            try:
                endpoint.ua.cancel(call_id, time.monotonic())  # type: ignore[union-attr]
                endpoint._flush()
            except KeyError:
                pass

    endpoint._spawn(ring_timeout())
    return session


async def start_media(endpoint: SipEndpoint, call: SipCall, answer_sdp: bytes, *, early: bool) -> bool:
    """Bind the RTP stream to the callee's answer (200, or 183 early media)."""
    if call.rtp is not None or call.session is None or call.outbound_offer is None:
        return call.rtp is not None
    try:
        neg = negotiate.accept_answer(call.outbound_offer, SessionDescription.parse(answer_sdp))
    except (SdpParseError, negotiate.SdpNegotiationError):
        return False
    s = call.session
    stream = endpoint.rtp_stream(call, neg)
    if call.leg is not None:
        call.leg.codec = codecs.get(neg.codec.name)
    assert call.outbound_sock is not None
    await stream.open(call.outbound_sock, endpoint.ports.rtcp_socket(call.rtp_port))
    call.rtp = stream
    s.record.metadata["codec"] = neg.codec.name
    if early:
        s.record.metadata["early_media"] = True
    return True
