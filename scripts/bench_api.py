"""Authenticated throughput and latency of ``GET /api/v1/agents`` on this machine.

Starts the control API in a child process on 127.0.0.1 (random port) with a temporary
SQLite database and the in-memory sources holding a few agents, then runs
``--concurrency`` aiohttp clients in this process for ``--seconds`` and prints requests
per second and p50/p99 latency. Every request is
authenticated, rate-limited, counted in the usage table and checked against its quota, as
in production (the limits are raised so the benchmark measures the work, not the 429s).

    /work/venv/bin/python scripts/bench_api.py --seconds 10 --concurrency 20
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import ClientSession, TCPConnector, web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from voxd.api.app import setup_api
from voxd.api.deps import ApiDeps, ApiSettings, RateSpec
from voxd.api.fakes import (
    MemoryAgentSource,
    MemoryCallSource,
    MemoryFunctionSource,
)
from voxd.api.keys_cli import create_key
from voxd.store.db import Database

BIG = RateSpec(10**9)


async def _worker(session: ClientSession, url: str, headers: dict[str, str], stop: float,
                  latencies: list[float], errors: list[int]) -> None:
    while time.perf_counter() < stop:
        t0 = time.perf_counter()
        async with session.get(url, headers=headers) as resp:
            await resp.read()
            if resp.status != 200:
                errors.append(resp.status)
        latencies.append(time.perf_counter() - t0)


async def serve(quota: bool) -> None:
    """Child process: run the API until stdin closes; print 'PORT KEY' once listening."""
    with tempfile.TemporaryDirectory() as tmp:
        db = await Database.open(Path(tmp) / "bench.db")
        agents = MemoryAgentSource()
        for i in range(5):
            await agents.put(f"agent-{i}", f"name: agent-{i}\ndescription: bench {i}\n", "bench")
        settings = ApiSettings(pepper="bench-pepper", key_rate=BIG, ip_rate=BIG,
                               failed_auth_rate=BIG, class_rates={"read": BIG})
        app = web.Application()
        setup_api(app, ApiDeps(db=db, agents=agents, calls=MemoryCallSource(),
                               functions=MemoryFunctionSource(), settings=settings))
        key = await create_key(db, "bench", ["agents:read"], pepper=settings.pepper,
                               quota_per_day=10**9 if quota else None)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        print(port, key, flush=True)  # the benchmark's own throwaway key, on a temp database
        try:
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        finally:
            await runner.cleanup()
            await db.close()


async def main(seconds: float, concurrency: int, quota: bool) -> None:
    args = [sys.executable, __file__, "--serve"] + (["--quota"] if quota else [])
    server = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert server.stdout is not None and server.stdin is not None
    try:
        line = await asyncio.wait_for(server.stdout.readline(), timeout=60)
        port, key = line.decode().split()
        url = f"http://127.0.0.1:{port}/api/v1/agents"
        headers = {"Authorization": f"Bearer {key}"}
        latencies: list[float] = []
        errors: list[int] = []
        async with ClientSession(connector=TCPConnector(limit=concurrency)) as session:
            for _ in range(50):  # warm-up
                async with session.get(url, headers=headers) as resp:
                    assert resp.status == 200, await resp.text()
            start = time.perf_counter()
            stop = start + seconds
            await asyncio.gather(*(
                _worker(session, url, headers, stop, latencies, errors)
                for _ in range(concurrency)))
            elapsed = time.perf_counter() - start
    finally:
        server.stdin.close()
        try:
            await asyncio.wait_for(server.wait(), timeout=10)
        except TimeoutError:
            server.kill()  # our own child, by its handle
            await server.wait()
    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print(f"GET /api/v1/agents  concurrency={concurrency}  duration={elapsed:.1f}s  "
          f"quota_check={'on' if quota else 'off'}")
    print(f"requests={len(ms)}  non-200={len(errors)}  req/s={len(ms) / elapsed:.0f}")
    print(f"latency ms: p50={statistics.median(ms):.2f}  p99={p99:.2f}  max={ms[-1]:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--quota", action="store_true",
                        help="give the key a daily quota, adding the quota query per request")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.quota))
    else:
        asyncio.run(main(args.seconds, args.concurrency, args.quota))
