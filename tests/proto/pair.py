"""A UAC and a UAS joined in memory with virtual time and a loss pattern."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from voxd.proto.sip import Event, UAConfig, UserAgent

UAC_ADDR = ("127.0.0.1", 5062)
UAS_ADDR = ("127.0.0.1", 5060)

Drop = Callable[[tuple[str, int], tuple[str, int], bytes], bool]


def first_line(data: bytes) -> str:
    return data.split(b"\r\n", 1)[0].decode()


def label(data: bytes) -> str:
    """'INVITE', 'ACK', '200 INVITE', '487 INVITE', ..."""
    line = first_line(data)
    if line.startswith("SIP/2.0"):
        cseq = next(x for x in data.split(b"\r\n") if x.lower().startswith(b"cseq:"))
        return f"{line.split()[1]} {cseq.split()[-1].decode()}"
    return line.split()[0]


@dataclass
class Sent:
    at: float
    src: tuple[str, int]
    dst: tuple[str, int]
    data: bytes
    dropped: bool

    @property
    def label(self) -> str:
        return label(self.data)


@dataclass
class Pair:
    uac: UserAgent = field(default_factory=lambda: UserAgent(UAConfig(*UAC_ADDR, user="caller")))
    uas: UserAgent = field(default_factory=lambda: UserAgent(UAConfig(*UAS_ADDR, user="agent")))
    drop: Drop = lambda src, dst, data: False
    now: float = 0.0
    wire: list[Sent] = field(default_factory=list)
    uac_events: list[Event] = field(default_factory=list)
    uas_events: list[Event] = field(default_factory=list)

    def _agents(self) -> list[tuple[tuple[str, int], UserAgent, list[Event]]]:
        return [(UAC_ADDR, self.uac, self.uac_events), (UAS_ADDR, self.uas, self.uas_events)]

    def flush(self) -> None:
        """Deliver datagrams (with zero latency) until nobody has anything to send."""
        for _ in range(1000):
            moved = False
            for src, ua, _events in self._agents():
                for data, dst in ua.data_to_send():
                    moved = True
                    dropped = self.drop(src, dst, data)
                    self.wire.append(Sent(self.now, src, dst, data, dropped))
                    if dropped:
                        continue
                    for addr, peer, peer_events in self._agents():
                        if addr == dst:
                            peer_events.extend(peer.receive(data, src, self.now))
            if not moved:
                return
        raise AssertionError("message storm")

    def advance(self, seconds: float) -> None:
        """Run timers in virtual time up to now + seconds."""
        end = self.now + seconds
        self.flush()
        while True:
            due = [d for _, ua, _ in self._agents()
                   if (d := ua.next_deadline()) is not None and d <= end]
            if not due:
                break
            self.now = max(self.now, min(due))
            for _, ua, events in self._agents():
                events.extend(ua.poll(self.now))
            self.flush()
        self.now = end

    def labels(self, src: tuple[str, int] | None = None, delivered_only: bool = False) -> list[str]:
        return [s.label for s in self.wire
                if (src is None or s.src == src) and not (delivered_only and s.dropped)]

    def of(self, kind: type, side: str = "uas") -> list:
        events = self.uas_events if side == "uas" else self.uac_events
        return [e for e in events if isinstance(e, kind)]
