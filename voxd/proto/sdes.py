"""SDES keying for SRTP (RFC 4568): ``a=crypto`` lines, and what to answer an offer with
under a trunk's policy (``off | optional | required``), and what to offer and accept
when voxd calls out. Sans-IO; the keys go to :mod:`voxd.net.srtp` (pylibsrtp); the SDP
side of a call is :mod:`voxd.proto.secure_sdp`.

    a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:<base64 key||salt>[|lifetime][|MKI:length] [session params]
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass
from typing import Literal

from .sdp import Media

# suite -> master key + salt length in bytes (RFC 4568 §6.2)
SUITES: dict[str, int] = {"AES_CM_128_HMAC_SHA1_80": 30, "AES_CM_128_HMAC_SHA1_32": 30}
SRTP_PROFILES = ("RTP/SAVP", "RTP/SAVPF")
# session parameters that weaken SRTP or change key derivation: refused, never honoured
REFUSED_PARAMS = ("UNENCRYPTED_SRTP", "UNENCRYPTED_SRTCP", "UNAUTHENTICATED_SRTP", "KDR=", "FEC_ORDER=",
                  "FEC_KEY=", "WSH=")
Policy = Literal["off", "optional", "required"]
_LIFETIME = re.compile(r"(?:2\^([0-9]{1,2})|([0-9]{1,20}))")


class SdesError(ValueError):
    pass


@dataclass(frozen=True)
class KeyParams:
    key_salt: bytes
    lifetime: int | None = None  # packets
    mki: tuple[int, int] | None = None  # (value, length in bytes)

    def serialize(self) -> str:
        out = "inline:" + base64.b64encode(self.key_salt).decode()
        if self.lifetime is not None:
            exp = self.lifetime.bit_length() - 1
            out += f"|2^{exp}" if self.lifetime == 1 << exp else f"|{self.lifetime}"
        if self.mki is not None:
            out += f"|{self.mki[0]}:{self.mki[1]}"
        return out


@dataclass(frozen=True)
class CryptoAttribute:
    tag: int
    suite: str
    keys: tuple[KeyParams, ...]
    session_params: tuple[str, ...] = ()

    @property
    def key_salt(self) -> bytes:
        return self.keys[0].key_salt

    @classmethod
    def parse(cls, value: str) -> CryptoAttribute:
        """The value of an ``a=crypto:`` attribute (without ``a=crypto:``)."""
        parts = value.split()
        if len(parts) < 3:
            raise SdesError("a=crypto needs a tag, a suite and key parameters")
        tag_text, suite, key_text, *params = parts
        if not tag_text.isdigit() or len(tag_text) > 9:
            raise SdesError("a=crypto tag must be 1 to 9 digits")
        if suite not in SUITES:
            raise SdesError(f"unsupported crypto suite {suite[:40]!r}")
        keys = tuple(_key_params(k, SUITES[suite]) for k in key_text.split(";"))
        if any(k.mki is not None for k in keys) != all(k.mki is not None for k in keys) or len(keys) > 16:
            raise SdesError("with several keys, every key needs an MKI (at most 16 keys)")
        return cls(int(tag_text), suite, keys, tuple(params))

    def serialize(self) -> str:
        keys = ";".join(k.serialize() for k in self.keys)
        return " ".join([str(self.tag), self.suite, keys, *self.session_params])

    @property
    def refused_params(self) -> list[str]:
        return [p for p in self.session_params if p.upper().startswith(REFUSED_PARAMS)]


def _key_params(text: str, size: int) -> KeyParams:
    method, sep, info = text.partition(":")
    if method != "inline" or not sep:
        raise SdesError("key method must be inline:")
    key_text, *rest = info.split("|")
    try:
        key_salt = base64.b64decode(key_text, validate=True)
    except (binascii.Error, ValueError):
        raise SdesError("key is not base64") from None
    if len(key_salt) != size:
        raise SdesError(f"key and salt must be {size} bytes, not {len(key_salt)}")
    lifetime: int | None = None
    mki: tuple[int, int] | None = None
    for item in rest[:2]:
        if ":" in item:
            value, _, length = item.partition(":")
            if not (value.isdigit() and length.isdigit() and 1 <= int(length) <= 128 and len(value) <= 40):
                raise SdesError("MKI must be value:length")
            mki = (int(value), int(length))
        elif (m := _LIFETIME.fullmatch(item)) is not None:
            lifetime = 1 << int(m[1]) if m[1] is not None else int(m[2])
            if not 0 < lifetime <= 1 << 48:
                raise SdesError("key lifetime out of range")
        else:
            raise SdesError("bad key lifetime")
    if len(rest) > 2:
        raise SdesError("too many key parameters")
    return KeyParams(key_salt, lifetime, mki)


def new_crypto(tag: int = 1, suite: str = "AES_CM_128_HMAC_SHA1_80") -> CryptoAttribute:
    """Our side's attribute with a fresh random master key and salt."""
    return CryptoAttribute(tag, suite, (KeyParams(secrets.token_bytes(SUITES[suite])),))


