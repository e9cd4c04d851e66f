"""Events the :class:`~voxd.proto.sip.agent.UserAgent` hands to the daemon."""

from __future__ import annotations

from dataclasses import dataclass, field

from .message import SipRequest
from .uri import NameAddr

Addr = tuple[str, int]


@dataclass(frozen=True)
class Event:
    call_id: str


@dataclass(frozen=True)
class IncomingCall(Event):
    """A new INVITE. Answer with ``ring``/``answer``/``reject``."""

    offer: bytes
    from_: NameAddr
    to: NameAddr
    user: str | None  # Request-URI user part (the dialled number)
    source: Addr
    auth_user: str | None = None
    request: SipRequest | None = field(default=None, repr=False, compare=False)
    max_forwards: int | None = None  # the INVITE's; a request sent on its behalf uses one less
    replaces: str | None = None  # Call-ID of our dialog this INVITE replaces (RFC 3891), matched already


@dataclass(frozen=True)
class CallCancelled(Event):
    """The caller sent CANCEL before we answered (487 already sent)."""


@dataclass(frozen=True)
class CallEstablished(Event):
    """ACK received (inbound) or 2xx received and ACKed (outbound)."""

    answer: bytes = b""  # outbound: the peer's SDP answer


@dataclass(frozen=True)
class ByeReceived(Event):
    """The peer hung up (200 already sent)."""


@dataclass(frozen=True)
class CallTerminated(Event):
    """The call ended for a reason other than a BYE or CANCEL from the peer:
    ``ack-timeout`` (2xx never ACKed; BYE sent), ``bye-sent``, ``no-ack``."""

    reason: str


@dataclass(frozen=True)
class ReInvite(Event):
    """A new offer inside the dialog (re-INVITE or UPDATE with SDP).

    Reply with ``UserAgent.answer_reoffer``. ``hold`` is True when the offer puts
    us on hold (sendonly, inactive or c=0.0.0.0).
    """

    offer: bytes
    hold: bool
    method: str = "INVITE"


@dataclass(frozen=True)
class InfoDtmf(Event):
    digit: str
    duration_ms: int | None = None


@dataclass(frozen=True)
class OptionsProbe(Event):
    """An OPTIONS keep-alive/probe, already answered 200."""

    source: Addr = ("", 0)


@dataclass(frozen=True)
class OptionsResult(Event):
    """The final answer to our OPTIONS probe (``UserAgent.options``); 408 when nothing
    came back. ``rtt_s`` is None on a timeout."""

    status: int
    reason: str = ""
    retry_after: int | None = None
    rtt_s: float | None = None


@dataclass(frozen=True)
class CallProgress(Event):
    """Outbound: a provisional response (180 ringing, 183 with early-media SDP)."""

    status: int
    sdp: bytes = b""


@dataclass(frozen=True)
class CallFailed(Event):
    """Outbound call ended without an answer: 486, 487 (cancelled), 408 timeout, ..."""

    status: int
    reason: str = ""
    retry_after: int | None = None


@dataclass(frozen=True)
class ReferAccepted(Event):
    """Our REFER was accepted (202); progress follows as :class:`ReferProgress`."""


@dataclass(frozen=True)
class ReferProgress(Event):
    """A NOTIFY with a message/sipfrag status line for our REFER."""

    status: int
    reason: str = ""
    final: bool = False


@dataclass(frozen=True)
class ReferFailed(Event):
    """The REFER itself was rejected (or timed out)."""

    status: int


@dataclass(frozen=True)
class ReofferAnswered(Event):
    """The peer accepted our re-INVITE/UPDATE (e.g. hold); ``answer`` is its SDP."""

    answer: bytes = b""


@dataclass(frozen=True)
class ReofferFailed(Event):
    """The peer rejected our re-INVITE/UPDATE; the previous session stays."""

    status: int


@dataclass(frozen=True)
class ReferReceived(Event):
    """The peer asks us to transfer (REFER); 202 and a 100 NOTIFY were sent.
    Report the outcome with ``UserAgent.notify_refer``."""

    refer_to: str
