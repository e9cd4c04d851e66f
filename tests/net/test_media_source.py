"""SourceGuard without sockets: the latch, its fast path for the caller's own packets,
and the refusals that must survive it."""

from __future__ import annotations

from voxd.net.media_source import SourceGuard


def test_the_caller_after_latching_and_everyone_else() -> None:
    g = SourceGuard(("10.0.0.5", 4000), ("192.0.2.9",))
    assert not g.admit_rtp(("10.0.0.6", 4000))  # never signalled
    assert g.admit_rtp(("10.0.0.5", 4000), latch=False) and g.latched is None  # only asked (SRTP)
    assert g.admit_rtp(("192.0.2.9", 5555)) and g.latched == ("192.0.2.9", 5555)  # NAT: the signalled host
    for _ in range(3):  # the fast path, taken from the second packet on
        assert g.admit_rtp(("192.0.2.9", 5555)) and g.admit_rtp(("192.0.2.9", 5555), latch=False)
    assert not g.admit_rtp(("10.0.0.5", 4000))  # the SDP's address, once latched elsewhere
    assert not g.admit_rtp(("192.0.2.9", 5556))  # another port of the same host
    assert g.admit_rtp(("192.0.2.9", 0))  # port 0: sipp's play_dtmf, from the caller's host
    assert not g.admit_rtp(("10.0.0.5", 0))
    assert g.latched == ("192.0.2.9", 5555)


def test_spellings_of_the_latched_address() -> None:
    g = SourceGuard(("::ffff:127.0.0.1", 4000))
    assert g.admit_rtp(("127.0.0.1", 4000)) and g.latched == ("127.0.0.1", 4000)
    assert g.admit_rtp(("::ffff:127.0.0.1", 4000))  # the same caller through a dual-stack socket
    assert g.admit_rtp(("127.0.0.1", 4000))
    assert not g.admit_rtp(("::ffff:127.0.0.2", 4000)) and not g.admit_rtp(("127.0.0.1", 4001))
    v6 = SourceGuard(("2001:db8::1", 4000))
    assert v6.admit_rtp(("2001:DB8:0::1", 4000)) and v6.admit_rtp(("2001:db8::1", 4000))
    assert not v6.admit_rtp(("2001:db8::2", 4000))
