"""Session timers (RFC 4028) in :class:`~voxd.proto.sip.agent.UserAgent`: the negotiated
Session-Expires goes into our 2xx, our refreshes (UPDATE when the peer allows it, else a
re-INVITE with the same SDP) go at half the interval, and a session the peer should
have refreshed and did not is ended with a BYE (``CallTerminated("session_expired")``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import events as ev
from .dialog import Call
from .dialog_state import CallState
from .errors import SipParseError
from .headers import Headers
from .message import SipRequest, SipResponse
from .session_timer import Negotiated, SessionExpires, negotiate_uas, parse_min_se, retry_after_422, timer_for
from .transaction import ClientTransaction, ServerTransaction

if TYPE_CHECKING:
    from .agent import UAConfig

Addr = tuple[str, int]
SESSION_EXPIRED_REASON = 'SIP;cause=408;text="Session expired"'


def allowed_methods(headers: Headers) -> frozenset[str]:
    return frozenset(m.strip().upper() for m in headers.get_all("Allow"))


class SessionTimerMixin:
    if TYPE_CHECKING:
        config: UAConfig

        def _end(self, call: Call) -> None: ...
        def _send_in_dialog(self, call: Call, method: str, now: float, *, body: bytes = b"",
                            content_type: str | None = None,
                            extra: list[tuple[str, str]] | None = None) -> ClientTransaction: ...
        def _start_client(self, req: SipRequest, addr: Addr, now: float) -> ClientTransaction: ...
        def _reply(self, req: SipRequest, addr: Addr, status: int, now: float, *,
                   tx: ServerTransaction | None = None, to_tag: str | None = None,
                   body: bytes = b"", extra: list[tuple[str, str]] | None = None,
                   reason: str = "") -> ServerTransaction: ...

    # -- as UAS -----------------------------------------------------------------------
    def _negotiate_timer(self, req: SipRequest, addr: Addr, now: float,
                         to_tag: str | None = None) -> Negotiated | None:
        """The request's session-timer answer, or None when it was refused (400, 422 sent)."""
        try:
            neg = negotiate_uas(req.headers, self.config.session)
        except SipParseError as exc:
            self._reply(req, addr, 400, now, to_tag=to_tag, reason=str(exc)[:60].title())
            return None
        if neg.status == 422:
            self._reply(req, addr, 422, now, to_tag=to_tag, extra=neg.headers())
            return None
        return neg

    def _refreshed(self, call: Call, se: SessionExpires | None, *, uas: bool, now: float) -> None:
        """A 2xx to an INVITE/UPDATE went or came: the session is refreshed."""
        timer = timer_for(se, uas=uas, now=now)
        if timer is not None:
            call.session_timer = timer
        elif call.session_timer is not None:
            call.session_timer.restart(now)

    # -- as UAC -----------------------------------------------------------------------
    def _timer_request_headers(self) -> list[tuple[str, str]]:
        policy = self.config.session
        out = [("Supported", "100rel, timer")]
        if policy.expires:
            out += [("Session-Expires", str(policy.expires)), ("Min-SE", str(policy.min_se))]
        return out

    def _timer_from_2xx(self, call: Call, resp: SipResponse, now: float) -> None:
        if "Allow" in resp.headers:
            call.peer_allow = allowed_methods(resp.headers)
        value = resp.headers.get("Session-Expires")
        try:
            se = SessionExpires.parse(value) if value else None
        except SipParseError:
            se = None
        self._refreshed(call, se, uas=False, now=now)

    def _retry_422(self, call: Call, tx: ClientTransaction, resp: SipResponse, now: float) -> bool:
        """RFC 4028 §7.4: the INVITE again, asking for the Min-SE of the 422 (once)."""
        if call.timer_retried:
            return False
        try:
            min_se = parse_min_se(resp.headers.get("Min-SE") or "")
        except SipParseError:
            return False
        call.timer_retried = True
        call.invite_client = self._start_client(retry_after_422(tx.request, min_se, call.next_cseq()),
                                                tx.addr, now)
        return True

    # -- timers -----------------------------------------------------------------------
    def _poll_session_timer(self, call: Call, now: float) -> list[ev.Event]:
        timer = call.session_timer
        if timer is None or call.state is not CallState.CONFIRMED:
            return []
        if now >= timer.expire_at:
            call.session_timer = None
            self._send_in_dialog(call, "BYE", now, extra=[("Reason", SESSION_EXPIRED_REASON)])
            self._end(call)
            return [ev.CallTerminated(call.call_id, "session_expired")]
        if timer.refresh_at is not None and now >= timer.refresh_at:
            busy = call.reoffer is not None or (call.reoffer_client is not None and call.reoffer_client.pending)
            if busy:  # an offer/answer is in progress: try again shortly
                timer.refresh_at = now + 2.0
                return []
            timer.refresh_at = None  # until the refresh is answered
            extra = [("Session-Expires", SessionExpires(timer.interval, "uac").serialize()),
                     ("Supported", "100rel, timer")]
            if "UPDATE" in call.peer_allow:
                call.reoffer_client = self._send_in_dialog(call, "UPDATE", now, extra=extra)
            else:
                call.reoffer_client = self._send_in_dialog(call, "INVITE", now, body=call.local_sdp,
                                                           extra=extra)
            call.refreshing = True
        return []

    def _refresh_answered(self, call: Call, resp: SipResponse, now: float) -> list[ev.Event]:
        """The answer to our own refresh (not reported as a re-offer)."""
        call.refreshing = False
        if 200 <= resp.status < 300:
            self._timer_from_2xx(call, resp, now)
        elif resp.status in (408, 481):  # RFC 4028 §10: the session is gone
            self._send_in_dialog(call, "BYE", now, extra=[("Reason", SESSION_EXPIRED_REASON)])
            self._end(call)
            return [ev.CallTerminated(call.call_id, "session_expired")]
        return []
