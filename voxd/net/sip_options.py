"""OPTIONS keepalives towards trunks (`sip.trunks[].options_interval_s`): each trunk with
outbound settings is probed at its interval at its outbound proxy (or domain); the
answers make its health: ``up`` (any final response below 500 but a timeout), ``down``
(408 timeout, 5xx, 6xx), ``unknown`` before the first answer. The state is in
`GET /api/v1/sip/trunks` and /metrics beside the trunk's load (calls in progress, the
wait a carrier's 503 Retry-After imposed)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from voxd.config import TrunkConfig
from voxd.net.sip_trunk import loads, locate, trunk_hop
from voxd.proto.sip.events import OptionsResult

if TYPE_CHECKING:
    from voxd.net.sip import SipEndpoint

log = logging.getLogger("voxd.sip")


@dataclass
class TrunkHealth:
    name: str
    target: str
    interval_s: float
    state: str = "unknown"
    last_status: int | None = None
    last_reason: str = ""
    rtt_ms: float | None = None
    failures: int = 0  # consecutive
    checked_at: float | None = None  # wall clock of the last answer
    retry_after_s: int | None = None

    def answered(self, e: OptionsResult) -> None:
        up = e.status < 500 and e.status != 408
        if self.state != ("up" if up else "down"):
            log.info("trunk %s: OPTIONS %d, now %s", self.name, e.status, "up" if up else "down")
        self.state = "up" if up else "down"
        self.failures = 0 if up else self.failures + 1
        self.last_status, self.last_reason = e.status, e.reason[:128]
        self.rtt_ms = round(e.rtt_s * 1000, 1) if e.rtt_s is not None else None
        self.retry_after_s = e.retry_after
        self.checked_at = time.time()


class TrunkProbes:
    """The keepalive loops (a service of the daemon, started after the SIP endpoint)."""

    def __init__(self, trunks: list[TrunkConfig], endpoint: Callable[[], SipEndpoint | None]) -> None:
        self._endpoint = endpoint
        self.trunks = trunks
        self.health: dict[str, TrunkHealth] = {}
        self._in_flight: dict[str, TrunkHealth] = {}  # OPTIONS Call-ID -> its trunk
        self._tasks: list[asyncio.Task[None]] = []

    def attach(self, ep: SipEndpoint) -> None:
        if self.on_result not in ep.options_results:
            ep.options_results.append(self.on_result)

    async def start(self) -> None:
        ep = self._endpoint()
        if ep is None:
            return
        self.attach(ep)
        for trunk in self.trunks:
            if trunk.outbound is None or not trunk.options_interval_s:
                continue
            hop, _ = trunk_hop(trunk)
            target = hop.serialize()
            health = self.health.get(trunk.name)
            if health is None or health.target != target:
                health = TrunkHealth(trunk.name, target, trunk.options_interval_s)
            health.interval_s = trunk.options_interval_s
            self.health[trunk.name] = health
            self._tasks.append(asyncio.create_task(self._loop(trunk, health), name=f"options-{trunk.name}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks.clear()

    async def configure(self, trunks: list[TrunkConfig]) -> None:
        await self.stop()
        self.trunks = trunks
        names = {t.name for t in trunks if t.outbound is not None and t.options_interval_s}
        self.health = {n: h for n, h in self.health.items() if n in names}
        await self.start()

    async def _loop(self, trunk: TrunkConfig, health: TrunkHealth) -> None:
        hop, _ = trunk_hop(trunk)
        while True:
            ep = self._endpoint()
            if ep is not None and ep.ua is not None:
                try:  # the first target of the trunk's name (NAPTR/SRV/A, cached for its TTL)
                    peer = (await locate(ep, trunk)).targets[0].addr
                except (OSError, ValueError) as e:
                    health.answered(OptionsResult("", 408, f"cannot resolve {hop.host}: {e}"[:128]))
                else:
                    call_id = ep.probe(health.target, peer)
                    self._in_flight[call_id] = health
            await asyncio.sleep(trunk.options_interval_s)

    def on_result(self, e: OptionsResult) -> None:
        health = self._in_flight.pop(e.call_id, None)
        if health is not None:
            health.answered(e)

    def status(self) -> list[dict[str, Any]]:
        """Every trunk with outbound settings: keepalive health and load."""
        ep = self._endpoint()
        load = loads(ep) if ep is not None else {}
        now = time.monotonic()
        out: list[dict[str, Any]] = []
        for trunk in self.trunks:
            if trunk.outbound is None:
                continue
            h = self.health.get(trunk.name)
            tl = load.get(trunk.name)
            out.append({
                "name": trunk.name, "domain": trunk.outbound.domain, "proxy": trunk.outbound.proxy,
                "options_interval_s": trunk.options_interval_s,
                "state": h.state if h is not None else "unprobed",
                "last_status": h.last_status if h else None, "last_reason": h.last_reason if h else "",
                "rtt_ms": h.rtt_ms if h else None, "failures": h.failures if h else 0,
                "checked_at": h.checked_at if h else None,
                "active_calls": tl.active if tl else 0,
                "blocked_for_s": round(tl.blocked_for(now), 1) if tl else 0.0,
                "blocked_by": tl.blocked_by if tl and tl.blocked_for(now) > 0 else "",
            })
        return out
