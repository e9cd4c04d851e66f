"""Per-call dialog state (RFC 3261 §12) and in-dialog request construction."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .dialog_state import CallState
from .headers import Headers
from .message import SipRequest
from .reliable import ReliableProvisional
from .transaction import ClientTransaction, ServerTransaction
from .uri import NameAddr

if TYPE_CHECKING:
    from .session_timer import Negotiated, SessionTimer

Addr = tuple[str, int]
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY, PRACK"


def new_tag() -> str:
    return secrets.token_hex(6)


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


@dataclass
class Retransmit2xx:
    """A 2xx we keep re-sending until the ACK (RFC 3261 §13.3.1.4)."""

    data: bytes
    cseq: int
    next_at: float
    interval: float
    give_up_at: float


@dataclass
class Call:
    call_id: str
    uas: bool
    peer: Addr  # where requests/responses for this call are sent
    local: NameAddr  # our From (UAC) / To (UAS) value, with our tag
    remote: NameAddr
    remote_target: str  # Request-URI for in-dialog requests (peer's Contact)
    local_cseq: int = 1
    remote_cseq: int | None = None
    route_set: list[str] = field(default_factory=list)
    state: CallState = CallState.INCOMING
    invite_server: ServerTransaction | None = None
    invite_client: ClientTransaction | None = None
    reoffer: ServerTransaction | None = None  # pending re-INVITE/UPDATE to answer
    ok_retransmit: Retransmit2xx | None = None
    ack_bytes: bytes | None = None  # UAC: our ACK for the 2xx, re-sent on retransmits
    local_sdp: bytes = b""
    cancel_pending: bool = False  # CANCEL wanted, waiting for a provisional response
    cancelled: bool = False  # CANCEL sent
    provisional_seen: bool = False
    auth_attempts: int = 0
    refer_cseq: int | None = None
    reoffer_client: ClientTransaction | None = None
    refer_received: bool = False
    # RFC 3262 (100rel/PRACK)
    peer_100rel: bool = False  # UAS: the INVITE requires or supports reliable provisionals
    rseq: int = 0  # UAS: RSeq of the last reliable provisional sent (0: none yet)
    reliable_pending: ReliableProvisional | None = None  # UAS: sent, not yet PRACKed
    deferred_answer: bytes | None = None  # UAS: the 2xx's SDP, sent once PRACKed
    last_rseq: int | None = None  # UAC: highest RSeq PRACKed
    # RFC 4028 (session timers)
    session_neg: Negotiated | None = None  # UAS: the answer to the pending INVITE/UPDATE
    session_timer: SessionTimer | None = None
    peer_allow: frozenset[str] = frozenset()  # methods the peer allows (UPDATE refreshes)
    refreshing: bool = False  # our refresh re-INVITE/UPDATE is in flight (reoffer_client)
    timer_retried: bool = False  # UAC: the INVITE was re-sent after a 422
    max_forwards: int = 70  # in our requests (one less than an inbound call's it continues)

    @property
    def local_tag(self) -> str:
        return self.local.tag or ""

    @property
    def remote_tag(self) -> str | None:
        return self.remote.tag

    def next_cseq(self) -> int:
        self.local_cseq += 1
        return self.local_cseq

    def request(self, method: str, via_host: str, via_port: int, contact: str,
                *, cseq: int | None = None, branch: str | None = None,
                body: bytes = b"", content_type: str | None = None,
                extra: list[tuple[str, str]] | None = None,
                transport: str = "UDP") -> SipRequest:
        """A request inside this dialog (RFC 3261 §12.2.1.1); ``transport`` is the one
        it will be sent over, for the Via (RFC 3261 §18.1.1)."""
        headers = Headers()
        headers.add("Via", f"SIP/2.0/{transport} {via_host}:{via_port};branch={branch or new_branch()}"
                           ";rport")
        for route in self.route_set:
            headers.add("Route", route)
        headers.add("Max-Forwards", str(self.max_forwards))
        headers.add("From", self.local.serialize())
        headers.add("To", self.remote.serialize())
        headers.add("Call-ID", self.call_id)
        number = cseq if cseq is not None else self.next_cseq()
        headers.add("CSeq", f"{number} {method}")
        headers.add("Contact", contact)
        for name, value in extra or []:
            headers.add(name, value)
        if body:
            headers.add("Content-Type", content_type or "application/sdp")
        return SipRequest(method, self.remote_target, headers, body)


def sdp_is_hold(sdp: bytes) -> bool:
    """True if an offer puts the receiver on hold (RFC 3264 §8.4, RFC 2543 c=0.0.0.0)."""
    text = sdp.decode("utf-8", "replace").replace("\r\n", "\n")
    lines = [line.strip() for line in text.split("\n")]
    if any(line.startswith("c=") and line.split()[-1:] in (["0.0.0.0"], ["::"])
           for line in lines):
        return True
    return any(line in ("a=sendonly", "a=inactive") for line in lines)
