"""UAC side of :class:`~voxd.proto.sip.agent.UserAgent`: outbound calls, CANCEL,
BYE, REFER (RFC 3515) with NOTIFY tracking, and answering digest challenges."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import events as ev
from .auth import Credentials
from .challenge import CredentialBook, retry_request
from .dialog import ALLOW, Call, new_branch, new_tag
from .dialog_state import CallState, DialogEvent, advance
from .errors import is_digits
from .headers import Headers
from .limits import parse_retry_after
from .message import REASONS, SipRequest, SipResponse
from .prack import prack_for
from .replaces import Replaces, refer_to_with_replaces
from .transaction import ClientTransaction, ServerTransaction
from .uri import NameAddr, SipUri

if TYPE_CHECKING:
    from .agent import UAConfig

Addr = tuple[str, int]
TransportLookup = Callable[[Addr], tuple[str, int]]  # peer -> (UDP | TCP | TLS, our port towards it)


class OutboundMixin:
    if TYPE_CHECKING:
        config: UAConfig
        calls: dict[str, Call]
        _client_tx: dict[tuple[str, str], ClientTransaction]
        credential_book: CredentialBook
        _transport: TransportLookup | None

        @property
        def contact(self) -> str: ...
        def _send(self, data: bytes, addr: Addr) -> None: ...
        def is_reliable(self, addr: Addr) -> bool: ...
        def _end(self, call: Call) -> None: ...
        def _drain(self, tx: ServerTransaction | ClientTransaction) -> None: ...
        def reject(self, call_id: str, status: int, now: float, *,
                   retry_after: int | None = None, reason: str = "") -> None: ...
        def _send_in_dialog(self, call: Call, method: str, now: float, *, body: bytes = b"",
                            content_type: str | None = None,
                            extra: list[tuple[str, str]] | None = None
                            ) -> ClientTransaction: ...
        def _timer_request_headers(self) -> list[tuple[str, str]]: ...
        def _probe_answered(self, tx: ClientTransaction, resp: SipResponse,
                            now: float) -> list[ev.Event]: ...
        def _timer_from_2xx(self, call: Call, resp: SipResponse, now: float) -> None: ...
        def _retry_422(self, call: Call, tx: ClientTransaction, resp: SipResponse,
                       now: float) -> bool: ...
        def _refresh_answered(self, call: Call, resp: SipResponse,
                              now: float) -> list[ev.Event]: ...
        def _reply(self, req: SipRequest, addr: Addr, status: int, now: float, *,
                   tx: ServerTransaction | None = None, to_tag: str | None = None,
                   body: bytes = b"", extra: list[tuple[str, str]] | None = None,
                   reason: str = "") -> ServerTransaction: ...

    def _start_client(self, req: SipRequest, addr: Addr, now: float) -> ClientTransaction:
        tx = ClientTransaction(req, addr, now, self.config.timers,
                               reliable=self.is_reliable(addr))
        self._client_tx[(req.top_via.branch or "", req.method)] = tx
        self._drain(tx)
        return tx

    def invite(self, target: str, now: float, *, sdp: bytes, peer: Addr,
               from_user: str | None = None, display_name: str | None = None,
               call_id: str | None = None,
               headers: list[tuple[str, str]] | None = None, from_host: str | None = None,
               route: str | None = None, credentials: Credentials | None = None,
               max_forwards: int = 70) -> str:
        """Place an outbound call to SIP URI ``target`` via ``peer``; returns the Call-ID.
        Trunk calls give the From host, an outbound proxy ``route`` (``<sip:proxy;lr>``,
        pre-loaded, RFC 3261 §8.1.2) and the credentials for this call's challenges. A call
        placed on behalf of an inbound one gives ``max_forwards`` one less than its
        (``limits.next_hop_max_forwards``)."""
        uri = SipUri.parse(target)
        cfg = self.config
        local = NameAddr(SipUri(from_host or cfg.local_host, from_user or cfg.user), display_name,
                         {"tag": new_tag()})
        call = Call(call_id=call_id or f"{secrets.token_hex(10)}@{cfg.local_host}", uas=False,
                    peer=peer, local=local, remote=NameAddr(uri), remote_target=uri.serialize(),
                    local_cseq=0, state=CallState.OUTGOING, local_sdp=sdp, max_forwards=max_forwards)
        if route is not None:
            call.route_set = [route]
        if credentials is not None:
            self.credential_book.remember(call.call_id, credentials)
        self.calls[call.call_id] = call
        call.invite_client = self._start_client(self._invite_request(call, headers or []),
                                                peer, now)
        return call.call_id

    def _invite_request(self, call: Call, extra: list[tuple[str, str]]) -> SipRequest:
        req = call.request("INVITE", self.config.local_host, self._port_to(call.peer),
                           self.contact_for(call.peer), body=call.local_sdp,
                           extra=[("User-Agent", self.config.user_agent), ("Allow", ALLOW),
                                  *self._timer_request_headers(), *extra],
                           transport=self._transport_to(call.peer))
        return req

    def _transport_to(self, addr: Addr) -> str:
        """The Via transport for a request to ``addr`` (RFC 3261 §18.1.1): what the
        transport lookup says (UDP, TCP or TLS), else TCP for a reliable peer."""
        if self._transport is not None:
            return self._transport(addr)[0]
        return "TCP" if self.is_reliable(addr) else "UDP"

    def _port_to(self, addr: Addr) -> int:
        """Our port in Via/Contact towards ``addr``: the TLS listener's for a TLS peer."""
        return self._transport(addr)[1] if self._transport is not None else self.config.local_port

    def contact_for(self, addr: Addr) -> str:
        """Our Contact towards ``addr``; ``;transport=tls`` (and the TLS port) for a TLS
        peer, so its requests in the dialog come back over TLS too."""
        if self._transport is None or self._transport(addr)[0] != "TLS":
            return self.contact
        return f"<sip:{self.config.user}@{self.config.local_host}:{self._transport(addr)[1]};transport=tls>"

    def cancel(self, call_id: str, now: float) -> None:
        """CANCEL an outbound call that has not been answered yet (sent after a 1xx)."""
        call = self.calls.get(call_id)
        if call is None or call.state is not CallState.OUTGOING or call.invite_client is None:
            raise KeyError(f"no outgoing call {call_id} to cancel")
        if not call.provisional_seen:
            call.cancel_pending = True
            return
        call.cancel_pending = False
        call.cancelled = True
        inv = call.invite_client.request
        headers = Headers()
        headers.add("Via", inv.headers.get_all("Via")[0])
        for route in inv.headers.get_all("Route"):
            headers.add("Route", route)
        headers.add("Max-Forwards", "70")
        for name in ("From", "To", "Call-ID"):
            headers.add(name, inv.headers.get(name) or "")
        headers.add("CSeq", f"{inv.cseq.seq} CANCEL")
        self._start_client(SipRequest("CANCEL", inv.uri, headers), call.peer, now)

    def bye(self, call_id: str, now: float) -> None:
        """Hang up: BYE when answered, CANCEL when still ringing out, 480 when still
        ringing in."""
        call = self.calls.get(call_id)
        if call is None:
            raise KeyError(f"no call {call_id}")
        if call.state is CallState.INCOMING:
            self.reject(call_id, 480, now)
        elif call.state is CallState.OUTGOING:
            if not call.cancelled:
                self.cancel(call_id, now)
        elif call.state is not CallState.TERMINATED:
            self._send_in_dialog(call, "BYE", now, extra=[("User-Agent", self.config.user_agent)])
            self._end(call)

    def refer(self, call_id: str, target: str, now: float) -> None:
        """Blind transfer: REFER the peer to ``target`` (results arrive as events)."""
        call = self.calls.get(call_id)
        if call is None or call.state not in (CallState.CONFIRMED, CallState.ANSWERED):
            raise KeyError(f"no established call {call_id}")
        SipUri.parse(target)
        tx = self._send_in_dialog(call, "REFER", now, extra=[
            ("Refer-To", f"<{target}>"), ("Referred-By", call.local.serialize()),
            ("User-Agent", self.config.user_agent)])
        call.refer_cseq = tx.request.cseq.seq

    def refer_to_replacing(self, call_id: str) -> str:
        """Attended transfer: the Refer-To URI that sends the party we REFER to the peer of
        our dialog ``call_id`` (its Contact), with ``?Replaces=`` naming that dialog as the
        peer sees it (its tag is the to-tag, RFC 3891 §3), so the peer swaps it for the
        referred party's INVITE."""
        call = self.calls.get(call_id)
        if call is None or call.state is not CallState.CONFIRMED or call.remote.tag is None:
            raise KeyError(f"no established call {call_id}")
        rep = Replaces.for_dialog(call.call_id, recipient_local_tag=call.remote.tag,
                                  recipient_remote_tag=call.local_tag)
        return refer_to_with_replaces(SipUri.parse(call.remote_target), rep).serialize()

    def reoffer(self, call_id: str, sdp: bytes, now: float, *, method: str = "INVITE") -> None:
        """Send a new offer in the dialog (re-INVITE or UPDATE), e.g. to hold/unhold."""
        call = self.calls.get(call_id)
        if call is None or call.state is not CallState.CONFIRMED:
            raise KeyError(f"no established call {call_id}")
        if method not in ("INVITE", "UPDATE"):
            raise ValueError("re-offer method must be INVITE or UPDATE")
        if call.reoffer_client is not None and call.reoffer_client.pending:
            raise RuntimeError("a re-offer is already in progress")
        call.reoffer_client = self._send_in_dialog(call, method, now, body=sdp)
        call.local_sdp = sdp

    def _reoffer_response(self, call: Call, tx: ClientTransaction,
                          resp: SipResponse) -> list[ev.Event]:
        if resp.status < 200:
            return []
        if resp.status >= 300:
            return [ev.ReofferFailed(call.call_id, resp.status)]
        if tx.invite:
            ack = call.request("ACK", self.config.local_host, self._port_to(call.peer),
                               self.contact_for(call.peer), cseq=tx.request.cseq.seq, branch=new_branch(),
                               transport=self._transport_to(call.peer))
            call.ack_bytes = ack.serialize()
            self._send(call.ack_bytes, call.peer)
        return [ev.ReofferAnswered(call.call_id, resp.body)]

    def send_info_dtmf(self, call_id: str, digit: str, now: float, *,
                       duration_ms: int = 160) -> None:
        """Send one digit as SIP INFO (application/dtmf-relay)."""
        call = self.calls.get(call_id)
        if call is None or call.state is not CallState.CONFIRMED:
            raise KeyError(f"no established call {call_id}")
        if len(digit) != 1 or digit.upper() not in "0123456789*#ABCD":
            raise ValueError("not a DTMF digit")
        body = f"Signal={digit.upper()}\r\nDuration={duration_ms}\r\n".encode()
        self._send_in_dialog(call, "INFO", now, body=body, content_type="application/dtmf-relay")

    def _refer_received(self, call: Call, req: SipRequest, addr: Addr,
                        now: float) -> list[ev.Event]:
        refer_to = req.headers.get("Refer-To")
        if not refer_to:
            self._reply(req, addr, 400, now, to_tag=call.local_tag, reason="Missing Refer-To")
            return []
        self._reply(req, addr, 202, now, to_tag=call.local_tag)
        call.refer_received = True
        self.notify_refer(call.call_id, 100, now)
        return [ev.ReferReceived(call.call_id, refer_to.strip().strip("<>"))]

    def notify_refer(self, call_id: str, status: int, now: float, *, reason: str = "") -> None:
        """Report the progress of a REFER we accepted (RFC 3515 §2.4.4)."""
        call = self.calls.get(call_id)
        if call is None or not call.refer_received:
            raise KeyError(f"no accepted REFER on call {call_id}")
        final = status >= 200
        state = "terminated;reason=noresource" if final else "active;expires=60"
        body = f"SIP/2.0 {status} {reason or REASONS.get(status, '')}\r\n".encode()
        self._send_in_dialog(call, "NOTIFY", now, body=body,
                             content_type="message/sipfrag;version=2.0",
                             extra=[("Event", "refer"), ("Subscription-State", state)])
        if final:
            call.refer_received = False

    def _notify(self, call: Call, req: SipRequest, addr: Addr, now: float) -> list[ev.Event]:
        self._reply(req, addr, 200, now, to_tag=call.local_tag)
        event = (req.headers.get("Event") or "").split(";")[0].strip().lower()
        if event != "refer" or call.refer_cseq is None:
            return []
        line = req.body.decode("utf-8", "replace").strip().split("\n", 1)[0].strip()
        parts = line.split(" ", 2)
        if len(parts) < 2 or not is_digits(parts[1]):
            return []
        status = int(parts[1])
        terminated = (req.headers.get("Subscription-State") or "").lower().startswith(
            "terminated")
        return [ev.ReferProgress(call.call_id, status, parts[2] if len(parts) > 2 else "",
                                 final=status >= 200 or terminated)]

    def _client_response(self, tx: ClientTransaction, resp: SipResponse,
                         now: float) -> list[ev.Event]:
        method = tx.request.method
        call = self.calls.get(tx.request.call_id)
        if resp.status in (401, 407) and self._answer_challenge(call, tx, resp, now):
            return []
        if method == "BYE" and resp.status >= 200:
            self.credential_book.forget(tx.request.call_id)
        if call is None:
            return self._probe_answered(tx, resp, now) if method == "OPTIONS" else []
        if method == "REFER":
            if resp.status >= 300:
                call.refer_cseq = None
                return [ev.ReferFailed(call.call_id, resp.status)]
            return [ev.ReferAccepted(call.call_id)] if resp.status >= 200 else []
        if tx is call.reoffer_client:
            if call.refreshing and resp.status >= 200:
                if 200 <= resp.status < 300 and tx.invite:
                    self._reoffer_response(call, tx, resp)  # the ACK
                return self._refresh_answered(call, resp, now)
            if 200 <= resp.status < 300:
                self._timer_from_2xx(call, resp, now)
            return self._reoffer_response(call, tx, resp)
        if method != "INVITE" or tx is not call.invite_client:
            return []
        return self._invite_response(call, tx, resp, now)

    def _invite_response(self, call: Call, tx: ClientTransaction, resp: SipResponse,
                         now: float) -> list[ev.Event]:
        status = resp.status
        if status < 200:
            call.provisional_seen = True
            if resp.to.tag:
                call.remote = resp.to
            if call.cancel_pending:
                self.cancel(call.call_id, now)
            elif status > 100 and (rack := prack_for(call, resp)) is not None:
                self._send_in_dialog(call, "PRACK", now, extra=[("RAck", rack)])
            elif status > 100 and call.last_rseq is not None and resp.headers.get("RSeq"):
                return []  # a reliable 1xx again: already PRACKed and reported
            return [] if status == 100 else [ev.CallProgress(call.call_id, status, resp.body)]
        if status < 300:
            if call.state is CallState.CONFIRMED:
                if call.ack_bytes is not None:
                    self._send(call.ack_bytes, call.peer)
                return []
            call.remote = resp.to
            contact = resp.contact
            if contact is not None:
                call.remote_target = contact.uri.serialize()
            call.route_set = list(reversed(resp.headers.get_all("Record-Route")))
            ack = call.request("ACK", self.config.local_host, self._port_to(call.peer),
                               self.contact_for(call.peer), cseq=tx.request.cseq.seq, branch=new_branch(),
                               transport=self._transport_to(call.peer))
            call.ack_bytes = ack.serialize()
            self._send(call.ack_bytes, call.peer)
            advance(call, DialogEvent.GOT_2XX)
            self._timer_from_2xx(call, resp, now)
            if call.cancel_pending or call.cancelled:  # answered while cancelling: hang up
                self.bye(call.call_id, now)
                return [ev.CallFailed(call.call_id, 487, "Request Terminated")]
            return [ev.CallEstablished(call.call_id, resp.body)]
        if status == 422 and self._retry_422(call, tx, resp, now):
            return []
        self._end(call)
        self.credential_book.forget(call.call_id)
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        return [ev.CallFailed(call.call_id, status, resp.reason, retry_after)]

    def _answer_challenge(self, call: Call | None, tx: ClientTransaction, resp: SipResponse,
                          now: float) -> bool:
        """Re-send a challenged request with credentials (any method, in or out of a
        dialog); the initial INVITE at most twice (a proxy's 407, then the far end's 401)."""
        req = tx.request
        creds = self.credential_book.get(req.call_id) or self.config.credentials
        if creds is None:
            return False
        initial = call is not None and tx is call.invite_client
        if initial and call is not None and call.auth_attempts >= 2:
            return False
        cseq = call.next_cseq() if call is not None else req.cseq.seq + 1
        new = retry_request(req, resp, creds, cseq)
        if new is None:
            return False
        new_tx = self._start_client(new, tx.addr, now)
        if call is not None:
            if initial:
                call.auth_attempts += 1
                call.invite_client = new_tx
            elif tx is call.reoffer_client:
                call.reoffer_client = new_tx
        return True
