"""Responses the SIP endpoint's user agent does not own (REGISTER transactions run by
voxd/net/sip_register.py) are offered to taps before the UA sees them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from voxd.proto.sip.errors import SipParseError
from voxd.proto.sip.message import SipResponse, parse_message

Addr = tuple[str, int]
Tap = Callable[[SipResponse, Addr], bool]


def tap_datagram(taps: Sequence[Tap], data: bytes, addr: Addr) -> bool:
    """True when a tap took the response in ``data`` (malformed input: False, the UA drops it)."""
    try:
        msg = parse_message(data)
    except SipParseError:
        return False
    return isinstance(msg, SipResponse) and any(tap(msg, addr) for tap in taps)
