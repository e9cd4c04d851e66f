"""SRTP in SDP offer/answer (RFC 3711 media keyed by SDES, RFC 4568), under a policy:

- ``off``: plain RTP/AVP only; an SRTP-only offer is refused (488).
- ``optional``: SRTP when the peer offers or accepts ``a=crypto``, else plain RTP.
- ``required``: SRTP or nothing: an offer (or an answer) without a usable ``a=crypto``
  is refused, never answered in the clear. Our offers use ``RTP/SAVP``.

Wraps :mod:`voxd.proto.negotiate` (codecs, DTMF, hold, RTCP) and puts the keys in
``Negotiated.srtp``. Sans-IO.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import negotiate
from .negotiate import Negotiated, SdpNegotiationError
from .sdes import (
    SRTP_PROFILES,
    CryptoAttribute,
    Policy,
    SdesError,
    accept_keys,
    answer_keys,
    offer_cryptos,
)
from .sdp import SessionDescription

PLAIN = ("RTP/AVP", "RTP/AVPF")
POLICIES: tuple[Policy, ...] = ("off", "optional", "required")


class SrtpPolicyError(SdpNegotiationError):
    """The offer (or answer) and the srtp policy cannot meet: 488 Not Acceptable Here."""


def answer(offer: SessionDescription, local_ip: str, local_port: int, prefs: Sequence[str] = negotiate.SUPPORTED,
           *, policy: Policy, local: CryptoAttribute | None = None, session_id: int = 0,
           session_version: int = 0, hold: bool = False) -> Negotiated:
    """negotiate.answer plus SRTP: our ``a=crypto`` in the answer and the keys in ``.srtp``.
    ``local``: the key the call already sends with (a re-INVITE's answer keeps it)."""
    protos = PLAIN if policy == "off" else PLAIN + SRTP_PROFILES
    try:
        neg = negotiate.answer(offer, local_ip, local_port, prefs, session_id=session_id,
                               session_version=session_version, hold=hold, protos=protos)
    except SdpNegotiationError as e:
        if policy == "off" and any(m.proto.upper() in SRTP_PROFILES for m in offer.media):
            raise SrtpPolicyError("the offer is SRTP only and the srtp policy is off") from None
        raise e
    index = next(i for i, m in enumerate(neg.sdp.media) if m.port != 0)
    try:
        keys = answer_keys(offer.media[index], policy, local=local)
    except SdesError as e:
        raise SrtpPolicyError(str(e)) from None
    if keys is not None:
        neg.sdp.media[index].attributes.append(("crypto", keys.local.serialize()))
        neg.srtp = keys
    return neg


def offer(local_ip: str, local_port: int, codecs: Sequence[str] = negotiate.SUPPORTED, *, policy: Policy,
          session_id: int = 0, session_version: int = 0) -> tuple[SessionDescription, list[CryptoAttribute]]:
    """negotiate.offer plus our ``a=crypto`` lines (both suites): ``RTP/SAVP`` when SRTP
    is required, ``RTP/AVP`` with ``a=crypto`` (best-effort SRTP) when optional."""
    sdp = negotiate.offer(local_ip, local_port, codecs, session_id=session_id, session_version=session_version)
    if policy == "off":
        return sdp, []
    cryptos = offer_cryptos()
    media = sdp.media[0]
    if policy == "required":
        media.proto = "RTP/SAVP"
    media.attributes += [("crypto", c.serialize()) for c in cryptos]
    return sdp, cryptos


def accept_answer(our_offer: SessionDescription, ours: list[CryptoAttribute], answer_sdp: SessionDescription,
                  *, policy: Policy) -> Negotiated:
    """negotiate.accept_answer plus the keys the answer chose (SrtpPolicyError when it
    does not fit the offer or the policy)."""
    neg = negotiate.accept_answer(our_offer, answer_sdp)
    media = answer_sdp.audio()
    assert media is not None  # accept_answer refused an answer without audio
    try:
        neg.srtp = accept_keys(ours, media, policy)
    except SdesError as e:
        raise SrtpPolicyError(str(e)) from None
    return neg
