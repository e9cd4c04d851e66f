"""Per-turn provider metrics, and the price table that turns usage into cost.

Every provider operation (an STT turn, an LLM step, a TTS clause) becomes one
`ProviderMetric`: time to first byte/token/audio, duration, and usage units
(audio_s, prompt_tokens, completion_tokens, characters). A `CallUsage` collects
them for one call into `metadata["usage"]` of the call record, with cost in USD
from the engines' registered list prices or an engine's `prices:` block in agent YAML.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger("voxd.providers")

# USD per unit: each engine's list prices are in its registration (EngineSpec.prices,
# voxd.providers.engines), overridden per engine with `prices:` in agent YAML.

MAX_TURN_METRICS = 500


@dataclass
class ProviderMetric:
    role: str  # stt | llm | tts
    provider: str
    first_byte_ms: float | None  # STT: finalize -> transcript; LLM: first token; TTS: first audio
    duration_ms: float
    units: dict[str, float] = field(default_factory=dict)
    ok: bool = True
    at: float = field(default_factory=time.time)


@dataclass
class Switch:
    """A provider was abandoned for the rest of the call."""

    role: str
    from_provider: str
    to_provider: str | None  # None: no provider left
    reason: str
    at: float = field(default_factory=time.time)

    def message(self) -> str:
        to = self.to_provider or "nothing"
        return f"{self.role} provider {self.from_provider} failed ({self.reason}); switched to {to}"


def cost_of(units: dict[str, float], prices: dict[str, float]) -> float:
    return sum(units.get(unit, 0.0) * price for unit, price in prices.items())


class CallUsage:
    """One call's provider metrics, kept in `metadata["usage"]` (JSON-ready) and
    switches in `metadata["provider_switches"]`."""

    def __init__(
        self,
        metadata: dict[str, Any] | None = None,
        *,
        prices: dict[str, dict[str, float]] | None = None,
        on_switch: Callable[[Switch], None] | None = None,
    ) -> None:
        self.metadata = metadata if metadata is not None else {}
        from voxd.providers.engines import list_prices

        self.prices: dict[str, dict[str, float]] = list_prices()
        for name, table in (prices or {}).items():
            self.prices.setdefault(name, {}).update(table)
        self.on_switch = on_switch
        self.metrics: list[ProviderMetric] = []
        self.switches: list[Switch] = []
        self._totals: dict[str, dict[str, Any]] = {}

    def set_prices(self, provider: str, table: dict[str, float]) -> None:
        if table:
            self.prices.setdefault(provider, {}).update(table)

    def add(self, m: ProviderMetric) -> None:
        self.metrics.append(m)
        if len(self.metrics) > MAX_TURN_METRICS:
            del self.metrics[0]
        t = self._totals.setdefault(m.provider, {"role": m.role, "requests": 0, "errors": 0, "units": {}})
        t["requests"] += 1
        t["errors"] += 0 if m.ok else 1
        for unit, n in m.units.items():
            t["units"][unit] = round(t["units"].get(unit, 0.0) + n, 3)
        if m.first_byte_ms is not None:
            t.setdefault("first_byte_ms", []).append(round(m.first_byte_ms, 1))
        self._publish()

    def switched(self, sw: Switch) -> None:
        log.warning("%s", sw.message())
        self.switches.append(sw)
        self.metadata["provider_switches"] = [asdict(s) for s in self.switches]
        if self.on_switch is not None:
            try:
                self.on_switch(sw)
            except Exception:
                log.exception("provider switch listener failed")

    def cost(self) -> dict[str, float]:
        out = {name: round(cost_of(t["units"], self.prices.get(name, {})), 6) for name, t in self._totals.items()}
        out["total"] = round(sum(out.values()), 6)
        return out

    def _publish(self) -> None:
        self.metadata["usage"] = {
            "providers": {name: dict(t, units=dict(t["units"])) for name, t in self._totals.items()},
            "turns": [asdict(m) for m in self.metrics[-50:]],
            "cost_usd": self.cost(),
        }
