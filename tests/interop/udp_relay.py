"""A lossy UDP relay on loopback: each socket bound at ``relay_host:port`` forwards to
``target_host:port`` (the same port), and what comes back from there to the last other
sender. ``drop`` of the datagrams on the ``lossy`` ports are dropped (seeded, so a run
is repeatable); others (SIP) always pass. Two hosts of 127.0.0.0/8 stand for two
machines: the daemon and sipp advertise the relay's host, so all media crosses it."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import cast


@dataclass
class Counts:
    passed: int = 0
    dropped: int = 0


class _Port(asyncio.DatagramProtocol):
    def __init__(self, relay: UdpRelay, port: int, rng: random.Random) -> None:
        self.relay, self.port, self.rng = relay, port, rng
        self.client: tuple[str, int] | None = None
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's is not a subclass

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        r = self.relay
        if self.transport is None:
            return
        if self.port in r.lossy and self.rng.random() < r.drop:
            r.counts.dropped += 1
            return
        r.counts.passed += 1
        if addr == (r.target_host, self.port):
            if self.client is not None:
                self.transport.sendto(data, self.client)
        else:
            self.client = addr
            self.transport.sendto(data, (r.target_host, self.port))


@dataclass
class UdpRelay:
    relay_host: str
    target_host: str
    ports: list[int]
    lossy: set[int] = field(default_factory=set)
    drop: float = 0.0
    seed: int = 7
    counts: Counts = field(default_factory=Counts)
    _transports: list[asyncio.BaseTransport] = field(default_factory=list)

    async def start(self) -> UdpRelay:
        loop = asyncio.get_running_loop()
        rng = random.Random(self.seed)
        for port in self.ports:
            transport, _ = await loop.create_datagram_endpoint(
                lambda p=port: _Port(self, p, rng), local_addr=(self.relay_host, port))  # type: ignore[misc]
            self._transports.append(transport)
        return self

    def close(self) -> None:
        for t in self._transports:
            t.close()
        self._transports.clear()
