"""A SIP trace: the messages of one call as they crossed the wire, with credentials
masked (the ``response`` of Authorization/Proxy-Authorization digests, a Basic
credential whole), rendered as text or as a pcap with synthesized UDP/IP headers."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..pcap import UdpPacket, write_pcap
from ..sdes import mask_keys

Addr = tuple[str, int]
MASK = b"<masked>"
_CALL_ID = re.compile(rb"^(?:call-id|i)[ \t]*:[ \t]*(\S[^\r\n]*?)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)
_AUTH_LINE = re.compile(rb"^((?:proxy-)?authorization[ \t]*:)([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)",
                        re.IGNORECASE | re.MULTILINE)
_RESPONSE = re.compile(rb'(\bresponse[ \t]*=[ \t]*)("[^"]*"|[^\s,]+)', re.IGNORECASE)
_BASIC = re.compile(rb"^([ \t]*basic[ \t]+)\S+", re.IGNORECASE)


def head_of(data: bytes) -> bytes:
    end = data.find(b"\r\n\r\n")
    return data if end < 0 else data[: end + 2]


def call_id_of(data: bytes) -> str | None:
    """The Call-ID of a SIP message (None when it has none), without parsing it all."""
    match = _CALL_ID.search(head_of(data))
    if match is None:
        return None
    return match.group(1).decode("latin-1")[:256]


def _mask_value(match: re.Match[bytes]) -> bytes:
    value = _RESPONSE.sub(lambda m: m.group(1) + b'"' + MASK + b'"', match.group(2))
    value = _BASIC.sub(lambda m: m.group(1) + MASK, value)
    return match.group(1) + value


def mask_credentials(data: bytes) -> bytes:
    """``data`` with digest responses and Basic credentials replaced by ``<masked>``, and
    the SDES master keys of an SRTP offer or answer (``a=crypto:... inline:KEY``) by ``***``
    (the message's Content-Length then no longer matches its masked body)."""
    if b"inline:" in data:
        data = mask_keys(data.decode("latin-1")).encode("latin-1")
    if b"uthorization" not in data and b"UTHORIZATION" not in data:
        return data
    head = head_of(data)
    return _AUTH_LINE.sub(_mask_value, head) + data[len(head):]


@dataclass(frozen=True)
class TraceEntry:
    at: float  # Unix time
    direction: str  # "in" (to voxd) or "out"
    local: Addr
    remote: Addr
    transport: str  # udp, tcp, tls
    data: bytes

    def as_json(self) -> dict[str, Any]:
        return {"t": self.at, "dir": self.direction, "local": list(self.local), "remote": list(self.remote),
                "transport": self.transport, "data": self.data.decode("latin-1")}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> TraceEntry:
        local, remote = obj["local"], obj["remote"]
        return cls(float(obj["t"]), str(obj["dir"]), (str(local[0]), int(local[1])),
                   (str(remote[0]), int(remote[1])), str(obj["transport"]), str(obj["data"]).encode("latin-1"))

    @property
    def src(self) -> Addr:
        return self.remote if self.direction == "in" else self.local

    @property
    def dst(self) -> Addr:
        return self.local if self.direction == "in" else self.remote


def _hostport(addr: Addr) -> str:
    return f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"


def render_text(entries: Iterable[TraceEntry]) -> str:
    """One block per message: a line with the UTC time, direction, addresses and
    transport, then the message as sent (CRLFs as newlines)."""
    blocks = []
    for e in entries:
        when = datetime.fromtimestamp(e.at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        arrow = "<-" if e.direction == "in" else "->"
        line = f"{when} {e.direction:3s} {_hostport(e.local)} {arrow} {_hostport(e.remote)} {e.transport.upper()}"
        text = e.data.decode("utf-8", "replace").replace("\r\n", "\n")
        blocks.append(f"{line}\n{text.rstrip()}\n")
    return "\n".join(blocks)


def render_pcap(entries: Iterable[TraceEntry]) -> bytes:
    """A libpcap file, one UDP datagram per message (TCP/TLS-carried ones too: the
    framing is gone, the SIP is what support reads)."""
    return write_pcap(UdpPacket(e.at, e.src, e.dst, e.data) for e in entries)
