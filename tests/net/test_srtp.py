"""SRTP/SRTCP through pylibsrtp with SDES keys: what one side protects the other
unprotects, cleartext never shows in the protected packet, tampering and replays fail."""

from __future__ import annotations

import pytest

from voxd.net.srtp import SrtpContext, SrtpError
from voxd.proto.rtcp import CNAME, SdesChunk, SourceDescription
from voxd.proto.rtp import RtpPacket
from voxd.proto.sdes import new_crypto


@pytest.mark.parametrize("suite", ["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"])
def test_round_trip_both_ways(suite: str) -> None:
    a, b = new_crypto(1, suite), new_crypto(1, suite)
    alice = SrtpContext(suite, a.key_salt, b.key_salt)
    bob = SrtpContext(suite, b.key_salt, a.key_salt)
    payload = bytes(range(160))
    rtp = RtpPacket(0, 1000, 160_000, 0x1234, payload=payload).serialize()
    protected = alice.protect(rtp)
    assert payload[20:60] not in protected and len(protected) == len(rtp) + (10 if suite.endswith("80") else 4)
    assert bob.unprotect(protected) == rtp
    with pytest.raises(SrtpError):
        bob.unprotect(protected)  # a replay
    tampered = bytearray(alice.protect(RtpPacket(0, 1001, 160_160, 0x1234, payload=payload).serialize()))
    tampered[20] ^= 1
    with pytest.raises(SrtpError):
        bob.unprotect(bytes(tampered))
    assert bob.dropped == 2
    rtcp = SourceDescription([SdesChunk(0x99, [(CNAME, b"bob@voxd")])]).serialize()
    back = bob.protect_rtcp(rtcp)
    assert b"bob@voxd" not in back and alice.unprotect_rtcp(back) == rtcp
