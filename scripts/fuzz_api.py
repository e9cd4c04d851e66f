#!/usr/bin/env python3
"""Fuzz the control API's inputs with hypothesis: the agent YAML loader and JSON bodies.

Targets:
  agent-yaml  voxd.agents.loader.parse_agent (the one loader for files and the API): only
              AgentLoadError may escape, whatever the text (aliases, merges, tags, nesting).
  json-parse  voxd.api.pipeline.parse_json: only a 4xx ApiProblem may escape.
  json-http   POSTs to the real API listener (aiohttp, on 127.0.0.1) with an admin key:
              every answer is below 500, and every 4xx is application/problem+json.
Inputs are hypothesis' own text/bytes and structured mutations (flip, truncate, splice,
duplicate, insert tokens) of seeds: the shipped agent files, YAML bombs, deep and odd JSON.
Prints how many inputs ran and the slowest one per target; exits 1 on a failure.

    .venv/bin/python scripts/fuzz_api.py [--count 20000] [--seed 0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voxd.agents.loader import AgentLoadError, parse_agent  # noqa: E402
from voxd.api.problems import ApiProblem  # noqa: E402
from voxd.core.secrets import Outbound  # noqa: E402

YAML_TOKENS = ["&a ", "*a", "<<: *a\n", "!!python/object:os.system ", "!!binary ", "[", "]", "{", "}", ": ",
               "- ", "\n  ", "\t", "'", '"', "%YAML 1.1\n", "---\n", "...\n", "? ", "|\n", ">\n", "\\u0000",
               "\ufeff", "!!map ", "!!set ", "&b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n", "llm: {engine: openai-compatible, "
               "base_url: http://127.0.0.1/v1, api_key_env: HOME}\n", "${HOME}", "api_key_secret: x\n"]
JSON_TOKENS = [b"[", b"]", b"{", b"}", b",", b":", b'"', b"\\", b"\\u0000", b"\\ud800", b"1e999999", b"-0",
               b"9" * 5000, b"null", b"true", b"\xff", b"\xc3", b"NaN", b"Infinity", b'"yaml"', b'"name"']
PATHS = ["/api/v1/agents/_validate", "/api/v1/agents", "/api/v1/functions", "/api/v1/api-keys",
         "/api/v1/webhooks", "/api/v1/calls", "/api/v1/calls/web-token"]


def _bomb(levels: int, width: int) -> str:
    lines = [f"a0: &a0 [{','.join(['lol'] * width)}]"]
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def yaml_seeds() -> list[bytes]:
    out = [p.read_bytes() for p in sorted((ROOT / "agents").glob("*.yaml"))]
    out += [_bomb(9, 10).encode(), _bomb(3, 30).encode(), b"a: &a [*a]\n", b"x: " + b"[" * 200 + b"]" * 200,
            b"stt: &s {engine: fake}\nvoice: *s\nllm: {<<: *s, engine: dialog}\n", b"- 1\n- 2\n", b"",
            b"name: x\nname: y\n", b"name: !!python/name:os.system\n"]
    return out


def json_seeds() -> list[bytes]:
    agent = (ROOT / "agents" / "minimal.yaml").read_text()
    bodies: list[Any] = [
        {"yaml": agent}, {"yaml": _bomb(9, 10)}, {"name": "fn", "description": "d", "parameters": {"type": "object"},
                                                 "http": {"url": "https://example.com/x"}},
        {"name": "k", "scopes": ["calls:read"]}, {"url": "https://hooks.example.com/x"}, {"agent": "minimal"},
        {"agent": "x", "to": "sip:bob@127.0.0.1"}, [], {}, None, "x", 1,
    ]
    out = [json.dumps(b).encode() for b in bodies]
    return [*out, b"[" * 5000 + b"]" * 5000, b'{"a":' * 70 + b"1" + b"}" * 70, b'{"yaml": "\\ud800"}']


def mutate(data: bytes, seeds: list[bytes], tokens: list[bytes], rnd: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rnd.randint(1, 6)):
        op = rnd.randrange(6)
        pos = rnd.randint(0, len(buf))
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] = rnd.randrange(256)
        elif op == 1:
            del buf[pos:]
        elif op == 2:
            buf[pos:pos] = rnd.choice(tokens)
        elif op == 3 and buf:
            end = rnd.randint(pos, len(buf))
            buf[end:end] = buf[pos:end]
        elif op == 4:
            other = rnd.choice(seeds)
            buf[pos:] = other[rnd.randint(0, len(other)):]
        else:
            buf[pos:pos] = rnd.choice(tokens) * rnd.randint(1, 50)
    return bytes(buf)


def mutated(seeds: list[bytes], tokens: list[bytes]) -> st.SearchStrategy[bytes]:
    derived = st.builds(lambda data, n: mutate(data, seeds, tokens, random.Random(n)),
                        st.sampled_from(seeds), st.integers(0, 2**32 - 1))
    return st.one_of(derived, derived, derived, derived, st.binary(max_size=400))


def check_yaml(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    try:
        parse_agent(text, "fuzz.yaml", outbound=Outbound())
    except AgentLoadError:
        pass


def check_json(data: bytes) -> None:
    from voxd.api.pipeline import parse_json

    try:
        parse_json(data, 64)
    except ApiProblem as p:
        assert 400 <= p.status < 500, p.status


class HttpTarget:
    """The API with in-memory sources on a real listener, driven from a private loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.tmp = tempfile.TemporaryDirectory()
        self.loop.run_until_complete(self._start())

    async def _start(self) -> None:
        import aiohttp
        from aiohttp import web
        from aiohttp.test_utils import TestServer

        from voxd.api.app import setup_api
        from voxd.api.deps import ApiDeps, ApiSettings, RateSpec
        from voxd.api.fakes import MemoryAgentSource, MemoryCallSource, MemoryFunctionSource
        from voxd.api.keys_cli import create_key
        from voxd.store.db import Database

        big = RateSpec(10**9)
        settings_ = ApiSettings(pepper="fuzz", key_rate=big, ip_rate=big, failed_auth_rate=big,
                                class_rates={"read": big, "write": big, "execute": big})
        self.db = await Database.open(Path(self.tmp.name) / "voxd.db")
        app = web.Application()
        setup_api(app, ApiDeps(db=self.db, agents=MemoryAgentSource(), calls=MemoryCallSource(),
                               functions=MemoryFunctionSource(), settings=settings_))
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        key = await create_key(self.db, "fuzz", ["admin"], pepper="fuzz")
        self.http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}",
                                                   "Content-Type": "application/json"})

    async def _post(self, path: str, body: bytes) -> None:
        async with self.http.post(self.server.make_url(path), data=body) as r:
            await r.read()
            assert r.status < 500, f"{path}: HTTP {r.status} for {body[:80]!r}"
            if r.status >= 400 and r.status != 405:
                assert r.content_type == "application/problem+json", (path, r.status, r.content_type)

    def __call__(self, data: bytes) -> None:
        path = PATHS[sum(data[:4]) % len(PATHS)] if data else PATHS[0]
        self.loop.run_until_complete(self._post(path, data))

    def close(self) -> None:
        async def stop() -> None:
            await self.http.close()
            await self.server.close()
            await self.db.close()

        self.loop.run_until_complete(stop())
        self.loop.close()
        self.tmp.cleanup()


