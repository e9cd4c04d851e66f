"""An organisation's limits (``voxd orgs limits``) as the API and the SIP listener read them:
from the store at most every ``ttl_s`` per organisation, so a change made with the CLI holds
within seconds without a database read per request or call."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from voxd.store.repos import OrgRepo


@dataclass
class OrgLimitCache:
    ttl_s: float = 5.0
    _seen: dict[str, tuple[float, dict[str, int]]] = field(default_factory=dict)

    async def get(self, orgs: OrgRepo, org: str) -> dict[str, int]:
        now = time.monotonic()
        hit = self._seen.get(org)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        row = await orgs.get(org)
        limits: dict[str, int] = dict(row["limits"]) if row else {}
        self._seen[org] = (now, limits)
        return limits


def utc_midnight(now: float | None = None) -> float:
    t = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return t.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
