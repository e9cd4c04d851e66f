"""Rate-limit buckets in Redis, shared by every voxd node (``redis: {url}``).

One token bucket per key, as :class:`voxd.api.ratelimit.BucketSet` keeps locally, but in
a Redis hash updated by one Lua script (atomic: two nodes taking from one bucket at once
see each other), timed by Redis's own clock so nodes with skewed clocks agree. A per-key
limit of 10/min across three nodes admits 10, not 30.

Redis down (an error or no answer within ``timeout_s``): the node keeps answering, with
its local buckets (each node then limits alone), logs one warning, counts each such
decision (``fallbacks``, ``voxd_ratelimit_fallback_total``) and shows ``up`` false
(``voxd_redis_up``); it tries Redis again every ``retry_s`` and logs its return.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from voxd.api.deps import RateSpec
from voxd.api.ratelimit import BucketSet, Outcome

log = logging.getLogger("voxd.api.ratelimit")

PREFIX = "voxd:rl:"

# KEYS[1]: the bucket; ARGV: capacity, tokens per second, cost (0: look only), ttl in ms.
# Returns {allowed 0/1, tokens left (as a string: Lua numbers become integers in a reply)}.
_TAKE = """
local cap = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local v = redis.call('HMGET', KEYS[1], 'tokens', 'ts', 'cap')
local tokens = tonumber(v[1])
local ts = tonumber(v[2])
if tokens == nil or tonumber(v[3]) ~= cap then
  tokens = cap
  ts = now
end
if now > ts then
  tokens = math.min(cap, tokens + (now - ts) * rate)
end
local allowed = 0
if cost == 0 then
  if tokens >= 1 then allowed = 1 end
elseif tokens >= cost then
  tokens = tokens - cost
  allowed = 1
end
if cost > 0 or v[1] == false then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now), 'cap', tostring(cap))
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
return {allowed, tostring(tokens)}
"""


class RedisBuckets(BucketSet):
    def __init__(self, url: str, *, timeout_s: float = 0.25, retry_s: float = 2.0,
                 max_entries: int = 50_000) -> None:
        super().__init__(max_entries)
        self._url = url
        self._timeout = timeout_s
        self._retry_s = retry_s
        self._client: Any = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry_on_timeout=False)
        self._script: Any = self._client.register_script(_TAKE)
        self._down_until = 0.0
        self.up = True
        self.fallbacks = 0  # decisions taken locally because Redis was down

    async def close(self) -> None:
        await self._client.aclose()

    async def acquire(self, name: str, key: str, spec: RateSpec) -> Outcome:
        out = await self._shared(name, key, spec, 1)
        return out if out is not None else self.take(name, key, spec)

    async def inspect(self, name: str, key: str, spec: RateSpec) -> Outcome:
        out = await self._shared(name, key, spec, 0)
        return out if out is not None else self.peek(name, key, spec)

    async def _shared(self, name: str, key: str, spec: RateSpec, cost: int) -> Outcome | None:
        """Redis's verdict, or None (Redis down: the caller decides locally)."""
        now = time.monotonic()
        if now < self._down_until:
            self.fallbacks += 1
            return None
        rate = spec.requests / spec.window_s
        try:
            allowed, left = await asyncio.wait_for(
                self._script(keys=[PREFIX + key],
                             args=[spec.requests, repr(rate), cost, math.ceil(spec.window_s * 1000) + 1000]),
                self._timeout)
        except (RedisError, OSError, TimeoutError) as e:
            self._down(e)
            self.fallbacks += 1
            return None
        if not self.up:
            self.up = True
            log.warning("redis: reachable again; rate limits are shared by every node again")
        tokens = float(left)
        ok = bool(allowed)
        return Outcome(name=name, spec=spec, allowed=ok, remaining=int(tokens),
                       reset_s=math.ceil(max(0.0, spec.requests - tokens) / rate),
                       retry_after_s=0 if ok else max(1, math.ceil((max(cost, 1) - tokens) / rate)))

    def _down(self, e: BaseException) -> None:
        self._down_until = time.monotonic() + self._retry_s
        if self.up:
            self.up = False
            log.warning("redis: unreachable (%s); rate limits are this node's own until it returns",
                        type(e).__name__)
