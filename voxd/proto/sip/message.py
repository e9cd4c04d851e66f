"""SIP request/response messages: parse and serialize (RFC 3261 §7, §18.3)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import SipParseError, is_digits
from .headers import Headers
from .uri import CSeq, NameAddr, SipUri, Via, is_token

REASONS: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 183: "Session Progress",
    200: "OK", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 407: "Proxy Authentication Required",
    408: "Request Timeout", 415: "Unsupported Media Type", 416: "Unsupported URI Scheme",
    420: "Bad Extension", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    491: "Request Pending", 500: "Server Internal Error", 501: "Not Implemented",
    503: "Service Unavailable", 504: "Server Time-out", 600: "Busy Everywhere",
    603: "Decline",
}

MAX_MESSAGE = 65535
_REQUIRED = ("Via", "From", "To", "Call-ID", "CSeq")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9.!%*_+`'~\-]+$")


class _Common:
    """Accessors shared by requests and responses (both have ``headers``/``body``)."""

    headers: Headers
    body: bytes

    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID") or ""

    @property
    def cseq(self) -> CSeq:
        return CSeq.parse(self.headers.get("CSeq") or "")

    @property
    def vias(self) -> list[Via]:
        return [Via.parse(v) for v in self.headers.get_all("Via")]

    @property
    def top_via(self) -> Via:
        values = self.headers.get_all("Via")
        if not values:
            raise SipParseError("missing Via")
        return Via.parse(values[0])

    @property
    def from_(self) -> NameAddr:
        return NameAddr.parse(self.headers.get("From") or "")

    @property
    def to(self) -> NameAddr:
        return NameAddr.parse(self.headers.get("To") or "")

    @property
    def contact(self) -> NameAddr | None:
        values = self.headers.get_all("Contact")
        if not values or values[0] == "*":
            return None
        return NameAddr.parse(values[0])

    @property
    def content_type(self) -> str:
        value = self.headers.get("Content-Type") or ""
        return value.split(";")[0].strip().lower()

    def _serialize(self, start: str) -> bytes:
        lines = [start]
        length_written = False
        for name, value in self.headers:
            if name == "Content-Length":
                if not length_written:  # keep its position, fix its value
                    lines.append(f"Content-Length: {len(self.body)}")
                    length_written = True
                continue
            lines.append(f"{name}: {value}")
        if not length_written:
            lines.append(f"Content-Length: {len(self.body)}")
        head = "\r\n".join(lines) + "\r\n\r\n"
        return head.encode("utf-8", "surrogateescape") + self.body


@dataclass
class SipRequest(_Common):
    method: str
    uri: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    @property
    def request_uri(self) -> SipUri:
        return SipUri.parse(self.uri)

    def serialize(self) -> bytes:
        return self._serialize(f"{self.method} {self.uri} SIP/2.0")


@dataclass
class SipResponse(_Common):
    status: int
    reason: str = ""
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def serialize(self) -> bytes:
        reason = self.reason or REASONS.get(self.status, "Unknown")
        return self._serialize(f"SIP/2.0 {self.status} {reason}")


SipMessage = SipRequest | SipResponse


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    for sep in (b"\r\n\r\n", b"\n\n"):
        idx = data.find(sep)
        if idx >= 0:
            return data[:idx], data[idx + len(sep) :]
    return data, b""


def _header_lines(head: str) -> tuple[str, list[tuple[str, str]]]:
    lines = head.replace("\r\n", "\n").split("\n")
    start = lines[0].strip()
    fields: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t":
            if not fields:
                raise SipParseError("continuation line before any header")
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {line.strip()}".strip())
            continue
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not _HEADER_NAME.match(name):
            raise SipParseError("malformed header line")
        fields.append((name, value.strip()))
    return start, fields


def _check_request_fields(req: SipRequest) -> None:
    req.top_via  # noqa: B018 - parse for validation
    req.from_  # noqa: B018
    req.to  # noqa: B018
    cseq = req.cseq
    if not req.call_id:
        raise SipParseError("empty Call-ID")
    if cseq.method != req.method and not (req.method == "ACK" and cseq.method == "INVITE"):
        raise SipParseError("CSeq method does not match request method")


def parse_message(data: bytes, *, datagram: bool = True) -> SipRequest | SipResponse:
    """Parse one SIP message.

    For datagrams (``datagram=True``) a body longer than Content-Length is
    truncated and a shorter one raises; without Content-Length the rest of the
    datagram is the body. Raises :class:`SipParseError` on malformed input.
    """
    if len(data) > MAX_MESSAGE:
        raise SipParseError("message too large")
    head_bytes, rest = _split_head(data.lstrip(b"\r\n"))
    if not head_bytes:
        raise SipParseError("empty message")
    try:
        head = head_bytes.decode("utf-8", "surrogateescape")
    except UnicodeDecodeError as exc:  # pragma: no cover - surrogateescape never fails
        raise SipParseError("undecodable header") from exc
    if "\x00" in head:
        raise SipParseError("NUL byte in header")
    start, fields = _header_lines(head)
    headers = Headers(fields)
    msg: SipRequest | SipResponse
    parts = start.split(" ", 2)
    if start.startswith("SIP/"):
        if len(parts) < 2 or parts[0].upper() != "SIP/2.0":
            raise SipParseError("bad status line")
        if len(parts[1]) != 3 or not is_digits(parts[1]) or not 100 <= int(parts[1]) <= 699:
            raise SipParseError("bad status code")
        msg = SipResponse(int(parts[1]), parts[2] if len(parts) > 2 else "", headers)
    else:
        if len(parts) != 3 or parts[2].upper() != "SIP/2.0" or not is_token(parts[0]):
            raise SipParseError("bad request line")
        if not parts[1] or any(c in parts[1] for c in " \t<>"):
            raise SipParseError("bad Request-URI")
        msg = SipRequest(parts[0].upper(), parts[1], headers)

    missing = [name for name in _REQUIRED if headers.get(name) is None]
    if missing:
        raise SipParseError("missing header " + missing[0])
    try:
        if isinstance(msg, SipRequest):
            _check_request_fields(msg)
        else:
            msg.top_via  # noqa: B018
            msg.cseq  # noqa: B018
            msg.from_  # noqa: B018
            msg.to  # noqa: B018
    except SipParseError as exc:
        raise SipParseError(exc.reason, request=_respondable(msg)) from None

    length_text = headers.get("Content-Length")
    if length_text is None:
        if not datagram:
            raise SipParseError("missing Content-Length on stream", request=_respondable(msg))
        msg.body = rest
        return msg
    if not is_digits(length_text):
        raise SipParseError("bad Content-Length", request=_respondable(msg))
    length = int(length_text)
    if length > len(rest):
        raise SipParseError("body shorter than Content-Length", request=_respondable(msg))
    msg.body = rest[:length]
    return msg


def _respondable(msg: SipRequest | SipResponse) -> SipRequest | None:
    """The request if Via/From/To/Call-ID/CSeq are good enough to build a 400."""
    if not isinstance(msg, SipRequest) or msg.method == "ACK":
        return None
    try:
        msg.top_via  # noqa: B018
        msg.cseq  # noqa: B018
        msg.from_  # noqa: B018
        msg.to  # noqa: B018
    except SipParseError:
        return None
    return msg if msg.call_id else None


class StreamParser:
    """Frames SIP messages on a byte stream (TCP/TLS): ``feed()`` yields whole messages.

    CRLF keep-alives (RFC 5626) between messages are skipped. A framing error
    raises :class:`SipParseError`; the connection should then be closed.
    """

    def __init__(self, max_size: int = MAX_MESSAGE) -> None:
        self._buf = bytearray()
        self._max = max_size

    def feed(self, data: bytes) -> list[SipRequest | SipResponse]:
        self._buf += data
        out: list[SipRequest | SipResponse] = []
        while True:
            while self._buf[:2] == b"\r\n":
                del self._buf[:2]
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > self._max:
                    raise SipParseError("header section too large")
                return out
            head = bytes(self._buf[:end])
            match = re.search(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(\d+)[ \t]*$", head)
            if match is None:
                raise SipParseError("missing Content-Length on stream")
            length = int(match.group(1))
            total = end + 4 + length
            if total > self._max:
                raise SipParseError("message too large")
            if len(self._buf) < total:
                return out
            chunk = bytes(self._buf[:total])
            del self._buf[:total]
            out.append(parse_message(chunk, datagram=False))


def make_response(
    request: SipRequest,
    status: int,
    reason: str = "",
    *,
    to_tag: str | None = None,
    body: bytes = b"",
    content_type: str | None = None,
    extra: list[tuple[str, str]] | None = None,
) -> SipResponse:
    """A response copying Via/From/To/Call-ID/CSeq (RFC 3261 §8.2.6)."""
    headers = Headers()
    for value in request.headers.get_all("Via"):
        headers.add("Via", value)
    to_value = request.headers.get("To") or ""
    if to_tag is not None and status != 100:
        to = NameAddr.parse(to_value)
        if to.tag is None:
            to.params["tag"] = to_tag
            to_value = to.serialize()
    headers.add("From", request.headers.get("From") or "")
    headers.add("To", to_value)
    headers.add("Call-ID", request.call_id)
    headers.add("CSeq", request.headers.get("CSeq") or "")
    if 100 < status < 300 and request.method in ("INVITE", "SUBSCRIBE", "REFER"):
        for value in request.headers.get_all("Record-Route"):
            headers.add("Record-Route", value)
    for name, value in extra or []:
        headers.add(name, value)
    if body:
        headers.add("Content-Type", content_type or "application/sdp")
    return SipResponse(status, reason or REASONS.get(status, ""), headers, body)


def bad_request(error: SipParseError) -> SipResponse | None:
    """The ``400 Bad Request`` a transport should send for ``error``, if any."""
    if error.request is None:
        return None
    try:
        return make_response(error.request, 400, "Bad Request",
                             extra=[("Warning", '399 voxd "malformed request"')])
    except SipParseError:
        return None
