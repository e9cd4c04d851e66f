"""SRTP and SRTCP for one call (RFC 3711), keyed by SDES (voxd/proto/sdes.py), through
pylibsrtp (libsrtp2): no home-made crypto. One context encrypts what voxd sends with its
own key and decrypts what the peer sends with the peer's. The RTP stream (voxd/net/rtp.py)
protects every packet it sends and unprotects every one it takes; a re-INVITE that
changes a key re-keys that direction (`rekey`).

The per-packet path is lean (it runs 100 times a second per call): pylibsrtp's Session
makes and frees each libsrtp session (policy, keys, replay window), and each packet goes
through the same libsrtp function pylibsrtp would call (`srtp_protect`, `srtp_unprotect`,
their RTCP twins) on that session, with the length cell and the packet buffer made once
per direction instead of once per packet. libsrtp still does every check: a packet that
does not authenticate or replays (RTP and RTCP windows), or a send that libsrtp refuses,
raises SrtpError and nothing comes back, never the packet as it was. Should a pylibsrtp
release change what this path relies on, each direction falls back to Session's own
methods (`lean` says which is in use)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pylibsrtp
from pylibsrtp import Error as LibSrtpError
from pylibsrtp import Policy, Session

from voxd.proto.sdes import SrtpKeys

try:
    from pylibsrtp._binding import ffi as _ffi
    from pylibsrtp._binding import lib as _lib
except ImportError:  # pragma: no cover - a pylibsrtp without its cffi module as we know it
    _ffi = _lib = None

_PROFILES = {"AES_CM_128_HMAC_SHA1_80": Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
             "AES_CM_128_HMAC_SHA1_32": Policy.SRTP_PROFILE_AES128_CM_SHA1_32}

BUFFER = 1500  # bytes: one packet, with room for what protecting it adds
RTP_TRAILER = 16 + 128  # the most libsrtp appends to RTP (tag + MKI), as pylibsrtp reserves
RTCP_TRAILER = 4 + 16 + 128  # and to RTCP (E flag and index + tag + MKI)
_ERRORS: list[str] = list(getattr(pylibsrtp, "ERRORS", []))


class SrtpError(ValueError):
    """A packet that does not authenticate (or replays): dropped and counted by the caller."""


def _message(rc: int) -> str:
    return _ERRORS[rc] if 0 <= rc < len(_ERRORS) else f"libsrtp error {rc}"


class _Direction:
    """One libsrtp session (one key, one direction) and the buffers its packets use."""

    __slots__ = ("_buf", "_ctx", "_len", "_view", "lean", "session")

    def __init__(self, suite: str, key: bytes, ssrc_type: int) -> None:
        self.session = Session(policy=Policy(key=key, ssrc_type=ssrc_type, srtp_profile=_PROFILES[suite]))
        self.lean = False
        handle = getattr(self.session, "_srtp", None)
        if _ffi is not None and handle is not None and _ffi.typeof(handle) is _ffi.typeof("srtp_t *"):
            self._ctx: Any = handle[0]  # the session owns it (freed with the Session)
            self._buf: Any = _ffi.new("unsigned char[]", BUFFER)
            self._view: Any = _ffi.buffer(self._buf)
            self._len: Any = _ffi.new("int *")
            self.lean = True

    def run(self, fn: Callable[[Any, Any, Any], int], data: bytes, trailer: int) -> bytes:
        n = len(data)
        if n > BUFFER - trailer:
            raise SrtpError("packet is too long")
        self._view[0:n] = data
        length = self._len
        length[0] = n
        rc = fn(self._ctx, self._buf, length)
        if rc:
            raise SrtpError(_message(rc))
        return self._view[0:length[0]]  # type: ignore[no-any-return]


if _lib is not None:
    _protect, _unprotect = _lib.srtp_protect, _lib.srtp_unprotect
    _protect_rtcp, _unprotect_rtcp = _lib.srtp_protect_rtcp, _lib.srtp_unprotect_rtcp


class SrtpContext:
    def __init__(self, suite: str, local_key: bytes, remote_key: bytes) -> None:
        self.suite = suite
        self.local_key, self.remote_key = local_key, remote_key
        self._tx = _Direction(suite, local_key, Policy.SSRC_ANY_OUTBOUND)
        self._rx = _Direction(suite, remote_key, Policy.SSRC_ANY_INBOUND)
        self.dropped = 0

    @property
    def lean(self) -> bool:
        return self._tx.lean and self._rx.lean

    @classmethod
    def from_keys(cls, keys: SrtpKeys) -> SrtpContext:
        return cls(keys.suite, keys.local.key_salt, keys.remote.key_salt)

    def rekey(self, keys: SrtpKeys) -> bool:
        """New keys from a re-INVITE: each direction whose key (or the suite) changed
        starts over; True if anything changed."""
        changed = False
        if keys.suite != self.suite or keys.local.key_salt != self.local_key:
            self._tx = _Direction(keys.suite, keys.local.key_salt, Policy.SSRC_ANY_OUTBOUND)
            self.local_key, changed = keys.local.key_salt, True
        if keys.suite != self.suite or keys.remote.key_salt != self.remote_key:
            self._rx = _Direction(keys.suite, keys.remote.key_salt, Policy.SSRC_ANY_INBOUND)
            self.remote_key, changed = keys.remote.key_salt, True
        self.suite = keys.suite
        return changed

    def protect(self, rtp: bytes) -> bytes:
        tx = self._tx
        if tx.lean:
            return tx.run(_protect, rtp, RTP_TRAILER)
        try:
            return bytes(tx.session.protect(rtp))
        except LibSrtpError as e:  # never the packet in the clear instead
            raise SrtpError(str(e)) from None

    def protect_rtcp(self, rtcp: bytes) -> bytes:
        tx = self._tx
        if tx.lean:
            return tx.run(_protect_rtcp, rtcp, RTCP_TRAILER)
        try:
            return bytes(tx.session.protect_rtcp(rtcp))
        except LibSrtpError as e:
            raise SrtpError(str(e)) from None

    def unprotect(self, srtp: bytes) -> bytes:
        rx = self._rx
        try:
            if rx.lean:
                return rx.run(_unprotect, srtp, 0)
            return bytes(rx.session.unprotect(srtp))
        except SrtpError:
            self.dropped += 1
            raise
        except LibSrtpError as e:
            self.dropped += 1
            raise SrtpError(str(e)) from None

    def unprotect_rtcp(self, srtcp: bytes) -> bytes:
        rx = self._rx
        try:
            if rx.lean:
                return rx.run(_unprotect_rtcp, srtcp, 0)
            return bytes(rx.session.unprotect_rtcp(srtcp))
        except SrtpError:
            self.dropped += 1
            raise
        except LibSrtpError as e:
            self.dropped += 1
            raise SrtpError(str(e)) from None
