"""SDP offer/answer for audio with telephone-event (RFC 3264, RFC 4733).

Codecs: G.711 (PCMU, PCMA), G.722 (static payload type 9, clock rate 8000 although it
samples at 16 kHz: RFC 3551 §4.5.2) and Opus (RFC 7587: always ``opus/48000/2``, a
dynamic payload type, our ``a=fmtp`` saying we send and want mono wideband). The
preference order is ours (a trunk's ``codecs``); the offerer's payload numbers are kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .sdp import Codec, Media, SessionDescription

if TYPE_CHECKING:
    from .sdes import SrtpKeys

SUPPORTED = ("PCMU", "PCMA")  # the default preference: G.711 only
KNOWN = ("PCMU", "PCMA", "G722", "opus")  # what a preference may name (case-insensitive)
OPUS_PAYLOAD_TYPE = 111  # ours in an offer (any dynamic number would do)
OPUS_EVENT_PAYLOAD_TYPE = 110  # telephone-event/48000 next to Opus in an offer
# what we ask of the peer's Opus and say of ours (RFC 7587 §6.1): mono, wideband is enough
OPUS_FMTP = "maxplaybackrate=16000;sprop-maxcapturerate=16000;stereo=0;sprop-stereo=0;useinbandfec=1"
# name -> (SDP name, RTP clock rate, channels in rtpmap, static payload type or None)
_FORMATS: dict[str, tuple[str, int, int, int | None]] = {
    "PCMU": ("PCMU", 8000, 1, 0), "PCMA": ("PCMA", 8000, 1, 8),
    "G722": ("G722", 8000, 1, 9), "OPUS": ("opus", 48000, 2, None),
}


def canonical(name: str) -> str:
    """A preference's name as SDP writes it ("g722" -> "G722", "OPUS" -> "opus");
    ValueError naming the known ones when it is none of them."""
    fmt = _FORMATS.get(name.upper())
    if fmt is None:
        raise ValueError(f"unknown codec {name!r} (known: {', '.join(KNOWN)})")
    return fmt[0]


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
        rate = _FORMATS[name.upper()][1]
        for codec in codecs:
            if codec.name.upper() == name.upper() and codec.clock_rate == rate:
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
    prefs = [p for p in prefs if p.upper() in _FORMATS] or list(SUPPORTED)
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
        if codec.name.upper() == "OPUS":
            attrs.append(("fmtp", f"{codec.payload_type} {OPUS_FMTP}"))
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
    """An offer for outbound calls: the codecs in order (static payload types, Opus on
    111 with its fmtp) plus telephone-event/8000 (and /48000 when Opus is offered, as
    RFC 4733 wants the event clock to be the codec's), and rtcp-mux (RFC 5761) which the
    answer may take; without it RTCP uses the next port, which the port pool holds either way."""
    kind = _ip_kind(local_ip)
    formats: list[str] = []
    attrs: list[tuple[str, str | None]] = []
    rates: list[int] = []
    for name in dict.fromkeys(n.upper() for n in codecs):
        sdp_name, rate, channels, static = _FORMATS[name]
        pt = static if static is not None else OPUS_PAYLOAD_TYPE
        formats.append(str(pt))
        attrs.append(("rtpmap", Codec(pt, sdp_name, rate, channels).rtpmap()))
        if name == "OPUS":
            attrs.append(("fmtp", f"{pt} {OPUS_FMTP}"))
        if rate not in rates:
            rates.append(rate)
    for rate in sorted(rates):
        pt = dtmf_payload_type if rate == 8000 else OPUS_EVENT_PAYLOAD_TYPE
        formats.append(str(pt))
        attrs.append(("rtpmap", f"{pt} telephone-event/{rate}"))
        attrs.append(("fmtp", f"{pt} 0-16"))
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
    our_names = {(c.name.upper(), c.clock_rate) for c in ours.codecs()} if ours else {
        (n, 8000) for n in SUPPORTED}
    codec = next((c for c in codecs if (c.name.upper(), c.clock_rate) in our_names
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
