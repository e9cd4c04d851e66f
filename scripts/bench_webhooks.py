"""Webhook throughput: events accepted into the outbox (SQLite, or the PostgreSQL store
``--store-url`` names), delivered to a local receiver.

    .venv/bin/python scripts/bench_webhooks.py [--events 5000] [--endpoints 2] [--concurrency 8] [--store-url URL]

Phase 1 (outbox): events are published the way call listeners publish them and committed
in batches; prints events/s and publish -> commit latency p50/p99.
Phase 2 (drain): the delivery worker sends that backlog (signed, one POST per event and
endpoint) to a receiver in another process; prints deliveries/s.
Phase 3 (live): events at a steady rate with the worker running; prints publish -> received
latency p50/p99. Everything on 127.0.0.1; the run is bounded by --events and --live-seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from voxd.config import WebhooksConfig
from voxd.store.backends import open_store
from voxd.store.webhooks import Message
from voxd.webhooks import events
from voxd.webhooks.service import Webhooks

RECEIVER = """
import json, sys, time
from aiohttp import web
seen = {}
async def hook(request):
    await request.read()
    seen.setdefault(request.headers["webhook-id"], time.time())
    return web.Response(status=204)
async def stats(request):
    return web.json_response(seen)
app = web.Application()
app.router.add_post("/hook", hook)
app.router.add_get("/stats", stats)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=lambda *a: print("ready", flush=True))
"""


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def sample(i: int) -> Message:
    return events.agent_message("agent.updated", f"agent-{i % 10}", str(i))


async def received(port: int) -> dict[str, float]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/stats") as r:
        data: dict[str, float] = json.loads(await r.text())
        return data


async def wait_pending_zero(hooks: Webhooks, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if not (await hooks.store.counts()).get("pending"):
            return
        await asyncio.sleep(0.05)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--endpoints", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=8, help="requests in flight per endpoint")
    ap.add_argument("--live-rate", type=float, default=200.0, help="events/s in phase 3")
    ap.add_argument("--live-seconds", type=float, default=5.0)
    ap.add_argument("--store-url", default=None,
                    help="the store to use (postgresql://... for a PostgreSQL store; default: SQLite in a temp dir)")
    args = ap.parse_args()

    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    recv = await asyncio.create_subprocess_exec(sys.executable, "-c", RECEIVER, str(port),
                                                stdout=asyncio.subprocess.PIPE)
    assert recv.stdout is not None
    await asyncio.wait_for(recv.stdout.readline(), 20)
    tmp = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    db = await open_store(args.store_url, default_path=tmp / "voxd.db", state_dir=tmp)
    cfg = WebhooksConfig(allow_private_destinations=True, concurrency_per_endpoint=args.concurrency,
                         retry_schedule_s=[0.5, 1.0, 2.0])
    hooks = Webhooks(db, cfg)
    try:
        for _ in range(args.endpoints):
            await hooks.create_endpoint("bench", url=f"http://127.0.0.1:{port}/hook")
        hooks.outbox.track_latency = True
        n = args.events

        # phase 1: into the outbox only (worker not running)
        hooks.outbox.start()
        t0 = time.perf_counter()
        for i in range(0, n, 50):  # listeners publish a few events at a time
            hooks.outbox.publish([sample(j) for j in range(i, min(n, i + 50))])
            await asyncio.sleep(0)
        await hooks.outbox.flush()
        accept_s = time.perf_counter() - t0
        lat = hooks.outbox.latencies_ms
        print(f"outbox:   {n} events in {accept_s:.2f} s = {n / accept_s:,.0f} events/s accepted "
              f"({n * args.endpoints} deliveries queued); publish->commit p50 {pct(lat, 50):.1f} ms, "
              f"p99 {pct(lat, 99):.1f} ms")

        # phase 2: drain the backlog
        t0 = time.perf_counter()
        hooks.worker.start()
        hooks.running = True
        await wait_pending_zero(hooks, 300)
        drain_s = time.perf_counter() - t0
        counts = await hooks.store.counts()
        ok = counts.get("succeeded", 0)
        row = await db.fetchone("SELECT AVG(latency_ms) AS a, MAX(latency_ms) AS m FROM webhook_attempts")
        print(f"          request latency mean {row['a']:.1f} ms, max {row['m']:.1f} ms" if row else "")
        print(f"delivery: {ok} deliveries in {drain_s:.2f} s = {ok / drain_s:,.0f} deliveries/s "
              f"({ok / args.endpoints / drain_s:,.0f} events/s to each of {args.endpoints} endpoints, "
              f"{args.concurrency} in flight per endpoint); not delivered: {counts.get('pending', 0) + counts.get('failed', 0)}")

        # phase 3: steady rate, end to end
        published: dict[str, float] = {}
        hooks.outbox.latencies_ms = []
        total = int(args.live_rate * args.live_seconds)
        start = time.perf_counter()
        for i in range(total):
            m = sample(n + i)
            published[m.id] = m.created_at
            hooks.outbox.publish([m])
            delay = start + (i + 1) / args.live_rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        await hooks.outbox.flush()
        await wait_pending_zero(hooks, 60)
        seen = await received(port)
        e2e = [(seen[k] - t) * 1000 for k, t in published.items() if k in seen]
        commit = hooks.outbox.latencies_ms
        print(f"live:     {total} events at {args.live_rate:.0f}/s: publish->commit p50 {pct(commit, 50):.1f} ms, "
              f"p99 {pct(commit, 99):.1f} ms; publish->received p50 {pct(e2e, 50):.1f} ms, p99 {pct(e2e, 99):.1f} ms, "
              f"mean {statistics.fmean(e2e) if e2e else float('nan'):.1f} ms; received {len(e2e)}/{total}")
    finally:
        await hooks.stop()
        await db.close()
        recv.terminate()
        await recv.wait()


if __name__ == "__main__":
    asyncio.run(main())
