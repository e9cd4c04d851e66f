"""Reliable provisional responses (RFC 3262, 100rel/PRACK): the header grammar and the
state of one reliable 1xx the UAS keeps re-sending until the PRACK arrives.

    RSeq = 1*DIGIT                         (1 .. 2**32 - 1)
    RAck = response-num LWS CSeq-num LWS Method
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from .errors import SipParseError, is_digits
from .headers import Headers
from .uri import is_token

MAX_RSEQ = 2**32 - 1


@dataclass
class ReliableProvisional:
    """A reliable 1xx in flight: re-sent at T1, 2*T1, 4*T1 ... until PRACKed or 64*T1."""

    data: bytes
    rseq: int
    cseq: int  # the INVITE's CSeq number (the RAck names it)
    next_at: float
    interval: float
    give_up_at: float

    def matches(self, rack: tuple[int, int, str]) -> bool:
        return rack == (self.rseq, self.cseq, "INVITE")


def _number(text: str, what: str, top: int) -> int:
    if not is_digits(text) or len(text) > 10:
        raise SipParseError(f"bad {what}")
    value = int(text)
    if not 0 < value <= top and not (what == "CSeq in RAck" and value == 0):
        raise SipParseError(f"{what} out of range")
    return value


def parse_rseq(value: str | None) -> int:
    """The RSeq header's number; :class:`SipParseError` if missing or malformed."""
    if value is None:
        raise SipParseError("missing RSeq")
    return _number(value.strip(), "RSeq", MAX_RSEQ)


def parse_rack(value: str | None) -> tuple[int, int, str]:
    """(RSeq, CSeq number, method) of a RAck header."""
    if value is None:
        raise SipParseError("missing RAck")
    parts = value.split()
    if len(parts) != 3 or not is_token(parts[2]):
        raise SipParseError("bad RAck")
    return (_number(parts[0], "RSeq in RAck", MAX_RSEQ), _number(parts[1], "CSeq in RAck", 2**31 - 1),
            parts[2].upper())


def option_tags(headers: Headers, name: str) -> set[str]:
    """The option tags in every ``name`` header (Require, Supported, ...), lower-cased."""
    return {t.strip().lower() for t in headers.get_all(name) if t.strip()}


def wants_100rel(headers: Headers) -> bool:
    """The INVITE asks for (Require) or accepts (Supported) reliable provisionals."""
    return "100rel" in option_tags(headers, "Require") or "100rel" in option_tags(headers, "Supported")


def first_rseq() -> int:
    """RFC 3262 §3: the first RSeq is random, between 1 and 2**31 - 1."""
    return secrets.randbelow(2**31 - 1) + 1
