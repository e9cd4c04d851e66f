"""Typed errors raised by the SIP parser."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .message import SipRequest


class SipParseError(ValueError):
    """Malformed SIP input.

    ``request`` is set when enough of a request was understood (Via, From, To,
    Call-ID, CSeq) for the transport to answer ``400 Bad Request``; otherwise the
    datagram should be dropped (or the stream connection closed).
    """

    def __init__(self, reason: str, *, request: SipRequest | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.request = request

    @property
    def can_respond(self) -> bool:
        return self.request is not None

    def __repr__(self) -> str:
        return f"SipParseError({self.reason!r}, can_respond={self.can_respond})"


def is_digits(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts "²" or "٣", which ``int`` refuses."""
    return text.isascii() and text.isdigit()
