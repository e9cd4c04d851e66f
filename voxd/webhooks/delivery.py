"""Sending webhook requests: destination checks, signing, and the retrying delivery worker.

``Sender`` makes one signed POST: no redirects, a timeout, the response body read only up
to a cap, and every destination checked by the daemon's outbound policy
(``voxd.core.egress``): private, loopback and link-local addresses are refused unless
``webhooks.allow_private_destinations`` or an ``egress.allow`` rule says otherwise, and the
connection goes to the address that was checked, so a DNS answer cannot swap in 127.0.0.1
after the check. ``DeliveryWorker`` takes due deliveries from the store, sends them with
at most N requests in flight per endpoint, and logs each attempt; failures are retried on
the schedule with jitter, then the delivery is marked failed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from voxd import __version__
from voxd.config import WEBHOOKS_PRIVATE_ENV, WebhooksConfig, _webhooks_private
from voxd.core.egress import EgressPolicy, EgressRefused, refusal
from voxd.core.egress_http import egress_session
from voxd.core.signing import signature
from voxd.store.repos import SUCCEEDED, AttemptResult, DueDelivery, Endpoint, Outcome, WebhookRepo

log = logging.getLogger("voxd.webhooks")

ALLOW_PRIVATE_ENV = WEBHOOKS_PRIVATE_ENV
USE = "webhooks"
ENDPOINTS_TTL_S = 1.0  # endpoint changes made elsewhere are seen within this
MAX_REQUEST_S = 125.0  # longest a request may take (timeouts are capped at 120 s)
PREFETCH = 8  # due deliveries fetched per endpoint, in multiples of its concurrency
# a claimed delivery is this node's until its attempt is recorded or for its request's
# timeout and this margin (a node that died mid-request: another sends it after that)
CLAIM_S = 2 * MAX_REQUEST_S
CLAIM_MARGIN_S = 10.0
RESERVED_HEADERS = {"content-type", "content-length", "host", "user-agent", "webhook-id",
                    "webhook-timestamp", "webhook-signature", "transfer-encoding", "connection"}


def private_allowed(cfg: WebhooksConfig) -> bool:
    return _webhooks_private(cfg)


def webhook_policy(cfg: WebhooksConfig, base: EgressPolicy | None = None) -> EgressPolicy:
    """``base`` (the daemon's egress policy) with webhooks.allow_private_destinations applied."""
    base = base or EgressPolicy()
    private_ok = base.private_ok | {USE} if private_allowed(cfg) else base.private_ok - {USE}
    return dataclasses.replace(base, private_ok=frozenset(private_ok))


def url_problem(url: str, policy: EgressPolicy) -> str | None:
    """Why ``url`` cannot be a webhook destination (checks needing no DNS), or None."""
    try:
        target = policy.target(url, USE)
    except EgressRefused as e:
        return str(e)
    if target.scheme not in ("http", "https"):
        return "must be an http:// or https:// URL with a host"
    return None


class Sender:
    def __init__(self, cfg: WebhooksConfig, policy: EgressPolicy | None = None) -> None:
        self.cfg = cfg
        self.policy = webhook_policy(cfg, policy)
        self._session: aiohttp.ClientSession | None = None
        self._retired: set[asyncio.Task[None]] = set()

    def configure(self, cfg: WebhooksConfig, policy: EgressPolicy | None = None) -> None:
        """A reloaded config. When the destination rules change, new requests get a new
        connection pool (pooled connections skip the resolver's check); requests in
        flight finish on the old pool, which is closed after the longest request time."""
        self.cfg = cfg
        new = webhook_policy(cfg, policy if policy is not None else self.policy)
        if new == self.policy:
            return
        self.policy = new
        old, self._session = self._session, None
        if old is not None:
            async def close_later(session: aiohttp.ClientSession = old) -> None:
                try:
                    await asyncio.sleep(MAX_REQUEST_S)
                finally:
                    await session.close()

            task = asyncio.ensure_future(close_later())
            self._retired.add(task)
            task.add_done_callback(self._retired.discard)

    async def __aenter__(self) -> Sender:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = egress_session(self.policy, USE, limit=0, auto_decompress=False)
        return self._session

    async def close(self) -> None:
        for task in list(self._retired):
            task.cancel()  # closes its old pool at once
            await asyncio.gather(task, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def headers(self, endpoint: Endpoint, msg_id: str, body: bytes, now: float) -> dict[str, str]:
        ts = int(now)
        out = {k: v for k, v in endpoint.headers.items() if k.lower() not in RESERVED_HEADERS}
        out.update({
            "Content-Type": "application/json",
            "User-Agent": f"voxd-webhooks/{__version__}",
            "webhook-id": msg_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": " ".join(signature(s, msg_id, ts, body) for s in endpoint.secrets(now)),
        })
        return out

    async def send(self, endpoint: Endpoint, msg_id: str, payload: str) -> AttemptResult:
        body = payload.encode()
        started = time.time()
        t0 = time.perf_counter()
        problem = url_problem(endpoint.url, self.policy)
        if problem:
            return AttemptResult(started, None, 0.0, None, f"destination refused: url {problem}")
        timeout = aiohttp.ClientTimeout(total=endpoint.timeout_s or self.cfg.timeout_s)
        cap = self.cfg.response_excerpt_bytes
        try:
            async with self._client().post(endpoint.url, data=body, allow_redirects=False, timeout=timeout,
                                           headers=self.headers(endpoint, msg_id, body, started)) as resp:
                raw = await resp.content.read(cap) if cap else b""
                excerpt = raw.decode("utf-8", errors="replace") if raw else None
                error = None
                if 300 <= resp.status < 400:
                    error = f"redirect to {resp.headers.get('Location', '?')} not followed"
                return AttemptResult(started, resp.status, _ms(t0), excerpt, error)
        except EgressRefused as e:
            return AttemptResult(started, None, _ms(t0), None, f"destination refused: {e}")
        except aiohttp.ClientConnectorError as e:
            why = refusal(e)
            reason = f"destination refused: {why}" if why else f"connection failed: {e.os_error}"
            return AttemptResult(started, None, _ms(t0), None, reason)
        except TimeoutError:
            return AttemptResult(started, None, _ms(t0), None, f"timed out after {timeout.total} s")
        except (aiohttp.ClientError, OSError, ValueError) as e:
            return AttemptResult(started, None, _ms(t0), None, f"{type(e).__name__}: {e}"[:500])


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 2)


def retry_delay(attempts_done: int, schedule: list[float], jitter: float) -> float | None:
    """Seconds until the next try after ``attempts_done`` failed ones; None: give up."""
    if attempts_done - 1 >= len(schedule):
        return None
    base = schedule[attempts_done - 1]
    return max(0.0, base * (1 + random.uniform(-jitter, jitter)))


class DeliveryWorker:
    """One asyncio task; ``wake()`` when new deliveries were written."""

    def __init__(self, store: WebhookRepo, sender: Sender, cfg: WebhooksConfig,
                 on_attempt: Callable[[DueDelivery, AttemptResult, str], None] | None = None) -> None:
        self.store, self.sender, self.cfg = store, sender, cfg
        self.on_attempt = on_attempt
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: dict[str, asyncio.Task[None]] = {}  # delivery id -> task
        self._per_endpoint: dict[str, int] = {}
        self._queued: dict[str, collections.deque[DueDelivery]] = {}  # fetched, not started yet
        self._endpoints: dict[str, Endpoint] | None = None
        self._endpoints_at = 0.0
        self.poll_s = 1.0
        self._writes: list[tuple[Outcome, asyncio.Future[str]]] = []
        self._writer: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="webhooks-delivery")

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop taking work; let requests in flight finish for up to ``grace_s``. Anything
        cut short stays pending in the database and is sent again after a restart."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._inflight:
            _, late = await asyncio.wait(list(self._inflight.values()), timeout=grace_s)
            for t in late:
                t.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._writer, grace_s)
        with contextlib.suppress(Exception):  # what was cut short: another node may send it now
            await self.store.release_claims()

    async def _run(self) -> None:
        try:  # what this node had claimed before a crash or restart is due again now
            await self.store.release_claims()
        except Exception:
            log.exception("webhooks: releasing this node's claims failed")
        while True:
            try:
                started = await self._dispatch()
            except Exception:
                log.exception("webhooks: delivery loop failed; retrying")
                started = 0
            if started:
                continue
            now = time.time()
            nxt = await self._next_due(now)
            timeout = self.poll_s if nxt is None else min(self.poll_s, max(0.005, nxt - now))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()

    async def _next_due(self, now: float) -> float | None:
        try:
            return await self.store.next_due_at(now)
        except Exception:
            log.exception("webhooks: next_due_at failed")
            return None

    async def _dispatch(self) -> int:
        """Start what is due, up to the per-endpoint cap. Due deliveries are fetched a
        batch at a time per endpoint and kept in memory, so a busy endpoint costs one
        query per batch, not one per request."""
        cap = self.cfg.concurrency_per_endpoint
        now = time.time()
        if self._endpoints is None or now - self._endpoints_at > ENDPOINTS_TTL_S:
            self._endpoints = {ep.id: ep for ep in await self.store.enabled_endpoints()}
            self._endpoints_at = now
            for eid in [e for e in self._queued if e not in self._endpoints]:
                del self._queued[eid]  # disabled or deleted meanwhile
        picked: list[tuple[Endpoint, DueDelivery]] = []
        for ep in self._endpoints.values():
            busy = self._per_endpoint.get(ep.id, 0)
            queue = self._queued.setdefault(ep.id, collections.deque())
            if busy >= cap:
                continue
            if len(queue) < cap:
                known = {d.id for d in queue}
                for d in await self.store.due_for(ep, now, limit=PREFETCH * cap + busy + len(queue)):
                    if d.id not in self._inflight and d.id not in known:
                        queue.append(d)
            picked += [(ep, queue.popleft()) for _ in range(min(len(queue), cap - busy))]
        if not picked:
            return 0
        # one attempt each, by this node only: another node's worker may have taken some
        lease = min(CLAIM_S, max((ep.timeout_s or self.cfg.timeout_s) for ep, _ in picked) + CLAIM_MARGIN_S)
        claimed = set(await self.store.claim([d.id for _, d in picked], now, lease))
        started = 0
        for ep, d in picked:
            if d.id not in claimed:
                continue
            d = dataclasses.replace(d, endpoint=ep)  # current secrets and settings
            self._per_endpoint[ep.id] = self._per_endpoint.get(ep.id, 0) + 1
            task = asyncio.create_task(self._deliver(d), name=f"webhook-{d.id}")
            self._inflight[d.id] = task
            task.add_done_callback(functools.partial(self._done, d))
            started += 1
        return started

    def endpoints_changed(self) -> None:
        """An endpoint was created, changed, rotated or deleted: re-read them before sending more."""
        self._endpoints = None
        self._queued.clear()
        self._wake.set()

    def _done(self, d: DueDelivery, _task: asyncio.Task[None]) -> None:
        self._inflight.pop(d.id, None)
        n = self._per_endpoint.get(d.endpoint.id, 1) - 1
        if n > 0:
            self._per_endpoint[d.endpoint.id] = n
        else:
            self._per_endpoint.pop(d.endpoint.id, None)
        self._wake.set()

    async def _deliver(self, d: DueDelivery) -> None:
        try:
            await self.attempt(d)
        except Exception:
            log.exception("webhooks: delivery %s failed unexpectedly", d.id)

    async def attempt(self, d: DueDelivery, *, retry: bool = True, affects_health: bool = True) -> tuple[str, AttemptResult]:
        """Send once and record it; returns the delivery's new status and the attempt."""
        result = await self.sender.send(d.endpoint, d.message_id, d.payload)
        gone = result.status_code == 410
        nxt = None
        if not result.ok and not gone and retry:
            schedule = d.endpoint.retry_schedule if d.endpoint.retry_schedule is not None else self.cfg.retry_schedule_s
            delay = retry_delay(d.attempts + 1, schedule, self.cfg.retry_jitter)
            nxt = None if delay is None else time.time() + delay
        status = await self._record(Outcome(d, result, nxt, gone, affects_health))
        if gone:
            log.warning("webhooks: %s answered 410 Gone; endpoint %s disabled", d.endpoint.url, d.endpoint.id)
        elif status not in (SUCCEEDED, "pending"):
            log.warning("webhooks: delivery %s to %s failed for good: %s", d.id, d.endpoint.id,
                        result.error or result.status_code)
        if self.on_attempt is not None:
            self.on_attempt(d, result, status)
        return status, result

    async def _record(self, outcome: Outcome) -> str:
        """Queue the outcome for the next group commit and wait for it: the delivery stays
        "in flight" until its result is stored, so it is never picked up twice."""
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._writes.append((outcome, fut))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_outcomes(), name="webhooks-attempt-log")
        return await fut

    async def _write_outcomes(self) -> None:
        while self._writes:
            batch, self._writes = self._writes, []
            try:
                statuses = await self.store.record_attempts([o for o, _ in batch], self.cfg.failing_after)
            except Exception:  # e.g. an endpoint deleted meanwhile: store the others one by one
                for outcome, fut in batch:
                    try:
                        status = (await self.store.record_attempts([outcome], self.cfg.failing_after))[0]
                    except Exception as e:
                        if not fut.done():
                            fut.set_exception(e)
                    else:
                        if not fut.done():
                            fut.set_result(status)
                continue
            for (_, fut), status in zip(batch, statuses, strict=True):
                if not fut.done():
                    fut.set_result(status)

    def stats(self) -> dict[str, Any]:
        return {"in_flight": len(self._inflight), "endpoints_busy": len(self._per_endpoint)}
