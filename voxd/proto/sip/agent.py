"""The sans-IO SIP user agent core: dialogs and transactions for many calls.

Feed datagrams with :meth:`UserAgent.receive`, call :meth:`UserAgent.poll` when
:meth:`UserAgent.next_deadline` passes, and send whatever
:meth:`UserAgent.data_to_send` returns. Every method takes ``now`` (a monotonic
clock in seconds) and none of them does I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from . import events as ev
from .auth import Credentials, DigestServer
from .challenge import CredentialBook
from .dialog import ALLOW, Call, Retransmit2xx, new_tag, sdp_is_hold
from .dialog_state import CallState, DialogEvent, advance
from .errors import SipParseError
from .headers import Headers, split_list
from .info import parse_info_dtmf
from .limits import looped, max_forwards
from .message import SipRequest, SipResponse, bad_request, make_response, parse_message
from .outbound import OutboundMixin, TransportLookup
from .prack import PrackMixin
from .probe import NodeStateReader, ProbeMixin
from .reliable import wants_100rel
from .replaces import Replaces
from .session_refresh import SessionTimerMixin, allowed_methods
from .session_timer import TimerPolicy
from .transaction import ClientTransaction, ServerTransaction, Timers
from .uri import NameAddr, SipUri, Via

Addr = tuple[str, int]
AuthLookup = Callable[[Addr, SipRequest], DigestServer | None]
ReliableLookup = Callable[[Addr], bool]

# Option tags a request may Require (RFC 3261 §8.2.2.3): 100rel (RFC 3262, voxd/proto/sip/prack.py).
# timer (RFC 4028, voxd/proto/sip/session_refresh.py). replaces (RFC 3891, voxd/proto/sip/replaces.py).
SUPPORTED_REQUIRE = frozenset({"100rel", "timer", "replaces"})


@dataclass
class UAConfig:
    local_host: str  # address put in Via/Contact (reachable by peers)
    local_port: int
    user: str = "voxd"
    user_agent: str = "voxd"
    timers: Timers = field(default_factory=Timers)
    credentials: Credentials | None = None  # for outbound 401/407 challenges
    session: TimerPolicy = field(default_factory=TimerPolicy)  # RFC 4028 session timers


class UserAgent(OutboundMixin, PrackMixin, SessionTimerMixin, ProbeMixin):
    """``reliable(addr)`` says whether messages to ``addr`` go over a reliable transport
    (a TCP connection): transactions with such a peer never retransmit (RFC 3261 §17).
    Without it every peer is treated as UDP. ``transport(addr)`` names the transport to a
    peer (UDP, TCP or TLS) and our port towards it, for Via and Contact (TLS: the TLS
    listener's port and ``;transport=tls``). ``node_state()`` is what an OPTIONS is
    answered with (voxd/proto/sip/probe.py)."""

    def __init__(self, config: UAConfig, *, auth: AuthLookup | None = None,
                 reliable: ReliableLookup | None = None, transport: TransportLookup | None = None,
                 node_state: NodeStateReader | None = None) -> None:
        self.config = config
        self.node_state = node_state
        self._probes: dict[str, float] = {}  # our OPTIONS in flight: Call-ID -> sent at
        self._auth = auth
        self._reliable = reliable
        self._transport = transport
        self.calls: dict[str, Call] = {}
        self._server_tx: dict[tuple[str, str], ServerTransaction] = {}
        self._client_tx: dict[tuple[str, str], ClientTransaction] = {}
        self._outbox: list[tuple[bytes, Addr]] = []
        self.credential_book = CredentialBook()  # outbound calls' own credentials (trunks)

    # -- plumbing ---------------------------------------------------------------
    @property
    def contact(self) -> str:
        return f"<sip:{self.config.user}@{self.config.local_host}:{self.config.local_port}>"

    def data_to_send(self) -> list[tuple[bytes, Addr]]:
        """Datagrams queued since the last call, with their destination."""
        for tx in (*self._server_tx.values(), *self._client_tx.values()):
            if tx.outbox:
                self._outbox.extend((data, tx.addr) for data in tx.outbox)
                tx.outbox.clear()
        out, self._outbox = self._outbox, []
        return out

    def next_deadline(self) -> float | None:
        times = [t for tx in (*self._server_tx.values(), *self._client_tx.values())
                 if (t := tx.deadline()) is not None]
        times += [c.ok_retransmit.next_at for c in self.calls.values() if c.ok_retransmit]
        times += [c.reliable_pending.next_at for c in self.calls.values() if c.reliable_pending]
        times += [c.session_timer.deadline() for c in self.calls.values()
                  if c.session_timer and c.state is CallState.CONFIRMED]
        return min(times) if times else None

    def poll(self, now: float) -> list[ev.Event]:
        """Run every timer due at ``now``."""
        out: list[ev.Event] = []
        for key, stx in list(self._server_tx.items()):
            stx.poll(now)
            if stx.terminated:
                self._drain(stx)
                del self._server_tx[key]
        for key, ctx in list(self._client_tx.items()):
            timeout = ctx.poll(now)
            if timeout is not None:
                out += self._client_response(ctx, timeout, now)
            if ctx.terminated:
                self._drain(ctx)
                del self._client_tx[key]
        for call in list(self.calls.values()):
            out += self._retransmit_2xx(call, now)
            out += self._retransmit_1xx(call, now)
            out += self._poll_session_timer(call, now)
        return out

    handle_timeout = poll

    def _drain(self, tx: ServerTransaction | ClientTransaction) -> None:
        self._outbox.extend((data, tx.addr) for data in tx.outbox)
        tx.outbox.clear()

    def _send(self, data: bytes, addr: Addr) -> None:
        self._outbox.append((data, addr))

    def _response_address(self, via: Via, source: Addr) -> Addr:
        """RFC 3261 §18.2.2: over a reliable transport the response goes back on the
        connection the request came in on (the Via's port is the client's listening port,
        not the connection's); over UDP, to the Via's received/rport or sent-by."""
        return source if self.is_reliable(source) else via.response_address(source)

    def is_reliable(self, addr: Addr) -> bool:
        return self._reliable is not None and self._reliable(addr)

    def _new_server_tx(self, req: SipRequest, addr: Addr) -> ServerTransaction:
        tx = ServerTransaction(req, addr, self.config.timers, reliable=self.is_reliable(addr))
        self._server_tx[(req.top_via.branch or "", req.method)] = tx
        return tx

    def _reply(self, req: SipRequest, addr: Addr, status: int, now: float, *,
               tx: ServerTransaction | None = None, to_tag: str | None = None,
               body: bytes = b"", extra: list[tuple[str, str]] | None = None,
               reason: str = "") -> ServerTransaction:
        tx = tx or self._new_server_tx(req, addr)
        headers = [("User-Agent", self.config.user_agent), *(extra or [])]
        if 100 < status < 300 and req.method in ("INVITE", "UPDATE", "SUBSCRIBE", "REFER"):
            headers.insert(0, ("Contact", self.contact_for(addr)))
        resp = make_response(req, status, reason, to_tag=to_tag or new_tag(), body=body,
                             extra=headers)
        tx.respond(resp, now)
        self._drain(tx)
        return tx

    # -- input --------------------------------------------------------------------
    def receive(self, data: bytes, source: Addr, now: float) -> list[ev.Event]:
        """Handle one datagram from ``source``. Malformed input never raises:
        a 400 is queued when possible, otherwise it is dropped."""
        if not data.strip(b"\r\n \t"):
            return []  # keep-alive
        try:
            return self.receive_message(parse_message(data), source, now)
        except SipParseError as exc:
            resp = bad_request(exc)
            if resp is not None:
                try:
                    via = resp.top_via
                    via.stamp_received(source)
                    self._send(resp.serialize(), self._response_address(via, source))
                except SipParseError:
                    pass
            return []

    def receive_message(self, msg: SipRequest | SipResponse, source: Addr,
                        now: float) -> list[ev.Event]:
        """Handle an already framed message (e.g. from :class:`StreamParser` on TCP).
        Raises :class:`SipParseError` if a header it needs is malformed."""
        if isinstance(msg, SipRequest):
            return self._request(msg, source, now)
        return self._response(msg, now)

    def _request(self, req: SipRequest, source: Addr, now: float) -> list[ev.Event]:
        via = req.top_via
        via.stamp_received(source)
        req.headers = _with_top_via(req.headers, via.serialize())
        addr = self._response_address(via, source)
        branch = via.branch or ""
        if req.method == "ACK":
            return self._ack(req, branch, now)
        existing = self._server_tx.get((branch, req.method))
        if existing is not None:
            existing.on_retransmission()
            self._drain(existing)
            return []
        if req.method == "CANCEL":
            return self._cancel(req, addr, branch, now)
        try:
            hops = max_forwards(req.headers)
        except SipParseError:
            self._reply(req, addr, 400, now, reason="Bad Max-Forwards")
            return []
        if hops == 0 and req.method != "OPTIONS":  # RFC 3261 §16.3: no hop left to go on with
            self._reply(req, addr, 483, now)
            return []
        if req.method == "INVITE" and self._looped(req):
            self._reply(req, addr, 482, now)  # our own request came back to us
            return []
        unsupported = [t for t in req.headers.get_all("Require") if t.lower() not in SUPPORTED_REQUIRE]
        if unsupported:
            self._reply(req, addr, 420, now, extra=[("Unsupported", ", ".join(unsupported))])
            return []
        call = self.calls.get(req.call_id)
        to_tag = req.to.tag
        if req.method == "INVITE" and to_tag is None:
            if call is not None:
                self._reply(req, addr, 482, now)  # same Call-ID, new branch: loop/fork
                return []
            return self._invite(req, addr, source, now)
        if req.method == "OPTIONS" and to_tag is None:
            self._answer_options(req, addr, now)
            return [ev.OptionsProbe(req.call_id, source)]
        if call is None or to_tag != call.local_tag or call.state is CallState.TERMINATED:
            self._reply(req, addr, 481, now)
            return []
        if call.remote_cseq is not None and req.cseq.seq < call.remote_cseq:
            self._reply(req, addr, 500, now, reason="Out of Order")
            return []
        call.remote_cseq = req.cseq.seq
        return self._in_dialog(call, req, addr, now)

    def _invite(self, req: SipRequest, addr: Addr, source: Addr, now: float) -> list[ev.Event]:
        auth_user: str | None = None
        if self._auth is not None:
            server = self._auth(source, req)
            if server is not None:
                auth_user, stale = server.verify(req, now)
                if auth_user is None:
                    extra = [("WWW-Authenticate", c) for c in server.challenges(now, stale=stale)]
                    self._reply(req, addr, 401, now, extra=extra)
                    return []
        replaced = self._replaced_dialog(req, addr, now)
        if replaced is False:
            return []
        neg = self._negotiate_timer(req, addr, now)
        if neg is None:
            return []
        tx = self._new_server_tx(req, addr)
        tx.respond(make_response(req, 100), now)
        self._drain(tx)
        remote_contact = req.contact
        local = req.to
        local.params["tag"] = new_tag()
        call = Call(call_id=req.call_id, uas=True, peer=addr, local=local, remote=req.from_,
                    remote_target=remote_contact.uri.serialize() if remote_contact else
                    req.from_.uri.serialize(), local_cseq=0, remote_cseq=req.cseq.seq,
                    route_set=req.headers.get_all("Record-Route"), invite_server=tx,
                    peer_100rel=wants_100rel(req.headers), session_neg=neg,
                    peer_allow=allowed_methods(req.headers))
        self.calls[call.call_id] = call
        try:
            user = req.request_uri.user
        except SipParseError:
            user = None
        return [ev.IncomingCall(req.call_id, req.body, req.from_, req.to, user, source,
                                auth_user, req, _hops(req), replaced or None)]

    def _replaced_dialog(self, req: SipRequest, addr: Addr, now: float) -> str | Literal[False]:
        """An INVITE with Replaces (RFC 3891 §3): the Call-ID of the dialog it replaces,
        "" without the header, False once answered: 400 (malformed, or more than one),
        481 (no such dialog, or it has ended), 486 (``early-only`` on a confirmed one)."""
        values = req.headers.get_all("Replaces")
        if not values:
            return ""
        try:
            if len(values) > 1:
                raise SipParseError("more than one Replaces")
            wanted = Replaces.parse(values[0])
        except SipParseError as e:
            self._reply(req, addr, 400, now, reason=f"Bad Replaces: {e}"[:80])
            return False
        for call in self.calls.values():
            tag = call.remote.tag
            if tag is not None and wanted.matches(call.call_id, local_tag=call.local_tag, remote_tag=tag):
                if call.state is CallState.TERMINATED:
                    break
                if wanted.early_only and call.state is CallState.CONFIRMED:
                    self._reply(req, addr, 486, now)
                    return False
                return call.call_id
        self._reply(req, addr, 481, now, reason="No Dialog To Replace")
        return False

    def _looped(self, req: SipRequest) -> bool:
        branches = {branch for branch, _ in self._client_tx}
        return bool(branches) and looped(req.headers.get_all("Via"), self.config.local_host,
                                         self.config.local_port, branches)

    def _ack(self, req: SipRequest, branch: str, now: float) -> list[ev.Event]:
        tx = self._server_tx.get((branch, "INVITE"))
        if tx is not None and tx.on_ack(now):
            return []  # ACK for a non-2xx final response
        call = self.calls.get(req.call_id)
        if call is None or call.ok_retransmit is None or req.cseq.seq != call.ok_retransmit.cseq:
            return []
        call.ok_retransmit = None
        if call.state is CallState.ANSWERED:
            advance(call, DialogEvent.GOT_ACK)
            return [ev.CallEstablished(call.call_id)]
        return []

    def _cancel(self, req: SipRequest, addr: Addr, branch: str, now: float) -> list[ev.Event]:
        invite_tx = self._server_tx.get((branch, "INVITE"))
        if invite_tx is None:
            self._reply(req, addr, 481, now)
            return []
        call = self.calls.get(req.call_id)
        tag = call.local_tag if call else None
        self._reply(req, addr, 200, now, to_tag=tag)
        if invite_tx.final_sent or call is None:
            return []
        invite_tx.respond(make_response(invite_tx.request, 487, to_tag=tag), now)
        self._drain(invite_tx)
        self._end(call)
        return [ev.CallCancelled(call.call_id)]

    def _in_dialog(self, call: Call, req: SipRequest, addr: Addr, now: float) -> list[ev.Event]:
        tag = call.local_tag
        method = req.method
        if method == "BYE":
            self._reply(req, addr, 200, now, to_tag=tag)
            was_pending = call.invite_server is not None and not call.invite_server.final_sent
            if was_pending and call.invite_server is not None:
                call.invite_server.respond(
                    make_response(call.invite_server.request, 487, to_tag=tag), now)
                self._drain(call.invite_server)
            self._end(call)
            return [ev.ByeReceived(call.call_id)]
        if method in ("INVITE", "UPDATE"):
            if call.reoffer is not None or (method == "INVITE" and call.ok_retransmit):
                self._reply(req, addr, 491, now, to_tag=tag)
                return []
            neg = self._negotiate_timer(req, addr, now, to_tag=tag)
            if neg is None:
                return []
            if not req.body:  # a session refresh without an offer (RFC 4028)
                if method == "UPDATE":
                    self._reply(req, addr, 200, now, to_tag=tag, extra=neg.headers())
                else:  # re-INVITE: our 200 offers the current SDP again, the ACK answers
                    tx = self._reply(req, addr, 200, now, to_tag=tag, body=call.local_sdp,
                                     extra=[("Allow", ALLOW), *neg.headers()])
                    self._resend_until_ack(call, tx, now)
                self._refreshed(call, neg.expires, uas=True, now=now)
                return []
            call.session_neg = neg
            target = req.contact
            if target is not None:
                call.remote_target = target.uri.serialize()
            call.reoffer = self._new_server_tx(req, addr)
            if method == "INVITE":
                call.reoffer.respond(make_response(req, 100), now)
                self._drain(call.reoffer)
            return [ev.ReInvite(call.call_id, req.body, sdp_is_hold(req.body), method)]
        if method == "PRACK":
            return self._prack(call, req, addr, now)
        if method == "INFO":
            digit = parse_info_dtmf(req.headers.get("Content-Type") or "", req.body)
            self._reply(req, addr, 200, now, to_tag=tag)
            return [ev.InfoDtmf(call.call_id, digit.digit, digit.duration_ms)] if digit else []
        if method == "OPTIONS":
            self._reply(req, addr, 200, now, to_tag=tag, extra=[("Allow", ALLOW)])
            return [ev.OptionsProbe(call.call_id, addr)]
        if method == "NOTIFY":
            return self._notify(call, req, addr, now)
        if method == "REFER":
            return self._refer_received(call, req, addr, now)
        self._reply(req, addr, 501, now, to_tag=tag, extra=[("Allow", ALLOW)])
        return []

    def _end(self, call: Call) -> None:
        advance(call, DialogEvent.ENDED)
        call.ok_retransmit = None
        self.calls.pop(call.call_id, None)

    # -- UAS actions ----------------------------------------------------------------
    def _pending_invite(self, call_id: str) -> tuple[Call, ServerTransaction]:
        call = self.calls.get(call_id)
        if call is None or call.invite_server is None or call.invite_server.final_sent:
            raise KeyError(f"no unanswered INVITE for call {call_id}")
        return call, call.invite_server

    def ring(self, call_id: str, now: float, *, sdp: bytes = b"") -> None:
        """Send 180 Ringing, or 183 Session Progress with early-media ``sdp``; reliably
        (RFC 3262) when the INVITE requires or supports 100rel."""
        call, tx = self._pending_invite(call_id)
        if call.peer_100rel:
            self._ring_reliably(call, tx, 183 if sdp else 180, sdp, now)
            return
        self._reply(tx.request, tx.addr, 183 if sdp else 180, now, tx=tx, to_tag=call.local_tag,
                    body=sdp)

    def answer(self, call_id: str, sdp: bytes, now: float) -> None:
        """Send 200 OK with our SDP answer; it is re-sent until the ACK arrives, on every
        transport: RFC 3261 §13.3.1.4 retransmits the 2xx "even if the transport at the
        UAS is reliable", since hops towards the UAC may be UDP."""
        call, tx = self._pending_invite(call_id)
        if self._answer_after_prack(call, sdp):
            return
        neg = call.session_neg
        self._reply(tx.request, tx.addr, 200, now, tx=tx, to_tag=call.local_tag, body=sdp,
                    extra=[("Allow", ALLOW), *(neg.headers() if neg else [])])
        self._resend_until_ack(call, tx, now)
        call.local_sdp = sdp
        advance(call, DialogEvent.SENT_2XX)
        self._refreshed(call, neg.expires if neg else None, uas=True, now=now)

    def _resend_until_ack(self, call: Call, tx: ServerTransaction, now: float) -> None:
        assert tx.last_response is not None
        t1 = self.config.timers.t1
        call.ok_retransmit = Retransmit2xx(tx.last_response.serialize(), tx.request.cseq.seq,
                                           now + t1, t1, now + 64 * t1)

    def reject(self, call_id: str, status: int, now: float, *, retry_after: int | None = None,
               reason: str = "") -> None:
        """Refuse an unanswered INVITE (486 busy, 488 no codec, 503 + Retry-After...)."""
        call, tx = self._pending_invite(call_id)
        extra = [("Retry-After", str(retry_after))] if retry_after is not None else []
        self._reply(tx.request, tx.addr, status, now, tx=tx, to_tag=call.local_tag, extra=extra,
                    reason=reason)
        self._end(call)

    def answer_reoffer(self, call_id: str, sdp: bytes | None, now: float, *,
                       status: int = 200) -> None:
        """Answer a pending re-INVITE/UPDATE (:class:`ReInvite`): 200 with ``sdp``, or an
        error ``status`` (e.g. 488) which leaves the previous session in place."""
        call = self.calls.get(call_id)
        if call is None or call.reoffer is None:
            raise KeyError(f"no pending re-offer for call {call_id}")
        tx, call.reoffer = call.reoffer, None
        body = (sdp or b"") if status < 300 else b""
        neg, call.session_neg = call.session_neg, None
        extra = neg.headers() if neg is not None and status < 300 else []
        self._reply(tx.request, tx.addr, status, now, tx=tx, to_tag=call.local_tag, body=body,
                    extra=extra)
        if status < 300:
            if body:
                call.local_sdp = body
            self._refreshed(call, neg.expires if neg else None, uas=True, now=now)
            if tx.invite:
                self._resend_until_ack(call, tx, now)

    def _retransmit_2xx(self, call: Call, now: float) -> list[ev.Event]:
        rt = call.ok_retransmit
        if rt is None or now < rt.next_at:
            return []
        if now >= rt.give_up_at:
            call.ok_retransmit = None
            if call.state is CallState.ANSWERED:
                # RFC 3261 §13.3.1.4: no ACK -> end the dialog with BYE.
                self._send_in_dialog(call, "BYE", now)
                self._end(call)
                return [ev.CallTerminated(call.call_id, "ack-timeout")]
            return []
        self._send(rt.data, call.peer)
        rt.interval = min(2 * rt.interval, self.config.timers.t2)
        rt.next_at = now + rt.interval
        return []

    def _send_in_dialog(self, call: Call, method: str, now: float, *, body: bytes = b"",
                        content_type: str | None = None,
                        extra: list[tuple[str, str]] | None = None) -> ClientTransaction:
        reliable = self.is_reliable(call.peer)
        req = call.request(method, self.config.local_host, self._port_to(call.peer), self.contact_for(call.peer),
                           body=body, content_type=content_type, extra=extra,
                           transport=self._transport_to(call.peer))
        tx = ClientTransaction(req, call.peer, now, self.config.timers, reliable=reliable)
        self._client_tx[(req.top_via.branch or "", method)] = tx
        self._drain(tx)
        return tx

    # -- responses --------------------------------------------------------------------
    def _response(self, resp: SipResponse, now: float) -> list[ev.Event]:
        key = (resp.top_via.branch or "", resp.cseq.method)
        tx = self._client_tx.get(key)
        if tx is None:
            call = self.calls.get(resp.call_id)
            if call is not None and call.ack_bytes is not None and 200 <= resp.status < 300:
                self._send(call.ack_bytes, call.peer)  # 2xx retransmit after M fired
            return []
        deliver = tx.on_response(resp, now)
        self._drain(tx)
        return self._client_response(tx, deliver, now) if deliver is not None else []


def _with_top_via(headers: Headers, value: str) -> Headers:
    """A copy of ``headers`` whose first Via value is replaced, in place."""
    items = list(headers)
    for i, (name, old) in enumerate(items):
        if name == "Via":
            items[i] = (name, ", ".join([value, *split_list(old)[1:]]))
            break
    return Headers(items)


def _hops(req: SipRequest) -> int | None:
    try:
        return max_forwards(req.headers)
    except SipParseError:
        return None


def parse_target(target: str) -> SipUri:
    """Helper for callers of :meth:`UserAgent.invite`: validate a SIP target."""
    return NameAddr.parse(target).uri if "<" in target else SipUri.parse(target)
