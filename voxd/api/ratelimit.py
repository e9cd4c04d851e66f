"""Token buckets for the control API, and the IETF RateLimit headers they produce.

Headers follow draft-ietf-httpapi-ratelimit-headers: ``RateLimit-Policy`` lists the
policies that applied (``"key";q=600;w=60``) and ``RateLimit`` the state of each
(``"key";r=599;t=1``: remaining requests and seconds until the bucket is full again).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from voxd.api.deps import RateSpec


@dataclass
class TokenBucket:
    capacity: float
    rate: float  # tokens per second
    tokens: float
    updated: float

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def take(self, now: float, cost: float = 1.0) -> bool:
        self.refill(now)
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False

    def wait_s(self, cost: float = 1.0) -> float:
        """Seconds until ``cost`` tokens are available (after a refill)."""
        return max(0.0, (cost - self.tokens) / self.rate)

    def full_in_s(self) -> float:
        return max(0.0, (self.capacity - self.tokens) / self.rate)


@dataclass(frozen=True)
class Outcome:
    """One bucket's verdict, enough to render the headers."""

    name: str
    spec: RateSpec
    allowed: bool
    remaining: int
    reset_s: int
    retry_after_s: int


class BucketSet:
    """Buckets by key with LRU eviction so a flood of client IPs cannot grow memory forever."""

    def __init__(self, max_entries: int = 50_000, clock: Callable[[], float] = time.monotonic):
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._max = max_entries
        self._clock = clock

    def _bucket(self, key: str, spec: RateSpec, now: float) -> TokenBucket:
        b = self._buckets.get(key)
        if b is None or b.capacity != spec.requests:
            b = TokenBucket(spec.requests, spec.requests / spec.window_s, spec.requests, now)
            self._buckets[key] = b
            if len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return b

    def take(self, name: str, key: str, spec: RateSpec) -> Outcome:
        now = self._clock()
        b = self._bucket(key, spec, now)
        allowed = b.take(now)
        return Outcome(
            name=name, spec=spec, allowed=allowed, remaining=int(b.tokens),
            reset_s=math.ceil(b.full_in_s()),
            retry_after_s=0 if allowed else max(1, math.ceil(b.wait_s())),
        )

    async def acquire(self, name: str, key: str, spec: RateSpec) -> Outcome:
        """What the API awaits: :meth:`take` here; shared by every node in
        ``voxd.api.shared_limits.RedisBuckets``."""
        return self.take(name, key, spec)

    async def inspect(self, name: str, key: str, spec: RateSpec) -> Outcome:
        """:meth:`peek`, awaited (see :meth:`acquire`)."""
        return self.peek(name, key, spec)

    async def close(self) -> None:
        """Nothing to release for local buckets."""

    def peek(self, name: str, key: str, spec: RateSpec) -> Outcome:
        """The bucket's state without spending a token (allowed = a token is there)."""
        now = self._clock()
        b = self._bucket(key, spec, now)
        b.refill(now)
        allowed = b.tokens >= 1
        return Outcome(
            name=name, spec=spec, allowed=allowed, remaining=int(b.tokens),
            reset_s=math.ceil(b.full_in_s()),
            retry_after_s=0 if allowed else max(1, math.ceil(b.wait_s())),
        )


def _window(spec: RateSpec) -> str:
    w = spec.window_s
    return str(int(w)) if float(w).is_integer() else f"{w:g}"


def headers_for(outcomes: list[Outcome]) -> dict[str, str]:
    if not outcomes:
        return {}
    policy = ", ".join(f'"{o.name}";q={o.spec.requests};w={_window(o.spec)}' for o in outcomes)
    state = ", ".join(f'"{o.name}";r={o.remaining};t={o.reset_s}' for o in outcomes)
    headers = {"RateLimit-Policy": policy, "RateLimit": state}
    denied = [o.retry_after_s for o in outcomes if not o.allowed]
    if denied:
        headers["Retry-After"] = str(max(denied))
    return headers
