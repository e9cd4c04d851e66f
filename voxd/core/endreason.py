"""Why a call ended and who ended it: one closed vocabulary for every layer.

The call record, the session, the transports, the API and the webhook payloads all
speak these values; a new reason is added here, once. Detail that does not fit the
vocabulary (the SIP status of a failed outbound call, the end_call tool's free-text
reason, a protocol error's message) goes into the call record's metadata.
"""

from __future__ import annotations

from typing import Literal, get_args

EndReason = Literal[
    # the caller
    "caller_hangup",      # BYE, websocket stop, DataChannel hangup
    "caller_cancelled",   # CANCEL while ringing
    # the agent
    "agent_hangup",       # end_call tool, or our side closed the stream
    "menu_hangup",        # a keypad menu's hangup action
    "transferred",        # a blind transfer was accepted
    "max_duration",       # the agent's max_call_s
    # the system
    "api_hangup",         # DELETE /calls/<id>
    "shutdown",           # the daemon stopped or drained
    "connection_lost",    # the transport went away without a hangup
    "media_timeout",      # SIP: no RTP from the caller for sip.rtp_timeout_s (not on hold)
    "ice_timeout",        # WebRTC never connected
    "ack_timeout",        # SIP: the caller never ACKed our 200
    "session_expired",    # SIP: the session timer ran out (RFC 4028: the refresher stopped refreshing)
    "protocol_error",     # the peer broke its wire protocol
    "transport_error",    # our side of the transport failed
    "bad_offer",          # an SDP offer we could not answer
    "bad_answer_sdp",     # an SDP answer we could not accept (outbound)
    "rejected",           # refused before it was answered (the inbound lookup said so); why: metadata
    "node_lost",          # the daemon holding it stopped without ending it (crash, SIGKILL); closed at the next start
    # an outbound call that was never answered
    "busy",
    "declined",
    "cancelled",
    "no_answer",
    "unavailable",
    "not_found",
    "failed",             # any other final failure; the status is in metadata
    # text conversations
    "api_end",            # DELETE /conversations/<id>
    "idle_timeout",       # no message for the idle limit
    "ended",              # nothing more specific is known
]
EndedBy = Literal["caller", "agent", "system"]

END_REASONS: frozenset[str] = frozenset(get_args(EndReason))
TRANSPORT_FAILURES: frozenset[EndReason] = frozenset({"connection_lost", "ice_timeout", "protocol_error",
                                                      "transport_error"})


def end_reason(value: str, default: EndReason = "ended") -> EndReason:
    """`value` as an EndReason (SIP's "ack-timeout" spelling included), else `default`."""
    v = value.replace("-", "_")
    return v if v in END_REASONS else default  # type: ignore[return-value]
