"""Session timers (RFC 4028): the Session-Expires and Min-SE grammar, the negotiation
of interval and refresher, and one dialog's timer state.

    Session-Expires = ("Session-Expires" / "x") HCOLON delta-seconds *(SEMI se-params)
    se-params       = refresher-param / generic-param
    refresher-param = "refresher" EQUAL ("uas" / "uac")
    Min-SE          = "Min-SE" HCOLON delta-seconds *(SEMI generic-param)

The refresher refreshes at half the interval (RFC 4028 §10); the other side ends the
session when nothing refreshed it by the interval minus min(32, interval/3) (§10).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .dialog import new_branch
from .errors import SipParseError, is_digits
from .headers import Headers
from .message import SipRequest
from .reliable import option_tags
from .uri import Via

Refresher = Literal["uac", "uas"]
MIN_SE_FLOOR = 90  # RFC 4028 §4: Min-SE is never below 90 s
MAX_DELTA = 2**31 - 1


def _delta(text: str, what: str) -> int:
    text = text.strip()
    if not is_digits(text) or len(text) > 10:
        raise SipParseError(f"bad {what}")
    value = int(text)
    if not 0 < value <= MAX_DELTA:
        raise SipParseError(f"{what} out of range")
    return value


@dataclass(frozen=True)
class SessionExpires:
    delta: int
    refresher: Refresher | None = None

    @classmethod
    def parse(cls, value: str) -> SessionExpires:
        parts = value.split(";")
        delta = _delta(parts[0], "Session-Expires")
        refresher: Refresher | None = None
        for param in parts[1:]:
            name, _, val = param.partition("=")
            if name.strip().lower() == "refresher":
                who = val.strip().lower()
                if who not in ("uac", "uas"):
                    raise SipParseError("bad refresher in Session-Expires")
                refresher = "uac" if who == "uac" else "uas"
        return cls(delta, refresher)

    def serialize(self) -> str:
        return f"{self.delta};refresher={self.refresher}" if self.refresher else str(self.delta)


def parse_min_se(value: str) -> int:
    return _delta(value.split(";")[0], "Min-SE")


@dataclass(frozen=True)
class TimerPolicy:
    """Ours: ``expires`` asked for in our INVITEs (0: we ask for none) and the largest
    interval we accept; ``min_se`` the smallest (a shorter one gets 422). RFC 4028 §4
    puts Min-SE at 90 s or more; the configuration enforces it, a test may go lower."""

    expires: int = 1800
    min_se: int = MIN_SE_FLOOR


@dataclass(frozen=True)
class Negotiated:
    """What a UAS answers a request with: ``status`` 422 (with ``min_se``), or the
    Session-Expires to put in the 2xx (None: no timer) and whether to Require: timer."""

    status: int = 200
    expires: SessionExpires | None = None
    require: bool = False
    min_se: int = MIN_SE_FLOOR

    def headers(self) -> list[tuple[str, str]]:
        if self.status == 422:
            return [("Min-SE", str(self.min_se))]
        out: list[tuple[str, str]] = [("Supported", "100rel, timer")]
        if self.expires is not None:
            out.append(("Session-Expires", self.expires.serialize()))
            if self.require:
                out.append(("Require", "timer"))
        return out


def negotiate_uas(headers: Headers, policy: TimerPolicy) -> Negotiated:
    """RFC 4028 §9 for an INVITE or UPDATE we answer. Raises SipParseError on a malformed
    Session-Expires or Min-SE."""
    supported = "timer" in option_tags(headers, "Supported")
    value = headers.get("Session-Expires")
    min_se_value = headers.get("Min-SE")
    their_min = parse_min_se(min_se_value) if min_se_value else 0
    floor = policy.min_se  # sip.session_timers.min_se_s keeps it at 90 or more
    if value is None:
        if supported and policy.expires:  # they can refresh, but asked nothing: we refresh
            return Negotiated(expires=SessionExpires(max(policy.expires, floor, their_min), "uas"), require=True)
        return Negotiated()
    se = SessionExpires.parse(value)
    if se.delta < floor:
        return Negotiated(422, min_se=floor)
    delta = min(se.delta, policy.expires) if policy.expires else se.delta
    delta = max(delta, their_min, floor)
    refresher: Refresher = se.refresher or ("uac" if supported else "uas")
    if not supported:
        refresher = "uas"  # a UAC without the extension cannot refresh (a proxy asked)
    return Negotiated(expires=SessionExpires(delta, refresher), require=supported)


@dataclass
class SessionTimer:
    """One dialog's session timer. ``we_refresh``: we send the refreshes (at half the
    interval); otherwise we end the session if the peer's refresh is late."""

    interval: int
    we_refresh: bool
    refresh_at: float | None = None
    expire_at: float = 0.0

    def restart(self, now: float) -> None:
        self.refresh_at = now + self.interval / 2 if self.we_refresh else None
        margin = 0.0 if self.we_refresh else min(32.0, self.interval / 3)
        self.expire_at = now + self.interval - margin

    def deadline(self) -> float:
        return min(self.expire_at, self.refresh_at) if self.refresh_at is not None else self.expire_at


def timer_for(se: SessionExpires | None, *, uas: bool, now: float) -> SessionTimer | None:
    """The timer after a 2xx carrying ``se``; ``uas``: we answered that transaction."""
    if se is None:
        return None
    refresher = se.refresher or "uac"
    timer = SessionTimer(se.delta, we_refresh=(refresher == "uas") == uas)
    timer.restart(now)
    return timer


def retry_after_422(request: SipRequest, min_se: int, cseq: int) -> SipRequest:
    """``request`` again (new branch, CSeq ``cseq``) asking for at least ``min_se``
    (RFC 4028 §7.4)."""
    headers = Headers()
    for name, old in request.headers:
        if name in ("Session-Expires", "Min-SE"):
            continue
        if name == "Via" and "Via" not in headers:
            via = Via.parse(old.split(",")[0])
            via.params["branch"] = new_branch()
            old = via.serialize()
        elif name == "CSeq":
            old = f"{cseq} {request.method}"
        headers.add(name, old)
    headers.add("Session-Expires", str(min_se))
    headers.add("Min-SE", str(min_se))
    return SipRequest(request.method, request.uri, headers, request.body)
