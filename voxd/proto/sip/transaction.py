"""SIP transactions (RFC 3261 §17, with the RFC 6026 Accepted state).

Transactions never do I/O: whatever they want sent is appended to ``outbox``
(bytes for ``addr``), and their timers are absolute deadlines that the owner
checks with :meth:`poll`. ``now`` is any monotonic clock in seconds.

Over a reliable transport (``reliable=True``: TCP, TLS...) nothing is
retransmitted: Timers A, E and G are never started, and Timers D, I, J and K
are zero (the transaction ends at the next poll). The timeouts B, F and H and
the RFC 6026 Timers L and M keep their 64*T1 on every transport.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .headers import Headers
from .message import SipRequest, SipResponse

Addr = tuple[str, int]


@dataclass(frozen=True)
class Timers:
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0


class State(enum.Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"
    TERMINATED = "terminated"


class _Transaction:
    def __init__(self, request: SipRequest, addr: Addr, timers: Timers, reliable: bool) -> None:
        self.request = request
        self.addr = addr
        self.timers = timers
        self.reliable = reliable
        self.outbox: list[bytes] = []
        self.state = State.TRYING
        self.timed_out = False
        # Named timers: name -> absolute deadline.
        self._deadlines: dict[str, float] = {}
        self._interval = timers.t1

    @property
    def branch(self) -> str:
        return self.request.top_via.branch or ""

    @property
    def terminated(self) -> bool:
        return self.state is State.TERMINATED

    def deadline(self) -> float | None:
        return min(self._deadlines.values()) if self._deadlines else None

    def _terminate(self) -> None:
        self.state = State.TERMINATED
        self._deadlines.clear()

    def _wait(self, unreliable: float) -> float:
        """Timers D, I, J and K: their value on UDP, zero on a reliable transport."""
        return 0.0 if self.reliable else unreliable

    def _due(self, name: str, now: float) -> bool:
        when = self._deadlines.get(name)
        return when is not None and now >= when


class ServerTransaction(_Transaction):
    """INVITE (``invite=True``) or non-INVITE server transaction."""

    def __init__(self, request: SipRequest, addr: Addr, timers: Timers = Timers(), *,
                 reliable: bool = False) -> None:
        super().__init__(request, addr, timers, reliable)
        self.invite = request.method == "INVITE"
        self.state = State.PROCEEDING if self.invite else State.TRYING
        self.last_response: SipResponse | None = None
        self._last_bytes: bytes | None = None

    @property
    def final_sent(self) -> bool:
        return self.last_response is not None and self.last_response.status >= 200

    def respond(self, response: SipResponse, now: float) -> None:
        if self.state not in (State.TRYING, State.PROCEEDING):
            raise RuntimeError(f"cannot respond in state {self.state.value}")
        self.last_response = response
        self._last_bytes = response.serialize()
        self.outbox.append(self._last_bytes)
        t = self.timers
        if response.status < 200:
            self.state = State.PROCEEDING
        elif not self.invite:
            self.state = State.COMPLETED
            self._deadlines = {"J": now + self._wait(64 * t.t1)}
        elif response.status < 300:
            # The TU retransmits the 2xx until the ACK; we only absorb retransmissions.
            self.state = State.ACCEPTED
            self._deadlines = {"L": now + 64 * t.t1}
        else:
            self.state = State.COMPLETED
            self._interval = t.t1
            self._deadlines = {"H": now + 64 * t.t1}
            if not self.reliable:
                self._deadlines["G"] = now + t.t1

    def on_retransmission(self) -> None:
        """The same request arrived again: repeat the last response, if any."""
        if self._last_bytes is not None and self.state is not State.TERMINATED:
            self.outbox.append(self._last_bytes)

    def on_ack(self, now: float) -> bool:
        """ACK for a non-2xx final response. Returns True if it was expected."""
        if self.state is State.COMPLETED and self.invite:
            self.state = State.CONFIRMED
            self._deadlines = {"I": now + self._wait(self.timers.t4)}
            return True
        return self.state is State.CONFIRMED

    def poll(self, now: float) -> None:
        if self._due("H", now):
            self.timed_out = True
            self._terminate()
            return
        if self._due("G", now) and self._last_bytes is not None:
            self.outbox.append(self._last_bytes)
            self._interval = min(2 * self._interval, self.timers.t2)
            self._deadlines["G"] = now + self._interval
        for name in ("I", "J", "L"):
            if self._due(name, now):
                self._terminate()


class ClientTransaction(_Transaction):
    """INVITE or non-INVITE client transaction; ``poll``/``on_response`` return
    responses to hand to the transaction user (a synthetic 408 on timeout)."""

    def __init__(self, request: SipRequest, addr: Addr, now: float,
                 timers: Timers = Timers(), *, reliable: bool = False) -> None:
        super().__init__(request, addr, timers, reliable)
        self.invite = request.method == "INVITE"
        self.state = State.CALLING if self.invite else State.TRYING
        self._request_bytes = request.serialize()
        self._ack_bytes: bytes | None = None
        self.outbox.append(self._request_bytes)
        self._deadlines = {"B" if self.invite else "F": now + 64 * timers.t1}
        if not reliable:
            self._deadlines["A" if self.invite else "E"] = now + timers.t1

    @property
    def pending(self) -> bool:
        """No final response yet."""
        return self.state in (State.CALLING, State.TRYING, State.PROCEEDING)

    def on_response(self, response: SipResponse, now: float) -> SipResponse | None:
        status = response.status
        t = self.timers
        if self.state in (State.CALLING, State.TRYING, State.PROCEEDING):
            if status < 200:
                self.state = State.PROCEEDING
                self._deadlines.pop("A", None)
                if not self.invite:
                    self._interval = t.t2
                return response
            if self.invite and status < 300:
                self.state = State.ACCEPTED
                self._deadlines = {"M": now + 64 * t.t1}
                return response
            self.state = State.COMPLETED
            if self.invite:
                self._ack_bytes = self._build_ack(response).serialize()
                self.outbox.append(self._ack_bytes)
                self._deadlines = {"D": now + self._wait(32.0)}
            else:
                self._deadlines = {"K": now + self._wait(t.t4)}
            return response
        if self.state is State.ACCEPTED and 200 <= status < 300:
            return response  # the TU re-sends its ACK for retransmitted 2xx
        if self.state is State.COMPLETED and self._ack_bytes is not None and status >= 300:
            self.outbox.append(self._ack_bytes)
        return None

    def poll(self, now: float) -> SipResponse | None:
        timeout_timer = "B" if self.invite else "F"
        if self.state in (State.CALLING, State.TRYING, State.PROCEEDING) and self._due(
            timeout_timer, now
        ):
            self.timed_out = True
            self._terminate()
            return _timeout_response(self.request)
        retransmit = "A" if self.invite else "E"
        if self._due(retransmit, now):
            self.outbox.append(self._request_bytes)
            if self.invite:
                self._interval *= 2
            else:
                self._interval = min(2 * self._interval, self.timers.t2)
            self._deadlines[retransmit] = now + self._interval
        for name in ("D", "K", "M"):
            if self._due(name, now):
                self._terminate()
        return None

    def _build_ack(self, response: SipResponse) -> SipRequest:
        """ACK for a non-2xx final response (RFC 3261 §17.1.1.3): same branch."""
        req = self.request
        headers = Headers()
        headers.add("Via", req.headers.get_all("Via")[0])
        for route in req.headers.get_all("Route"):
            headers.add("Route", route)
        headers.add("Max-Forwards", "70")
        headers.add("From", req.headers.get("From") or "")
        headers.add("To", response.headers.get("To") or "")
        headers.add("Call-ID", req.call_id)
        headers.add("CSeq", f"{req.cseq.seq} ACK")
        return SipRequest("ACK", req.uri, headers)


def _timeout_response(request: SipRequest) -> SipResponse:
    headers = Headers()
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        value = request.headers.get(name)
        if value is not None:
            headers.add(name, value)
    return SipResponse(408, "Request Timeout", headers)
