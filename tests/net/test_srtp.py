"""SRTP/SRTCP through pylibsrtp with SDES keys: what one side protects the other
unprotects, cleartext never shows in the protected packet, tampering and replays fail; the
lean per-packet path speaks exactly what pylibsrtp's own API does."""

from __future__ import annotations

import pytest
from pylibsrtp import Policy, Session

from voxd.net import srtp
from voxd.net.srtp import SrtpContext, SrtpError
from voxd.proto.rtcp import CNAME, SdesChunk, SourceDescription
from voxd.proto.rtp import RtpPacket
from voxd.proto.sdes import SrtpKeys, new_crypto


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


def _pair(suite: str = "AES_CM_128_HMAC_SHA1_80") -> tuple[SrtpContext, SrtpContext]:
    a, b = new_crypto(1, suite), new_crypto(1, suite)
    return SrtpContext(suite, a.key_salt, b.key_salt), SrtpContext(suite, b.key_salt, a.key_salt)


def _stock(suite: str, key: bytes, ssrc_type: int) -> Session:
    profile = {"AES_CM_128_HMAC_SHA1_80": Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
               "AES_CM_128_HMAC_SHA1_32": Policy.SRTP_PROFILE_AES128_CM_SHA1_32}[suite]
    return Session(policy=Policy(key=key, ssrc_type=ssrc_type, srtp_profile=profile))


@pytest.mark.parametrize("suite", ["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"])
def test_the_lean_path_speaks_what_stock_pylibsrtp_speaks(suite: str) -> None:
    """The per-packet path (voxd's own buffers on pylibsrtp's sessions) against pylibsrtp's
    Session API used as documented: byte for byte the same SRTP, and each side reads the other."""
    a, b = new_crypto(1, suite), new_crypto(1, suite)
    ours = SrtpContext(suite, a.key_salt, b.key_salt)
    assert ours.lean
    stock_tx = _stock(suite, a.key_salt, Policy.SSRC_ANY_OUTBOUND)
    stock_rx = _stock(suite, a.key_salt, Policy.SSRC_ANY_INBOUND)  # reads what we send
    peer_tx = _stock(suite, b.key_salt, Policy.SSRC_ANY_OUTBOUND)  # sends what we read
    for seq in range(300):  # past the 128-packet replay window
        rtp = RtpPacket(0, 65500 + seq & 0xFFFF, 160 * seq, 0x4242, payload=bytes([seq & 0xFF]) * 160).serialize()
        out = ours.protect(rtp)
        assert out == stock_tx.protect(rtp) and stock_rx.unprotect(out) == rtp
        assert ours.unprotect(peer_tx.protect(rtp)) == rtp
    rtcp = SourceDescription([SdesChunk(0x4242, [(CNAME, b"voxd")])]).serialize()
    sent = ours.protect_rtcp(rtcp)
    assert stock_rx.unprotect_rtcp(sent) == rtcp
    assert ours.unprotect_rtcp(peer_tx.protect_rtcp(rtcp)) == rtcp


def test_refusals_on_the_lean_path() -> None:
    """Replays (RTP and RTCP), a forged tag, a truncated packet and a packet too long to
    protect all raise; nothing comes back, and what the peer sent that failed is counted."""
    alice, bob = _pair()
    rtp = RtpPacket(0, 7, 1120, 0x77, payload=b"\x55" * 160).serialize()
    sent = alice.protect(rtp)
    assert bob.unprotect(sent) == rtp
    forged = sent[:-1] + bytes([sent[-1] ^ 0x80])
    later = alice.protect(RtpPacket(0, 8, 1280, 0x77, payload=b"\x55" * 160).serialize())
    for bad in (sent, forged[:-10], later[:-1] + bytes([later[-1] ^ 1]), b"\x80" * 5):
        with pytest.raises(SrtpError):
            bob.unprotect(bad)
    assert bob.unprotect(later)[12:] == b"\x55" * 160  # the genuine one still passes once
    rtcp = alice.protect_rtcp(SourceDescription([SdesChunk(0x77, [(CNAME, b"a")])]).serialize())
    bob.unprotect_rtcp(rtcp)
    with pytest.raises(SrtpError, match="replay"):
        bob.unprotect_rtcp(rtcp)
    assert bob.dropped == 5
    with pytest.raises(SrtpError, match="too long"):
        alice.protect(RtpPacket(0, 9, 1440, 0x77, payload=b"\0" * 1400).serialize())
    with pytest.raises(SrtpError):
        alice.protect(rtp)  # the same index twice is refused on the way out too
    assert alice.dropped == 0


def test_a_pylibsrtp_without_the_internals_falls_back_to_its_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """If a pylibsrtp release moves what the lean path uses, Session's own methods carry
    the packets, with the same refusals."""
    monkeypatch.setattr(srtp, "_ffi", None)
    alice, bob = _pair()
    assert not alice.lean and not bob.lean
    rtp = RtpPacket(0, 1, 160, 0x11, payload=b"\x01" * 160).serialize()
    sent = alice.protect(rtp)
    assert bob.unprotect(sent) == rtp
    with pytest.raises(SrtpError):
        bob.unprotect(sent)
    rtcp = SourceDescription([SdesChunk(0x11, [(CNAME, b"a")])]).serialize()
    assert bob.unprotect_rtcp(alice.protect_rtcp(rtcp)) == rtcp
    assert bob.dropped == 1
    monkeypatch.undo()
    lean = _pair()[0]
    assert lean.lean


def test_rekey_keeps_the_lean_path() -> None:
    a1, b1, a2 = (new_crypto(1, "AES_CM_128_HMAC_SHA1_80") for _ in range(3))
    alice = SrtpContext("AES_CM_128_HMAC_SHA1_80", a1.key_salt, b1.key_salt)
    bob = SrtpContext("AES_CM_128_HMAC_SHA1_80", b1.key_salt, a2.key_salt)
    keys = SrtpKeys("AES_CM_128_HMAC_SHA1_80", local=a2, remote=b1)
    assert alice.rekey(keys) and alice.lean
    rtp = RtpPacket(0, 3, 480, 0x22, payload=b"\x02" * 160).serialize()
    assert bob.unprotect(alice.protect(rtp)) == rtp
