"""The Replaces header (RFC 3891) and its escaped form inside a Refer-To URI.

Attended (warm) transfer ends with a REFER whose ``Refer-To`` carries the dialog to
replace: ``<sip:bob@host?Replaces=call%40id%3Bto-tag%3Da%3Bfrom-tag%3Db>``. The party
receiving the REFER sends an INVITE with ``Replaces: call@id;to-tag=a;from-tag=b`` to
the target, which swaps that INVITE in for the named dialog.

At the party that finally receives the Replaces header, ``to-tag`` names *its own* (local)
tag of the dialog and ``from-tag`` the remote one (RFC 3891 §3), whoever sent the
dialog's first INVITE; :meth:`Replaces.matches` compares that way.

Sans-IO: parsing, building and matching only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from .errors import SipParseError
from .uri import Params, SipUri, format_params, is_token, parse_params

# RFC 3261 §25.1: hnv-unreserved and unreserved characters stay as they are in a header
# value embedded in a URI; everything else (";", "=", "@", "&", "%", spaces) is escaped.
_HNV_SAFE = "[]/?:+$-_.!~*'()"
MAX_LENGTH = 1024


def _check_word(text: str, what: str) -> str:
    """``word`` of RFC 3261 §25.1 (printable ASCII, no separators that split a header)."""
    if not text:
        raise SipParseError(f"Replaces: empty {what}")
    if not text.isascii() or any(ord(ch) <= 0x20 or ord(ch) == 0x7F or ch in ';,"<>' for ch in text):
        raise SipParseError(f"Replaces: bad character in {what}")
    return text


@dataclass(frozen=True)
class Replaces:
    """``Replaces: callid;to-tag=..;from-tag=..[;early-only]``."""

    call_id: str
    to_tag: str
    from_tag: str
    early_only: bool = False
    params: Params = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        _check_word(self.call_id, "Call-ID")
        _check_word(self.to_tag, "to-tag")
        _check_word(self.from_tag, "from-tag")

    @classmethod
    def for_dialog(cls, call_id: str, *, recipient_local_tag: str, recipient_remote_tag: str,
                   early_only: bool = False) -> Replaces:
        """The value to send so that the party owning ``recipient_local_tag`` replaces the dialog."""
        return cls(call_id, recipient_local_tag, recipient_remote_tag, early_only)

    @classmethod
    def parse(cls, text: str) -> Replaces:
        text = text.strip()
        if len(text) > MAX_LENGTH:
            raise SipParseError("Replaces: too long")
        call_id, _, ptext = text.partition(";")
        call_id = call_id.strip()
        params = parse_params(ptext)
        to_tag = params.pop("to-tag", None)
        from_tag = params.pop("from-tag", None)
        if to_tag is None or from_tag is None:
            raise SipParseError("Replaces: to-tag and from-tag are both required")
        early = "early-only" in params
        if params.pop("early-only", None) is not None:
            raise SipParseError("Replaces: early-only takes no value")
        for name in params:
            if not is_token(name):
                raise SipParseError("Replaces: bad parameter name")
        return cls(call_id, to_tag.strip(), from_tag.strip(), early, params)

    def serialize(self) -> str:
        out = f"{self.call_id};to-tag={self.to_tag};from-tag={self.from_tag}"
        if self.early_only:
            out += ";early-only"
        return out + format_params(self.params)

    def __str__(self) -> str:
        return self.serialize()

    def matches(self, call_id: str, *, local_tag: str, remote_tag: str) -> bool:
        """Whether this names the dialog ``(call_id, local_tag, remote_tag)`` of the recipient.

        Call-ID is compared exactly and tags case-sensitively, as RFC 3261 §12 compares
        dialog identifiers.
        """
        return self.call_id == call_id and self.to_tag == local_tag and self.from_tag == remote_tag


def embedded_headers(uri: SipUri) -> list[tuple[str, str]]:
    """The ``?name=value&...`` headers of a URI, unescaped, names lower-cased."""
    if not uri.headers:
        return []
    out: list[tuple[str, str]] = []
    for item in uri.headers.split("&"):
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SipParseError("URI header without a value")
        try:
            out.append((unquote(name, errors="strict").strip().lower(), unquote(value, errors="strict")))
        except UnicodeDecodeError as exc:
            raise SipParseError("URI header is not UTF-8 once unescaped") from exc
    return out


def replaces_in_refer_to(uri: SipUri) -> Replaces | None:
    """The Replaces a Refer-To URI asks for, or ``None`` (a blind transfer).

    More than one Replaces is an error (RFC 3891 §3: answer ``400``).
    """
    found = [value for name, value in embedded_headers(uri) if name == "replaces"]
    if len(found) > 1:
        raise SipParseError("Refer-To carries more than one Replaces")
    return Replaces.parse(found[0]) if found else None


def refer_to_with_replaces(target: SipUri, replaces: Replaces) -> SipUri:
    """``target`` with ``?Replaces=...`` (escaped) for the REFER of an attended transfer.

    Headers already on ``target`` other than Replaces are kept.
    """
    kept = [f"{quote(n, safe=_HNV_SAFE)}={quote(v, safe=_HNV_SAFE)}"
            for n, v in embedded_headers(target) if n != "replaces"]
    kept.append("Replaces=" + quote(replaces.serialize(), safe=_HNV_SAFE))
    return SipUri(host=target.host, user=target.user, port=target.port, scheme=target.scheme,
                  password=target.password, params=dict(target.params), headers="&".join(kept))
