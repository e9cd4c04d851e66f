"""SDP offer/answer for G.711 audio with telephone-event (RFC 3264, RFC 4733)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .sdp import Codec, Media, SessionDescription

if TYPE_CHECKING:
    from .sdes import SrtpKeys

SUPPORTED = ("PCMU", "PCMA")


class SdpNegotiationError(ValueError):
    """Nothing in the offer is acceptable; answer ``488 Not Acceptable Here``."""

    status = 488


@dataclass
class Negotiated:
    """The outcome of offer/answer, seen from our side."""

    sdp: SessionDescription
    codec: Codec
    telephone_event: Codec | None
    remote_address: tuple[str, int] | None
    direction: str  # our direction: sendrecv, sendonly, recvonly or inactive
    # Every telephone-event payload type the offer listed at the codec's rate: some
    # peers (sipp with a pcap) send on one we did not put in the answer.
    dtmf_payload_types: frozenset[int] = frozenset()
    # RTCP shares the RTP port (RFC 5761): the offer had a=rtcp-mux and we echoed it
    rtcp_mux: bool = False
    # The peer's a=rtcp (RFC 3605), if any; otherwise its RTCP is on the RTP port + 1
    remote_rtcp: tuple[str, int] | None = None
    # SDES keys when the media is SRTP (voxd.proto.secure_sdp), else None: plain RTP
    srtp: SrtpKeys | None = None

    def rtcp_address(self, rtp: tuple[str, int] | None) -> tuple[str, int] | None:
        """Where our RTCP goes, given the peer's current RTP address (it may have been
        latched since the offer): the RTP address itself under rtcp-mux, the a=rtcp
        port (and address), else the RTP port + 1 (RFC 3550 §11)."""
        if rtp is None:
            return None
        if self.rtcp_mux:
            return rtp
        if self.remote_rtcp is not None:
            return self.remote_rtcp
        return rtp[0], rtp[1] + 1

    @property
    def on_hold(self) -> bool:
        return self.direction in ("recvonly", "inactive")

    @property
    def ptime(self) -> int:
        for key, value in self.sdp.media[0].attributes if self.sdp.media else []:
            if key == "ptime" and value and value.isdigit():
                return int(value)
        return 20


_REVERSE = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly",
            "inactive": "inactive"}


def _ip_kind(ip: str) -> str:
    return "IP6" if ":" in ip else "IP4"


def _pick_codec(media: Media, prefs: Sequence[str]) -> tuple[Codec, Codec | None]:
    codecs = media.codecs()
    chosen: Codec | None = None
    for name in prefs:
        for codec in codecs:
            if codec.name.upper() == name.upper() and codec.clock_rate == 8000:
                chosen = codec
                break
        if chosen is not None:
            break
    if chosen is None:
        raise SdpNegotiationError("no common audio codec")
    events = [c for c in codecs if c.name.lower() == "telephone-event"]
    dtmf = next((c for c in events if c.clock_rate == chosen.clock_rate), None)
    return chosen, dtmf


def answer(
    offer: SessionDescription,
    local_ip: str,
    local_port: int,
    prefs: Sequence[str] = SUPPORTED,
    *,
    session_id: int = 0,
    session_version: int = 0,
    hold: bool = False,
    protos: Sequence[str] = ("RTP/AVP", "RTP/AVPF"),
) -> Negotiated:
    """Answer the first usable audio stream of ``offer`` with one codec (+ DTMF).

    Keeps the offerer's payload type numbers, prefers codecs in ``prefs`` order,
    picks the telephone-event entry at the chosen codec's clock rate, mirrors
    hold (``sendonly``/``inactive``/``c=0.0.0.0``) and rejects other streams
    with port 0. Raises :class:`SdpNegotiationError` (488) if nothing matches.
    ``protos``: the media profiles taken (SRTP ones only through voxd.proto.secure_sdp,
    which adds the keys); the answer echoes the offer's.
    """
    prefs = [p for p in prefs if p.upper() in SUPPORTED] or list(SUPPORTED)
    chosen: tuple[int, Codec, Codec | None] | None = None
    for index, media in enumerate(offer.media):
        if media.kind != "audio" or media.port == 0 or media.proto.upper() not in protos:
            continue
        try:
            codec, dtmf = _pick_codec(media, prefs)
        except SdpNegotiationError:
            continue
        chosen = (index, codec, dtmf)
        break
    if chosen is None:
        raise SdpNegotiationError("no acceptable audio stream in offer")
    index, codec, dtmf = chosen
    media = offer.media[index]
    remote_ip = offer.connection_address(media)
    offered_dir = media.direction or "sendrecv"
    if remote_ip in ("0.0.0.0", "::"):
        offered_dir = "sendonly" if offered_dir == "sendrecv" else offered_dir
    direction = _REVERSE.get(offered_dir, "sendrecv")
    if hold:
        direction = {"sendrecv": "sendonly", "recvonly": "inactive"}.get(direction, direction)

    kind = _ip_kind(local_ip)
    answer_sdp = SessionDescription(
        origin=f"voxd {session_id} {session_version} IN {kind} {local_ip}",
        session_name="voxd",
        connection=f"IN {kind} {local_ip}",
    )
    for i, m in enumerate(offer.media):
        if i != index:
            answer_sdp.media.append(Media(m.kind, 0, m.proto, m.formats[:1] or ["0"]))
            continue
        formats = [str(codec.payload_type)]
        attrs: list[tuple[str, str | None]] = [("rtpmap", codec.rtpmap())]
        if dtmf is not None:
            formats.append(str(dtmf.payload_type))
            attrs.append(("rtpmap", dtmf.rtpmap()))
            attrs.append(("fmtp", f"{dtmf.payload_type} {dtmf.fmtp or '0-16'}"))
        attrs += [("ptime", "20"), (direction, None)]
        if m.attribute("rtcp-mux") is not None:
            attrs.append(("rtcp-mux", None))
        answer_sdp.media.append(Media("audio", local_port, m.proto, formats, attributes=attrs))

    remote = None
    if remote_ip and remote_ip not in ("0.0.0.0", "::"):
        remote = (remote_ip, media.port)
    dtmf_types = frozenset(c.payload_type for c in media.codecs()
                           if c.name.lower() == "telephone-event"
                           and c.clock_rate == codec.clock_rate)
    mux = media.attribute("rtcp-mux") is not None
    return Negotiated(answer_sdp, codec, dtmf, remote, direction, dtmf_types, rtcp_mux=mux,
                      remote_rtcp=_remote_rtcp(media, remote_ip))


def _remote_rtcp(media: Media, media_ip: str | None) -> tuple[str, int] | None:
    rtcp = media.rtcp_address()
    if rtcp is None:
        return None
    host = rtcp[0] or media_ip
    return (host, rtcp[1]) if host and host not in ("0.0.0.0", "::") else None


def offer(
    local_ip: str,
    local_port: int,
    codecs: Sequence[str] = SUPPORTED,
    *,
    dtmf_payload_type: int = 101,
    session_id: int = 0,
    session_version: int = 0,
    direction: str = "sendrecv",
    rtcp_mux: bool = True,
) -> SessionDescription:
    """An offer for outbound calls: G.711 codecs in order plus telephone-event/8000, and
    rtcp-mux (RFC 5761) which the answer may take; without it RTCP uses the next port,
    which the port pool holds either way."""
    static = {"PCMU": 0, "PCMA": 8}
    kind = _ip_kind(local_ip)
    formats: list[str] = []
    attrs: list[tuple[str, str | None]] = []
    for name in codecs:
        pt = static[name.upper()]
        formats.append(str(pt))
        attrs.append(("rtpmap", f"{pt} {name.upper()}/8000"))
    formats.append(str(dtmf_payload_type))
    attrs.append(("rtpmap", f"{dtmf_payload_type} telephone-event/8000"))
    attrs.append(("fmtp", f"{dtmf_payload_type} 0-16"))
    attrs += [("ptime", "20"), (direction, None)]
    if rtcp_mux:
        attrs.append(("rtcp-mux", None))
    return SessionDescription(
        origin=f"voxd {session_id} {session_version} IN {kind} {local_ip}",
        session_name="voxd",
        connection=f"IN {kind} {local_ip}",
        media=[Media("audio", local_port, "RTP/AVP", formats, attributes=attrs)],
    )


def accept_answer(our_offer: SessionDescription, answer_sdp: SessionDescription) -> Negotiated:
    """Interpret the peer's answer to our offer (UAC side)."""
    media = answer_sdp.audio()
    if media is None or media.port == 0:
        raise SdpNegotiationError("answer rejected the audio stream")
    codecs = media.codecs()
    ours = our_offer.audio()
    our_names = {c.name.upper() for c in ours.codecs()} if ours else set(SUPPORTED)
    codec = next((c for c in codecs if c.name.upper() in our_names
                  and c.name.lower() != "telephone-event"), None)
    if codec is None:
        raise SdpNegotiationError("answer has no codec we offered")
    dtmf = next((c for c in codecs if c.name.lower() == "telephone-event"
                 and c.clock_rate == codec.clock_rate), None)
    ip = answer_sdp.connection_address(media)
    direction = _REVERSE.get(media.direction or "sendrecv", "sendrecv")
    remote = (ip, media.port) if ip and ip not in ("0.0.0.0", "::") else None
    types = frozenset([dtmf.payload_type]) if dtmf is not None else frozenset()
    # mux only if we proposed it and the answer took it (RFC 5761 §5.1.1)
    mux = ours is not None and ours.attribute("rtcp-mux") is not None and media.attribute("rtcp-mux") is not None
    return Negotiated(answer_sdp, codec, dtmf, remote, direction, types, rtcp_mux=mux,
                      remote_rtcp=_remote_rtcp(media, ip))
