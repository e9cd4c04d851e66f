"""Hop limits and back-off: Max-Forwards (RFC 3261 §8.1.1.6, §16.3), loops back to
ourselves (482), and Retry-After (RFC 3261 §20.33)."""

from __future__ import annotations

from collections.abc import Iterable

from .errors import SipParseError, is_digits
from .headers import Headers
from .uri import Via

DEFAULT_MAX_FORWARDS = 70
MAX_RETRY_AFTER = 86400  # a carrier asking for more than a day is capped to a day


def max_forwards(headers: Headers) -> int | None:
    """The request's Max-Forwards (None when absent); SipParseError when malformed."""
    value = headers.get("Max-Forwards")
    if value is None:
        return None
    text = value.strip()
    if not is_digits(text) or len(text) > 10:
        raise SipParseError("bad Max-Forwards")
    return int(text)


def next_hop_max_forwards(inbound: int | None) -> int:
    """Max-Forwards for a request voxd sends on behalf of an inbound one: one less
    (RFC 3261 §16.6 step 3), at most the default."""
    if inbound is None:
        return DEFAULT_MAX_FORWARDS
    return max(0, min(inbound, DEFAULT_MAX_FORWARDS + 1) - 1)


def parse_retry_after(value: str | None) -> int | None:
    """Seconds of ``Retry-After: 18 (maintenance);duration=60`` (18), capped at a day;
    None when absent or malformed."""
    if not value:
        return None
    head = value.split(";", 1)[0].split("(", 1)[0].strip()
    if not is_digits(head) or len(head) > 10:
        return None
    return min(int(head), MAX_RETRY_AFTER)


def looped(vias: Iterable[str], host: str, port: int, branches: set[str]) -> bool:
    """A request carrying a Via of ours (our sent-by and a branch we created): it left
    voxd and came back (a trunk routed our own INVITE to us)."""
    for value in vias:
        try:
            via = Via.parse(value)
        except SipParseError:
            continue
        if via.branch in branches and via.host == host and (via.port or 5060) == port:
            return True
    return False
