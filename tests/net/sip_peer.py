"""A SIP peer for in-process tests: voxd's own sans-IO user agent on a real UDP socket,
with an RTP socket that records what arrives and can stream audio (G.711 mu-law)."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any, TypeVar

import numpy as np

from voxd.media.audio import resample
from voxd.proto.g711 import ulaw_decode, ulaw_encode
from voxd.proto.negotiate import answer, offer
from voxd.proto.rtp import RtpPacket
from voxd.proto.sdp import SessionDescription
from voxd.proto.sip import Event, UAConfig, UserAgent

E = TypeVar("E", bound=Event)


class _Rtp(asyncio.DatagramProtocol):
    def __init__(self, peer: SipPeer) -> None:
        self.peer = peer

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) > 12 and data[1] & 0x7F == 0:  # PCMU (RTCP and events are not kept)
            self.peer.rtp_in.append((time.monotonic(), RtpPacket.parse(data).payload))


class SipPeer(asyncio.DatagramProtocol):
    def __init__(self, user: str) -> None:
        self.user = user
        self.events: list[Event] = []
        self.rtp_in: list[tuple[float, bytes]] = []
        self._changed = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.rtp: asyncio.DatagramTransport | None = None
        self.ua: UserAgent | None = None
        self.port = self.rtp_port = 0
        self._seq = 0

    async def start(self) -> SipPeer:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))
        self.port = self.transport.get_extra_info("sockname")[1]
        self.rtp, _ = await loop.create_datagram_endpoint(lambda: _Rtp(self), local_addr=("127.0.0.1", 0),
                                                          family=socket.AF_INET)
        self.rtp_port = self.rtp.get_extra_info("sockname")[1]
        self.ua = UserAgent(UAConfig("127.0.0.1", self.port, user=self.user))
        return self

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for t in (self.transport, self.rtp):
            if t is not None:
                t.close()

    @property
    def agent(self) -> UserAgent:
        assert self.ua is not None
        return self.ua

    def offer(self, direction: str = "sendrecv") -> bytes:
        return offer("127.0.0.1", self.rtp_port, ["PCMU"], direction=direction).serialize()

    def answer_for(self, sdp: bytes) -> bytes:
        return answer(SessionDescription.parse(sdp), "127.0.0.1", self.rtp_port, ["PCMU"]).sdp.serialize()

    # -- SIP plumbing
    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.events += self.agent.receive(data, addr, time.monotonic())
        self.flush()
        self._changed.set()

    def flush(self) -> None:
        assert self.transport is not None
        for data, dst in self.agent.data_to_send():
            self.transport.sendto(data, dst)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.agent.next_deadline()
        if deadline is not None:
            self._timer = asyncio.get_running_loop().call_later(max(0.0, deadline - time.monotonic()), self._poll)

    def _poll(self) -> None:
        self._timer = None
        self.events += self.agent.poll(time.monotonic())
        self.flush()
        self._changed.set()

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    async def wait_for(self, kind: type[E], within: float = 10.0, **match: Any) -> E:
        async with asyncio.timeout(within):
            while True:
                for e in self.events:
                    if isinstance(e, kind) and all(getattr(e, k) == v for k, v in match.items()):
                        return e
                self._changed.clear()
                await self._changed.wait()

    # -- RTP
    async def send_audio(self, pcm16k: bytes, to: tuple[str, int]) -> None:
        """Send 16 kHz PCM as 20 ms PCMU packets, one every 20 ms."""
        assert self.rtp is not None
        pcm8 = resample(np.frombuffer(pcm16k, dtype="<i2"), 16000, 8000)
        data = ulaw_encode(pcm8)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for n, i in enumerate(range(0, len(data) - 159, 160)):
            self._seq += 1
            pkt = RtpPacket(0, self._seq, self._seq * 160, 0x5EED, payload=data[i:i + 160])
            self.rtp.sendto(pkt.serialize(), to)
            await asyncio.sleep(max(0.0, start + (n + 1) * 0.02 - loop.time()))

    def rtp_since(self, t: float) -> list[bytes]:
        return [p for at, p in self.rtp_in if at >= t]


def level(payloads: list[bytes]) -> float:
    """RMS of the decoded mu-law payloads (0 for none)."""
    if not payloads:
        return 0.0
    pcm = np.concatenate([ulaw_decode(p) for p in payloads]).astype(np.float64)
    return float(np.sqrt(np.mean(pcm**2)))
