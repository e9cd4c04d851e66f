"""SIP URIs, name-addr values, Via and CSeq (RFC 3261 §19, §20, §25; RFC 3581)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import SipParseError, is_digits

Params = dict[str, str | None]

_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~\-]+$")


def parse_params(text: str) -> Params:
    """Parse ``;a=b;c`` (leading ``;`` optional) into an ordered dict."""
    params: Params = {}
    for raw in _split_unquoted(text, ";"):
        item = raw.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not name:
            raise SipParseError("empty parameter name")
        params[name.lower()] = value.strip() if sep else None
    return params


def format_params(params: Params) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def _split_unquoted(text: str, sep: str) -> list[str]:
    if '"' not in text:
        return text.split(sep)
    parts: list[str] = []
    start = 0
    quoted = False
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def split_hostport(text: str) -> tuple[str, int | None]:
    """``host[:port]`` with IPv6 references in brackets."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError("unterminated IPv6 reference")
        host, rest = text[: end + 1], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise SipParseError("junk after IPv6 reference")
        port_text = rest[1:] if rest else ""
    else:
        host, _, port_text = text.partition(":")
    if not host or any(c in host for c in " \t<>\"@;"):
        raise SipParseError("bad host")
    if not port_text:
        return host, None
    if not is_digits(port_text) or not 0 < int(port_text) < 65536:
        raise SipParseError("bad port")
    return host, int(port_text)


@dataclass
class SipUri:
    """``sip:user:password@host:port;params?headers`` (also ``sips:``/``tel:``)."""

    host: str
    user: str | None = None
    port: int | None = None
    scheme: str = "sip"
    password: str | None = field(default=None, repr=False)
    params: Params = field(default_factory=dict)
    headers: str | None = None

    @classmethod
    def parse(cls, text: str) -> SipUri:
        text = text.strip()
        scheme, sep, rest = text.partition(":")
        scheme = scheme.lower()
        if not sep or scheme not in ("sip", "sips", "tel"):
            raise SipParseError("unsupported URI scheme")
        rest, qsep, headers = rest.partition("?")
        if scheme == "tel":
            number, _, ptext = rest.partition(";")
            if not number:
                raise SipParseError("empty tel URI")
            return cls(host="", user=number, scheme="tel", params=parse_params(ptext),
                       headers=headers if qsep else None)
        userinfo, at, hostpart = rest.rpartition("@")
        if not at:
            hostpart = rest
        user: str | None = None
        password: str | None = None
        if at:
            user, psep, pw = userinfo.partition(":")
            password = pw if psep else None
            if not user:
                raise SipParseError("empty user part")
        hostport, _, ptext = hostpart.partition(";")
        host, port = split_hostport(hostport)
        return cls(host=host, user=user, port=port, scheme=scheme, password=password,
                   params=parse_params(ptext), headers=headers if qsep else None)

    def serialize(self) -> str:
        if self.scheme == "tel":
            out = f"tel:{self.user}{format_params(self.params)}"
        else:
            userinfo = ""
            if self.user is not None:
                userinfo = self.user
                if self.password is not None:
                    userinfo += ":" + self.password
                userinfo += "@"
            port = f":{self.port}" if self.port is not None else ""
            out = f"{self.scheme}:{userinfo}{self.host}{port}{format_params(self.params)}"
        if self.headers is not None:
            out += "?" + self.headers
        return out

    def __str__(self) -> str:
        return self.serialize()


@dataclass
class NameAddr:
    """A From/To/Contact/Route value: ``"Display" <uri>;tag=...``."""

    uri: SipUri
    display_name: str | None = None
    params: Params = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        text = text.strip()
        display: str | None = None
        if text.startswith('"'):
            i = 1
            while i < len(text) and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            if i >= len(text):
                raise SipParseError("unterminated display name")
            display = text[1:i]
            text = text[i + 1 :].lstrip()
            if not text.startswith("<"):
                raise SipParseError("quoted display name without <uri>")
        lt = text.find("<")
        if lt >= 0:
            gt = text.find(">", lt)
            if gt < 0:
                raise SipParseError("unterminated <uri>")
            if display is None and text[:lt].strip():
                display = text[:lt].strip()
            uri = SipUri.parse(text[lt + 1 : gt])
            rest = text[gt + 1 :].strip()
            if rest and not rest.startswith(";"):
                raise SipParseError("junk after <uri>")
            return cls(uri=uri, display_name=display, params=parse_params(rest))
        # addr-spec form: parameters after the URI belong to the header.
        uri_text, _, ptext = text.partition(";")
        return cls(uri=SipUri.parse(uri_text), params=parse_params(ptext))

    def serialize(self) -> str:
        name = f'"{self.display_name}" ' if self.display_name is not None else ""
        return f"{name}<{self.uri.serialize()}>{format_params(self.params)}"

    def __str__(self) -> str:
        return self.serialize()


@dataclass
class Via:
    """One Via hop: ``SIP/2.0/UDP host:port;branch=z9hG4bK...;rport``."""

    host: str
    port: int | None = None
    transport: str = "UDP"
    params: Params = field(default_factory=dict)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def sent_by(self) -> tuple[str, int]:
        return self.host, self.port or 5060

    @classmethod
    def parse(cls, text: str) -> Via:
        proto, _, rest = text.strip().partition(" ")
        parts = [p.strip() for p in proto.split("/")]
        if len(parts) != 3 or parts[0].upper() != "SIP" or not parts[2]:
            # "SIP / 2.0 / UDP" with inner spaces is legal but rare.
            compact = re.sub(r"\s*/\s*", "/", text.strip())
            proto, _, rest = compact.partition(" ")
            parts = proto.split("/")
            if len(parts) != 3 or parts[0].upper() != "SIP" or not parts[2]:
                raise SipParseError("bad Via protocol")
        hostport, _, ptext = rest.strip().partition(";")
        host, port = split_hostport(hostport)
        return cls(host=host, port=port, transport=parts[2].upper(), params=parse_params(ptext))

    def serialize(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"SIP/2.0/{self.transport} {self.host}{port}{format_params(self.params)}"

    def response_address(self, source: tuple[str, int]) -> tuple[str, int]:
        """Where a response goes (RFC 3261 §18.2.2 + RFC 3581 symmetric response)."""
        host = self.params.get("received") or self.host
        if "rport" in self.params:
            rport = self.params["rport"]
            if rport and is_digits(rport):
                return host, int(rport)
            return source
        return host, self.port or 5060

    def stamp_received(self, source: tuple[str, int]) -> None:
        """Add ``received``/``rport`` values as a server transport must (RFC 3581)."""
        if self.host != source[0]:
            self.params["received"] = source[0]
        if "rport" in self.params:
            self.params["received"] = source[0]
            self.params["rport"] = str(source[1])


@dataclass
class CSeq:
    seq: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        parts = text.split()
        if len(parts) != 2 or not is_digits(parts[0]) or not _TOKEN.match(parts[1]):
            raise SipParseError("bad CSeq")
        seq = int(parts[0])
        if seq >= 2**31:
            raise SipParseError("CSeq out of range")
        return cls(seq, parts[1].upper())

    def serialize(self) -> str:
        return f"{self.seq} {self.method}"


def is_token(text: str) -> bool:
    return bool(_TOKEN.match(text))
