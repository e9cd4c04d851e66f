"""SDP session descriptions (RFC 4566): parse and serialize."""

from __future__ import annotations

from dataclasses import dataclass, field

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")

# Static payload types (RFC 3551 table 4) that an offer may use without rtpmap.
STATIC_PAYLOADS: dict[int, tuple[str, int]] = {
    0: ("PCMU", 8000), 3: ("GSM", 8000), 4: ("G723", 8000), 8: ("PCMA", 8000),
    9: ("G722", 8000), 18: ("G729", 8000),
}


class SdpParseError(ValueError):
    """Malformed SDP."""


@dataclass
class Codec:
    """One payload format of a media line (``a=rtpmap``/``a=fmtp``)."""

    payload_type: int
    name: str
    clock_rate: int
    channels: int = 1
    fmtp: str | None = None

    def rtpmap(self) -> str:
        chan = f"/{self.channels}" if self.channels != 1 else ""
        return f"{self.payload_type} {self.name}/{self.clock_rate}{chan}"


@dataclass
class Media:
    """An ``m=`` section with its ``c=`` and ``a=`` lines."""

    kind: str
    port: int
    proto: str
    formats: list[str]
    connection: str | None = None
    bandwidth: list[str] = field(default_factory=list)
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    port_count: int | None = None

    def attribute(self, name: str) -> str | None:
        for key, value in self.attributes:
            if key == name:
                return value if value is not None else ""
        return None

    def attribute_values(self, name: str) -> list[str]:
        return [v or "" for k, v in self.attributes if k == name]

    def rtcp_address(self) -> tuple[str | None, int] | None:
        """``a=rtcp:port [IN IP4 addr]`` (RFC 3605): the peer's RTCP port, and address
        if it differs from the media's; None without the attribute."""
        value = self.attribute("rtcp")
        if value is None:
            return None
        parts = value.split()
        if not parts or not parts[0].isdigit() or not 0 < int(parts[0]) <= 65535:
            return None
        return (parts[3] if len(parts) >= 4 else None), int(parts[0])

    @property
    def direction(self) -> str | None:
        for key, _ in self.attributes:
            if key in DIRECTIONS:
                return key
        return None

    @property
    def connection_address(self) -> str | None:
        if self.connection is None:
            return None
        parts = self.connection.split()
        return parts[2].split("/")[0] if len(parts) >= 3 else None

    def codecs(self) -> list[Codec]:
        """Payload formats in offer order; static types are filled in if no rtpmap."""
        rtpmaps: dict[int, tuple[str, int, int]] = {}
        fmtps: dict[int, str] = {}
        for value in self.attribute_values("rtpmap"):
            pt_text, _, enc = value.partition(" ")
            bits = enc.strip().split("/")
            if not pt_text.isdigit() or len(bits) < 2 or not bits[1].isdigit():
                continue
            channels = int(bits[2]) if len(bits) > 2 and bits[2].isdigit() else 1
            rtpmaps[int(pt_text)] = (bits[0], int(bits[1]), channels)
        for value in self.attribute_values("fmtp"):
            pt_text, _, params = value.partition(" ")
            if pt_text.isdigit():
                fmtps[int(pt_text)] = params.strip()
        out: list[Codec] = []
        for fmt in self.formats:
            if not fmt.isdigit() or int(fmt) > 127:
                continue
            pt = int(fmt)
            if pt in rtpmaps:
                name, rate, channels = rtpmaps[pt]
            elif pt in STATIC_PAYLOADS:
                name, rate = STATIC_PAYLOADS[pt]
                channels = 1
            else:
                continue
            out.append(Codec(pt, name, rate, channels, fmtps.get(pt)))
        return out


@dataclass
class SessionDescription:
    origin: str = "- 0 0 IN IP4 0.0.0.0"
    session_name: str = "-"
    connection: str | None = None
    timing: str = "0 0"
    version: int = 0
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    media: list[Media] = field(default_factory=list)
    extra: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def parse(cls, data: bytes | str) -> SessionDescription:
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        sdp = cls()
        current: Media | None = None
        seen_version = False
        for raw in text.replace("\r\n", "\n").split("\n"):
            line = raw.rstrip("\r")
            if not line.strip():
                continue
            if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
                raise SdpParseError("malformed SDP line")
            key, value = line[0], line[2:]
            if key == "v":
                if value.strip() != "0":
                    raise SdpParseError("unsupported SDP version")
                seen_version = True
            elif not seen_version:
                raise SdpParseError("SDP must start with v=")
            elif key == "m":
                current = _parse_media(value)
                sdp.media.append(current)
            elif key == "a":
                name, sep, aval = value.partition(":")
                target = current.attributes if current else sdp.attributes
                target.append((name, aval if sep else None))
            elif key == "c":
                if len(value.split()) < 3:
                    raise SdpParseError("malformed c= line")
                if current is None:
                    sdp.connection = value
                else:
                    current.connection = value
            elif key == "b" and current is not None:
                current.bandwidth.append(value)
            elif key == "o" and current is None:
                sdp.origin = value
            elif key == "s" and current is None:
                sdp.session_name = value
            elif key == "t" and current is None:
                sdp.timing = value
            elif current is None:
                sdp.extra.append((key, value))
        if not seen_version:
            raise SdpParseError("empty SDP")
        return sdp

    def serialize(self) -> bytes:
        lines = [f"v={self.version}", f"o={self.origin}", f"s={self.session_name}"]
        lines += [f"{k}={v}" for k, v in self.extra if k in "iuep"]
        if self.connection:
            lines.append(f"c={self.connection}")
        lines += [f"{k}={v}" for k, v in self.extra if k == "b"]
        lines.append(f"t={self.timing}")
        lines += [f"{k}={v}" for k, v in self.extra if k not in "iuepb"]
        lines += [_attr(k, v) for k, v in self.attributes]
        for m in self.media:
            count = f"/{m.port_count}" if m.port_count is not None else ""
            lines.append(f"m={m.kind} {m.port}{count} {m.proto} {' '.join(m.formats)}")
            if m.connection:
                lines.append(f"c={m.connection}")
            lines += [f"b={b}" for b in m.bandwidth]
            lines += [_attr(k, v) for k, v in m.attributes]
        return ("\r\n".join(lines) + "\r\n").encode()

    def audio(self) -> Media | None:
        for m in self.media:
            if m.kind == "audio":
                return m
        return None

    def connection_address(self, media: Media) -> str | None:
        """The media's own c= address, else the session-level one."""
        addr = media.connection_address
        if addr is not None:
            return addr
        if self.connection is None:
            return None
        parts = self.connection.split()
        return parts[2].split("/")[0] if len(parts) >= 3 else None


def _attr(key: str, value: str | None) -> str:
    return f"a={key}" if value is None else f"a={key}:{value}"


def _parse_media(value: str) -> Media:
    parts = value.split()
    if len(parts) < 3:
        raise SdpParseError("malformed m= line")
    port_text, _, count_text = parts[1].partition("/")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise SdpParseError("bad media port")
    if count_text and not count_text.isdigit():
        raise SdpParseError("bad media port count")
    return Media(kind=parts[0], port=int(port_text), proto=parts[2], formats=parts[3:],
                 port_count=int(count_text) if count_text else None)
