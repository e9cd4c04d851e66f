#!/usr/bin/env python3
"""Numbers for the hardening work (issue 12), against an in-process daemon on loopback:

* the billion-laughs agent YAML (10**9 items from ~450 bytes) posted to
  /api/v1/agents/_validate: how long until it is refused, and the process RSS around it;
* 50 partial HTTP requests (slowloris): how long until the daemon has closed them all;
* connections from one source beyond http.max_connections_per_source: how many are held,
  how many refused.

    .venv/bin/python scripts/bench_hardening.py [--partial 50] [--header-timeout 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voxd.api.keys_cli import create_key  # noqa: E402
from voxd.app import Daemon  # noqa: E402
from voxd.config import VoxdConfig  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bomb(levels: int = 9, width: int = 10) -> str:
    lines = [f"a0: &a0 [{','.join(['lol'] * width)}]"]
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "agents"
        folder.mkdir()
        (folder / "a.yaml").write_text("stt: {engine: fake}\nvoice: {engine: fake}\n")
        cfg = VoxdConfig.model_validate({
            "state_dir": f"{tmp}/state", "agents_dir": str(folder), "sip": {"enabled": False},
            "http": {"port": 0, "header_timeout_s": args.header_timeout,
                     "max_connections_per_source": args.per_source},
            "engines": {"silero_confirm": False, "preload": False}})
        d = Daemon(cfg, Path(tmp))
        await d.start()
        try:
            base = f"http://127.0.0.1:{d.http_port}"
            assert d.db is not None
            key = await create_key(d.db, "bench", ["agents:read"])
            text = bomb()
            async with aiohttp.ClientSession() as http:
                before = rss_mb()
                t0 = time.perf_counter()
                async with http.post(base + "/api/v1/agents/_validate", json={"yaml": text},
                                     headers={"Authorization": f"Bearer {key}"}) as r:
                    body = await r.json()
                ms = (time.perf_counter() - t0) * 1000
                after = rss_mb()
            print(f"alias bomb: {len(text)} bytes, 10**9 items: HTTP {r.status}, refused in {ms:.1f} ms "
                  f"({body['errors'][0]['message'][:60]}...); RSS {before:.1f} -> {after:.1f} MB")

            conns = [await asyncio.open_connection("127.0.0.1", d.http_port) for _ in range(args.partial)]
            t0 = time.perf_counter()
            for _, w in conns:
                w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n")
            answers = await asyncio.gather(*(asyncio.wait_for(r.read(), 120) for r, _ in conns))
            took = time.perf_counter() - t0
            n408 = sum(1 for a in answers if a.startswith(b"HTTP/1.1 408"))
            print(f"slowloris: {args.partial} partial requests all closed after {took:.1f} s "
                  f"(header_timeout_s {args.header_timeout}), {n408} answered 408")
            for _, w in conns:
                w.close()

            held = [await asyncio.open_connection("127.0.0.1", d.http_port) for _ in range(args.per_source + 20)]
            for _, w in held:
                w.write(b"GET /healthz HTTP/1.1\r\n")
            await asyncio.sleep(0.3)
            refused = 0
            for reader, _ in held[args.per_source:]:
                try:
                    data = await asyncio.wait_for(reader.read(), 2)
                    refused += data.startswith(b"HTTP/1.1 503")
                except TimeoutError:
                    pass
            print(f"per-source cap: {d.http_guard.stats()['open']} connections held from 127.0.0.1, "
                  f"{refused} of {len(held) - args.per_source} beyond the cap answered 503; "
                  f"guard stats {json.dumps(d.http_guard.stats())}")
            for _, w in held:
                w.close()
        finally:
            await d.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--partial", type=int, default=50)
    p.add_argument("--header-timeout", type=float, default=10.0)
    p.add_argument("--per-source", type=int, default=64)
    asyncio.run(main(p.parse_args()))
