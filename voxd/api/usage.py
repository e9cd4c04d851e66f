"""Per-request usage counting without a database write per request.

Counts collect in memory and are written in one transaction at most ``interval_s`` after
the first uncounted request, and when the application shuts down. Quota checks add the
pending counts to the stored ones, so they are exact; a crash loses at most ``interval_s``
of usage counts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

from voxd.store.repos import ApiKeyRepo, utc_day

log = logging.getLogger(__name__)


class UsageRecorder:
    def __init__(self, keys: ApiKeyRepo, interval_s: float = 1.0) -> None:
        self._keys = keys
        self._interval = interval_s
        self._pending: Counter[tuple[str, str, str]] = Counter()
        self._last_used: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def note(self, key_id: str, endpoint: str) -> None:
        now = time.time()
        self._pending[(key_id, utc_day(now), endpoint)] += 1
        self._last_used[key_id] = now
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        try:
            await asyncio.sleep(self._interval)
        finally:
            self._task = None
        try:
            await self.flush()
        except Exception:
            log.exception("api: writing key usage failed; will retry")

    async def flush(self) -> None:
        async with self._lock:
            counts, self._pending = self._pending, Counter()
            last_used, self._last_used = self._last_used, {}
            try:
                await self._keys.record_uses(dict(counts), last_used)
            except BaseException:
                self._pending.update(counts)
                for k, ts in last_used.items():
                    self._last_used[k] = max(ts, self._last_used.get(k, 0.0))
                raise

    async def totals(self, key_id: str, keys: ApiKeyRepo | None = None) -> tuple[int, int]:
        """Requests today and this month (UTC), stored plus pending; ``keys``: the key's
        organisation's repository (the stored counts are read within it)."""
        today, month = await (keys or self._keys).usage_totals(key_id)
        day = utc_day(time.time())
        for (k, d, _), n in self._pending.items():
            if k == key_id:
                month += n if d[:7] == day[:7] else 0
                today += n if d == day else 0
        return today, month

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        await self.flush()