def targets() -> list[tuple[str, Callable[[bytes], None], str]]:
    return [("agent-yaml", check_yaml, "yaml"), ("json-parse", check_json, "json"), ("json-http", HttpTarget(), "json")]


SLOWEST: list[bytes] = [b""]  # the slowest input of the last target, for --show-slowest


def _make_test(check: Callable[[bytes], None], counter: list[float], seeds: list[bytes], tokens: list[bytes],
               examples: int, seed_value: int) -> Callable[[], None]:
    @seed(seed_value)
    @settings(max_examples=examples, deadline=None, database=None,
              phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
    @given(mutated(seeds, tokens))
    def fuzz(data: bytes) -> None:
        counter[0] += 1
        t0 = time.perf_counter()
        check(data)
        took = time.perf_counter() - t0
        if took > counter[1]:
            counter[1] = took
            SLOWEST[0] = data

    return fuzz


def run(count: int, seed_value: int = 0, *, quiet: bool = False) -> dict[str, int]:
    """Run ``count`` inputs spread over the targets; raise on a failure."""
    corpus = {"yaml": (yaml_seeds(), [t.encode() for t in YAML_TOKENS]), "json": (json_seeds(), JSON_TOKENS)}
    plan = targets()
    per_target = max(1, count // len(plan))
    ran: dict[str, int] = {}
    try:
        for name, check, kind in plan:
            counter = [0.0, 0.0]
            started = time.monotonic()
            _make_test(check, counter, *corpus[kind], per_target, seed_value)()
            ran[name] = int(counter[0])
            if not quiet:
                print(f"{name:11s} {int(counter[0]):7d} inputs  {time.monotonic() - started:6.1f} s  "
                      f"slowest {counter[1] * 1000:7.1f} ms", flush=True)
    finally:
        for _, check, _ in plan:
            if isinstance(check, HttpTarget):
                check.close()
    return ran


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000, help="total inputs (all targets)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.monotonic()
    try:
        ran = run(args.count, args.seed)
    except Exception:
        traceback.print_exc()
        print("FAIL: an input escaped the typed errors or got a 5xx")
        return 1
    print(f"OK: {sum(ran.values())} inputs in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
