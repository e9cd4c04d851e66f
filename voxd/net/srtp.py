"""SRTP and SRTCP for one call (RFC 3711), keyed by SDES (voxd/proto/sdes.py), through
pylibsrtp (libsrtp2): no home-made crypto. One context encrypts what voxd sends with its
own key and decrypts what the peer sends with the peer's. The RTP stream (voxd/net/rtp.py)
protects every packet it sends and unprotects every one it takes; a re-INVITE that
changes a key re-keys that direction (`rekey`)."""

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
        self.suite = suite
        self.local_key, self.remote_key = local_key, remote_key
        self._tx = _session(suite, local_key, Policy.SSRC_ANY_OUTBOUND)
        self._rx = _session(suite, remote_key, Policy.SSRC_ANY_INBOUND)
        self.dropped = 0

    @classmethod
    def from_keys(cls, keys: SrtpKeys) -> SrtpContext:
        return cls(keys.suite, keys.local.key_salt, keys.remote.key_salt)

    def rekey(self, keys: SrtpKeys) -> bool:
        """New keys from a re-INVITE: each direction whose key (or the suite) changed
        starts over; True if anything changed."""
        changed = False
        if keys.suite != self.suite or keys.local.key_salt != self.local_key:
            self._tx = _session(keys.suite, keys.local.key_salt, Policy.SSRC_ANY_OUTBOUND)
            self.local_key, changed = keys.local.key_salt, True
        if keys.suite != self.suite or keys.remote.key_salt != self.remote_key:
            self._rx = _session(keys.suite, keys.remote.key_salt, Policy.SSRC_ANY_INBOUND)
            self.remote_key, changed = keys.remote.key_salt, True
        self.suite = keys.suite
        return changed

    def protect(self, rtp: bytes) -> bytes:
        try:
            return bytes(self._tx.protect(rtp))
        except LibSrtpError as e:  # never the packet in the clear instead
            raise SrtpError(str(e)) from None

    def protect_rtcp(self, rtcp: bytes) -> bytes:
        try:
            return bytes(self._tx.protect_rtcp(rtcp))
        except LibSrtpError as e:
            raise SrtpError(str(e)) from None

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


def _session(suite: str, key: bytes, ssrc_type: int) -> Session:
    return Session(policy=Policy(key=key, ssrc_type=ssrc_type, srtp_profile=_PROFILES[suite]))
