"""Where a call's media may come from, and when it has stopped coming.

`SourceGuard` decides, packet by packet, whether an RTP or RTCP datagram is the
caller's. Before anything has arrived, a packet is taken from the address and port
the SDP named, or from any port of a host the call was signalled from or named
(the SIP peer's address, the SDP's connection address: a caller behind NAT sends
from its public address and a port its NAT chose). The first packet taken latches
the stream to its exact address, once; from then on RTP from anywhere else is
counted and dropped, and RTCP is taken only from the latched host. An attacker who
sprays the port before the caller speaks gets nothing: its host was never signalled.

`InactivityTimer` ends a call whose media has stopped (a BYE lost on the way, a
phone that lost power): no accepted packet for `timeout_s` while not on hold.

Neither touches a socket or the event loop: the RTP stream feeds them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Addr = tuple[str, int]


def canonical_host(host: str) -> str:
    """One spelling per address: IPv4-mapped IPv6 becomes IPv4, IPv6 is compressed."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host.lower()
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


class SourceGuard:
    """Accepts media from the signalled source only; latches once."""

    def __init__(self, signalled: Addr | None, hosts: Iterable[str] = ()) -> None:
        self.signalled = (canonical_host(signalled[0]), signalled[1]) if signalled else None
        self.hosts = {canonical_host(h) for h in hosts if h}
        if self.signalled is not None:
            self.hosts.add(self.signalled[0])
        self.latched: Addr | None = None
        self._admitted: Addr | None = None  # the latched address as the socket spells it

    def admit_rtp(self, addr: Addr, *, latch: bool = True) -> bool:
        """True if this RTP packet is the caller's; the first one taken latches (with
        ``latch=False`` only asked: SRTP latches once the packet authenticated). The
        caller's own packets, after the first, cost one tuple comparison."""
        if addr == self._admitted:
            return True
        key = (canonical_host(addr[0]), addr[1])
        if self.latched is not None:
            if key == self.latched:
                self._admitted = addr
                return True
            # port 0 is no port (nothing can answer it): sipp's play_dtmf sends its RFC 4733
            # events that way, from the caller's host; any other port is someone else
            return key[1] == 0 and key[0] == self.latched[0]
        if key == self.signalled or key[0] in self.hosts:
            if latch:
                self.latched = key
            return True
        return False

    def admit_rtcp(self, addr: Addr) -> bool:
        """RTCP comes from the latched host (its port may be RTP's + 1), else a signalled one."""
        host = canonical_host(addr[0])
        return host == self.latched[0] if self.latched is not None else host in self.hosts


class InactivityTimer:
    """Has the caller's media stopped? Fed the clock on each accepted packet."""

    def __init__(self, timeout_s: float, now: float) -> None:
        self.timeout_s = timeout_s
        self.last = now
        self.fired = False

    def heard(self, now: float) -> None:
        self.last = now

    def expired(self, now: float, *, on_hold: bool) -> bool:
        """True once, when `timeout_s` passed without media (a call on hold may be silent)."""
        if self.fired or self.timeout_s <= 0:
            return False
        if on_hold:
            self.last = now
            return False
        if now - self.last >= self.timeout_s:
            self.fired = True
            return True
        return False
