"""The UAS side of RFC 3262 for :class:`~voxd.proto.sip.agent.UserAgent`: reliable 180/183
(``Require: 100rel`` and an ``RSeq``) to an INVITE that requires or supports 100rel,
re-sent until the PRACK, and the 2xx held back until the last reliable 1xx is PRACKed;
the UAC side (PRACKing a reliable 1xx) is :func:`prack_for`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import events as ev
from .dialog import Call
from .errors import SipParseError
from .message import SipRequest, SipResponse
from .reliable import ReliableProvisional, first_rseq, option_tags, parse_rack, parse_rseq
from .transaction import ServerTransaction

if TYPE_CHECKING:
    from .agent import UAConfig

Addr = tuple[str, int]


class PrackMixin:
    if TYPE_CHECKING:
        config: UAConfig

        def _send(self, data: bytes, addr: Addr) -> None: ...
        def reject(self, call_id: str, status: int, now: float, *,
                   retry_after: int | None = None, reason: str = "") -> None: ...
        def answer(self, call_id: str, sdp: bytes, now: float) -> None: ...
        def _reply(self, req: SipRequest, addr: Addr, status: int, now: float, *,
                   tx: ServerTransaction | None = None, to_tag: str | None = None,
                   body: bytes = b"", extra: list[tuple[str, str]] | None = None,
                   reason: str = "") -> ServerTransaction: ...

    def _ring_reliably(self, call: Call, tx: ServerTransaction, status: int, sdp: bytes,
                       now: float) -> None:
        """RFC 3262 §3: one reliable provisional at a time; a later ring while one is
        unacknowledged is dropped (the caller is already ringing)."""
        if call.reliable_pending is not None:
            return
        call.rseq = first_rseq() if call.rseq == 0 else call.rseq + 1
        self._reply(tx.request, tx.addr, status, now, tx=tx, to_tag=call.local_tag, body=sdp,
                    extra=[("Require", "100rel"), ("RSeq", str(call.rseq))])
        assert tx.last_response is not None
        t1 = self.config.timers.t1
        call.reliable_pending = ReliableProvisional(tx.last_response.serialize(), call.rseq,
                                                    tx.request.cseq.seq, now + t1, t1, now + 64 * t1)

    def _answer_after_prack(self, call: Call, sdp: bytes) -> bool:
        """True when the 2xx must wait for the PRACK of an outstanding reliable 1xx."""
        if call.reliable_pending is None:
            return False
        call.deferred_answer = sdp
        return True

    def _prack(self, call: Call, req: SipRequest, addr: Addr, now: float) -> list[ev.Event]:
        try:
            rack = parse_rack(req.headers.get("RAck"))
        except SipParseError:
            self._reply(req, addr, 400, now, to_tag=call.local_tag, reason="Bad RAck")
            return []
        pending = call.reliable_pending
        if pending is None or not pending.matches(rack):
            self._reply(req, addr, 481, now, to_tag=call.local_tag)
            return []
        self._reply(req, addr, 200, now, to_tag=call.local_tag)
        call.reliable_pending = None
        if call.deferred_answer is not None:
            sdp, call.deferred_answer = call.deferred_answer, None
            self.answer(call.call_id, sdp, now)
        return []

    def _retransmit_1xx(self, call: Call, now: float) -> list[ev.Event]:
        rt = call.reliable_pending
        if rt is None or now < rt.next_at:
            return []
        if now >= rt.give_up_at:
            # RFC 3262 §3: no PRACK for 64*T1 -> reject the INVITE with a 5xx
            call.reliable_pending = None
            call.deferred_answer = None
            if call.invite_server is not None and not call.invite_server.final_sent:
                self.reject(call.call_id, 504, now, reason="No PRACK")
                return [ev.CallTerminated(call.call_id, "protocol_error")]
            return []
        addr = call.invite_server.addr if call.invite_server is not None else call.peer
        self._send(rt.data, addr)
        rt.interval *= 2
        rt.next_at = min(now + rt.interval, rt.give_up_at)
        return []


def prack_for(call: Call, resp: SipResponse) -> str | None:
    """UAC: the RAck value to PRACK ``resp`` with, or None when it is not a reliable 1xx
    or is a retransmission of one already PRACKed (RFC 3262 §4: discarded). Updates the
    early dialog's target and route set from the response."""
    if not 100 < resp.status < 200 or "100rel" not in option_tags(resp.headers, "Require"):
        return None
    try:
        rseq = parse_rseq(resp.headers.get("RSeq"))
    except SipParseError:
        return None
    if call.last_rseq is not None and rseq <= call.last_rseq:
        return None
    call.last_rseq = rseq
    contact = resp.contact
    if contact is not None:
        call.remote_target = contact.uri.serialize()
    record_route = resp.headers.get_all("Record-Route")
    if record_route:
        call.route_set = list(reversed(record_route))
    return f"{rseq} {resp.cseq.seq} INVITE"
