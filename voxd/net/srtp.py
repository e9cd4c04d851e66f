"""SRTP and SRTCP for one call (RFC 3711), keyed by SDES (voxd/proto/sdes.py), through
pylibsrtp (libsrtp2): no home-made crypto. One context encrypts what voxd sends with its
own key and decrypts what the peer sends with the peer's. Not wired into calls yet."""

from __future__ import annotations

from pylibsrtp import Error as LibSrtpError
from pylibsrtp import Policy, Session

from voxd.proto.sdes import SrtpKeys

_PROFILES = {"AES_CM_128_HMAC_SHA1_80": Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
             "AES_CM_128_HMAC_SHA1_32": Policy.SRTP_PROFILE_AES128_CM_SHA1_32}


class SrtpError(ValueError):
    """A packet that does not authenticate (or replays): dropped and counted by the caller."""


class SrtpContext:
    def __init__(self, suite: str, local_key: bytes, remote_key: bytes) -> None:
        profile = _PROFILES[suite]
        self._tx = Session(policy=Policy(key=local_key, ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile))
        self._rx = Session(policy=Policy(key=remote_key, ssrc_type=Policy.SSRC_ANY_INBOUND, srtp_profile=profile))
        self.dropped = 0

    @classmethod
    def from_keys(cls, keys: SrtpKeys) -> SrtpContext:
        return cls(keys.suite, keys.local.key_salt, keys.remote.key_salt)

    def protect(self, rtp: bytes) -> bytes:
        return bytes(self._tx.protect(rtp))

    def protect_rtcp(self, rtcp: bytes) -> bytes:
        return bytes(self._tx.protect_rtcp(rtcp))

    def unprotect(self, srtp: bytes) -> bytes:
        try:
            return bytes(self._rx.unprotect(srtp))
        except LibSrtpError as e:
            self.dropped += 1
            raise SrtpError(str(e)) from None

    def unprotect_rtcp(self, srtcp: bytes) -> bytes:
        try:
            return bytes(self._rx.unprotect_rtcp(srtcp))
        except LibSrtpError as e:
            self.dropped += 1
            raise SrtpError(str(e)) from None
