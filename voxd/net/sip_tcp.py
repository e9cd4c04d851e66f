"""SIP over TCP: framed messages in, bounded in number and in idleness.

One `SipTcpConnection` per accepted connection; `TcpPeers` keeps them by address and
enforces the listener's limits (issue 12): a total cap and a per-source cap (a
connection beyond either is closed at once, before a byte is read), and an idle
timeout for connections that carry no call (a flood of silent connections from one
address cannot hold the descriptors that calls, the API and agent reloads need).
A connection a call's dialog runs over stays open as long as the call does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import cast

from voxd.config import SipListenConfig
from voxd.proto.sip.errors import SipParseError
from voxd.proto.sip.message import SipMessage, StreamParser

log = logging.getLogger("voxd.sip")

Addr = tuple[str, int]


class TcpPeers:
    """The open SIP-over-TCP connections, by peer address, and their limits."""

    def __init__(
        self,
        cfg: SipListenConfig,
        on_message: Callable[[SipMessage, Addr], None],
        carries_call: Callable[[Addr], bool],
    ) -> None:
        self.cfg = cfg
        self.on_message = on_message
        self.carries_call = carries_call
        self.by_addr: dict[Addr, SipTcpConnection] = {}
        self.per_host: Counter[str] = Counter()
        self.refused = 0
        self.idle_closed = 0
        self.tls_closed: dict[Addr, float] = {}  # peers whose TLS connection closed (see was_tls)
        self._refusal_logged: set[str] = set()

    def __contains__(self, addr: object) -> bool:
        return addr in self.by_addr

    def get(self, addr: Addr) -> SipTcpConnection | None:
        return self.by_addr.get(addr)

    def protocol(self) -> SipTcpConnection:
        return SipTcpConnection(self)

    def admit(self, conn: SipTcpConnection) -> bool:
        host = conn.peer[0]
        if len(self.by_addr) >= self.cfg.tcp_max_connections or self.per_host[host] >= self.cfg.tcp_max_per_source:
            self.refused += 1
            if host not in self._refusal_logged and len(self._refusal_logged) < 1024:
                self._refusal_logged.add(host)  # one line per source, not one per connection
                log.warning("SIP/TCP connection from %s refused: %d open from it, %d in all",
                            host, self.per_host[host], len(self.by_addr))
            return False
        self.by_addr[conn.peer] = conn
        self.per_host[host] += 1
        return True

    def was_tls(self, addr: Addr) -> bool:
        """A TLS connection to ``addr`` closed within the last hour: what the user agent
        queues for it is dropped, never sent over UDP in the clear."""
        closed = self.tls_closed.get(addr)
        return closed is not None and time.monotonic() - closed < 3600

    def remove(self, conn: SipTcpConnection) -> None:
        if conn.tls:
            if len(self.tls_closed) >= 4096:
                self.tls_closed.clear()
            self.tls_closed[conn.peer] = time.monotonic()
        if self.by_addr.get(conn.peer) is conn:
            del self.by_addr[conn.peer]
            self.per_host[conn.peer[0]] -= 1
            if self.per_host[conn.peer[0]] <= 0:
                del self.per_host[conn.peer[0]]

    def close_all(self) -> None:
        for conn in list(self.by_addr.values()):
            conn.close()


class SipTcpConnection(asyncio.Protocol):
    def __init__(self, peers: TcpPeers) -> None:
        self.peers = peers
        self.parser = StreamParser()
        self.transport: asyncio.Transport | None = None
        self.peer: Addr = ("", 0)
        self.admitted = False
        self.tls = False  # SIP over TLS (the TLS listener, or a connection voxd opened with TLS)
        self.tls_names: set[str] = set()  # names its certificate was verified for (connections voxd opened)
        self.last_activity = time.monotonic()
        self._idle_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.peer = (peer[0], peer[1])
        self.tls = transport.get_extra_info("ssl_object") is not None
        if not self.peers.admit(self):
            self.transport.abort()
            return
        self.admitted = True
        self._arm_idle()

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        try:
            messages = self.parser.feed(data)
        except SipParseError as e:
            log.info("bad SIP stream from %s: %s", self.peer[0], e)
            self.close()
            return
        for msg in messages:
            self.peers.on_message(msg, self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self.admitted:
            self.peers.remove(self)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.last_activity = time.monotonic()
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _arm_idle(self) -> None:
        idle_s = self.peers.cfg.tcp_idle_s
        due = self.last_activity + idle_s - time.monotonic()
        self._idle_timer = asyncio.get_running_loop().call_later(max(due, 0.05), self._idle_check)

    def _idle_check(self) -> None:
        self._idle_timer = None
        if self.transport is None or self.transport.is_closing():
            return
        idle = time.monotonic() - self.last_activity
        if idle >= self.peers.cfg.tcp_idle_s and not self.peers.carries_call(self.peer):
            log.info("SIP/TCP connection from %s closed after %.0f s idle", self.peer[0], idle)
            self.peers.idle_closed += 1
            self.close()
            return
        if idle >= self.peers.cfg.tcp_idle_s:
            self.last_activity = time.monotonic()  # a call runs over it: look again later
        self._arm_idle()