def offered(media: Media) -> list[CryptoAttribute]:
    """The usable ``a=crypto`` lines of a media section, in offer order (others skipped)."""
    out: list[CryptoAttribute] = []
    for value in media.attribute_values("crypto"):
        try:
            attr = CryptoAttribute.parse(value)
        except SdesError:
            continue
        if not attr.refused_params and len(attr.keys) == 1:
            out.append(attr)
    return out


@dataclass(frozen=True)
class SrtpKeys:
    """What one call's SRTP needs: their key (to decrypt) and ours (to encrypt, in our SDP)."""

    suite: str
    remote: CryptoAttribute
    local: CryptoAttribute


def answer_keys(media: Media, policy: Policy,
                preference: tuple[str, ...] = ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"),
                *, local: CryptoAttribute | None = None) -> SrtpKeys | None:
    """SRTP keys for answering ``media`` (None: answer plain RTP/AVP). SdesError when the
    policy and the offer cannot meet: required but no usable crypto, or off but the offer
    is SRTP only (answer 488). ``local``: the key this call already sends with."""
    srtp_profile = media.proto.upper() in SRTP_PROFILES
    cryptos = offered(media)
    if policy == "off":
        if srtp_profile:
            raise SdesError("the offer is SRTP only and this trunk's srtp policy is off")
        return None
    if not cryptos:
        if policy == "required" or srtp_profile:
            raise SdesError("no usable a=crypto in the offer (srtp required)" if policy == "required"
                            else "an RTP/SAVP offer without a usable a=crypto line")
        return None
    # RTP/AVP with a=crypto is best-effort SRTP (baresip's mediaenc=srtp, Asterisk): the
    # peer can decrypt, so under optional or required it is answered encrypted too
    for suite in preference:
        for attr in cryptos:
            if attr.suite == suite:
                return SrtpKeys(suite, attr, _ours(attr.tag, suite, local))
    raise SdesError("no crypto suite in common")


def _ours(tag: int, suite: str, local: CryptoAttribute | None) -> CryptoAttribute:
    """Our attribute for the peer's ``tag``: the key we already use (a re-INVITE keeps
    it, RFC 4568 §7.1.4 allows that) when the suite is the same, else a fresh one."""
    if local is not None and local.suite == suite:
        return CryptoAttribute(tag, suite, local.keys)
    return new_crypto(tag, suite)


def offer_cryptos(suites: tuple[str, ...] = ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")
                  ) -> list[CryptoAttribute]:
    """Our ``a=crypto`` lines for an offer: one per suite, each its own fresh key."""
    return [new_crypto(i + 1, suite) for i, suite in enumerate(suites)]


def accept_keys(ours: list[CryptoAttribute], media: Media, policy: Policy) -> SrtpKeys | None:
    """SRTP keys from the answer to an offer that carried ``ours`` (None: plain RTP).
    SdesError when the answer does not fit: it picked a tag or suite we never offered,
    or SRTP is required (or the profile says SRTP) and it has no usable ``a=crypto``."""
    srtp_profile = media.proto.upper() in SRTP_PROFILES
    if not ours:  # we offered plain RTP: a=crypto in the answer means nothing
        if srtp_profile:
            raise SdesError("an SRTP answer to a plain RTP offer")
        return None
    cryptos = offered(media)
    if not cryptos:
        if policy == "required" or srtp_profile or media.attribute("crypto") is not None:
            raise SdesError(f"the answer has no usable a=crypto line (srtp {policy})")
        return None
    theirs = cryptos[0]
    for attr in ours:
        if attr.tag == theirs.tag and attr.suite == theirs.suite:
            return SrtpKeys(attr.suite, theirs, attr)
    raise SdesError("the answer's a=crypto names a tag or suite we did not offer")


_INLINE = re.compile(r"(inline:)[A-Za-z0-9+/=]+")


def mask_keys(text: str) -> str:
    """SDP (or a whole SIP message) with every SDES master key replaced by ``***``:
    for logs and traces, which must never hold the keys."""
    return _INLINE.sub(r"\1***", text)
