"""Rate limits shared through a real redis-server these tests start (random port, no
persistence): two nodes' buckets admit one limit between them, not one each; with Redis
killed each node limits alone (warned, counted), and sharing resumes when it returns."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.daemons import start_daemon, time_agent
from tests.servers import RedisServer
from voxd.api.deps import RateSpec
from voxd.api.keys_cli import create_key
from voxd.api.shared_limits import RedisBuckets

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(60)]
PER_MINUTE = RateSpec(10)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


async def _allowed(nodes: list[RedisBuckets], tries: int, key: str = "key:k1") -> list[int]:
    """Take ``tries`` tokens on each node in turn; how many each node was allowed."""
    got = [0 for _ in nodes]
    for i in range(tries):
        n = i % len(nodes)
        if (await nodes[n].acquire("key", key, PER_MINUTE)).allowed:
            got[n] += 1
    return got


async def test_two_nodes_share_one_limit_fall_back_while_redis_is_down_and_recover(
        redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    nodes = [RedisBuckets(redis_server.url, timeout_s=0.3, retry_s=0.3) for _ in range(2)]
    try:
        got = await _allowed(nodes, 20)
        assert sum(got) == 10 and all(got), got  # 10 between them, not 20
        denied = await nodes[0].acquire("key", "key:k1", PER_MINUTE)
        assert not denied.allowed and denied.remaining == 0 and denied.retry_after_s >= 1
        assert (await nodes[1].inspect("key", "key:k2", PER_MINUTE)).remaining == 10  # another key: its own
        assert all(n.up for n in nodes) and sum(n.fallbacks for n in nodes) == 0

        redis_server.stop()  # Redis gone: calls and requests go on, limited per node
        with caplog.at_level(logging.WARNING, logger="voxd.api.ratelimit"):
            got = await _allowed(nodes, 30)
        assert got == [10, 10]  # each node's local bucket
        assert not any(n.up for n in nodes) and all(n.fallbacks > 0 for n in nodes)
        warned = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(warned) == 2  # once per node, not once per request
        assert redis_server.url.split("//")[1] not in caplog.text  # no address or password in the log

        redis_server.start()  # back (empty: a fresh bucket) on the same port
        await asyncio.sleep(0.4)  # past retry_s
        with caplog.at_level(logging.WARNING, logger="voxd.api.ratelimit"):
            got = await _allowed(nodes, 20, key="key:k3")
        assert sum(got) == 10, got  # shared again
        assert all(n.up for n in nodes)
        assert any("reachable again" in r.getMessage() for r in caplog.records)
    finally:
        for n in nodes:
            await n.close()


async def test_a_per_key_limit_holds_across_two_daemons(redis_server: RedisServer, tmp_path: Path) -> None:
    """Two daemons with ``redis: {url}`` and api.per_key_per_minute 10: one key's 20
    requests, spread over both, get 10 answers and 10 429s."""
    shared = tmp_path / "state"
    daemons = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        daemons.append(await start_daemon(tmp_path / name, {"desk": time_agent()}, state_dir=str(shared),
                                          redis={"url": redis_server.url}, api={"per_key_per_minute": 10}))
    try:
        key = await create_key(daemons[0].db, "ops", ["admin"])
        auth = {"Authorization": f"Bearer {key}"}
        urls = [f"http://127.0.0.1:{d.http_port}" for d in daemons]
        statuses: list[int] = []
        async with aiohttp.ClientSession() as http:
            for i in range(20):
                async with http.get(urls[i % 2] + "/api/v1/agents", headers=auth) as r:
                    statuses.append(r.status)
            assert statuses.count(200) == 10 and statuses.count(429) == 10, statuses
            assert 200 in statuses[1::2] and 200 in statuses[0::2]  # both nodes answered some
            async with http.get(urls[1] + "/metrics") as r:
                text = await r.text()
        assert "voxd_redis_up 1.0" in text
        assert "voxd_ratelimit_fallback_total 0.0" in text
    finally:
        for d in daemons:
            await d.stop()
