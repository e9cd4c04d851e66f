"""Two daemons (two nodes) configured with ``store: {url: postgresql://...}``: a call taken
by one is listed by the other's API, a key made on one opens the other, and their
webhook workers share one outbox."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from tests.daemons import start_daemon, time_agent
from tests.servers import PgServer
from tests.webhooks.receiver import Receiver
from voxd.api.keys_cli import create_key
from voxd.store.pg import PgDatabase

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(90)]


async def _call(http: aiohttp.ClientSession, url: str) -> None:
    async with http.ws_connect(url + "/media/voxd?agent=desk") as ws:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data)["type"] == "transcript":
                await ws.send_str(json.dumps({"type": "stop"}))
                break


async def test_two_nodes_share_calls_keys_and_webhooks(pg_server: PgServer, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    url = pg_server.new_database()
    user, rest = url.removeprefix("postgresql://").split("@", 1)
    monkeypatch.setenv("VOXD_TEST_PG_PASSWORD", "unused-with-trust")
    store = {"url": f"postgresql://{user}@{rest}", "password_env": "VOXD_TEST_PG_PASSWORD"}
    hooks = {"allow_private_destinations": True}
    shared = tmp_path / "shared"  # the webhook secrets' key: one for every node
    shared.mkdir()
    nodes = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        d = await start_daemon(tmp_path / name, {"desk": time_agent()}, store=store, webhooks=hooks,
                               state_dir=str(shared))
        nodes.append(d)
    receiver = Receiver()
    await receiver.start()
    try:
        assert all(isinstance(d.db, PgDatabase) for d in nodes)
        key = await create_key(nodes[0].db, "ops", ["admin"])  # made on node a ...
        auth = {"Authorization": f"Bearer {key}"}
        urls = [f"http://127.0.0.1:{d.http_port}" for d in nodes]
        async with aiohttp.ClientSession() as http:
            async with http.post(urls[1] + "/api/v1/webhooks", headers=auth,  # ... opens node b
                                 json={"url": receiver.url, "events": ["call.ended"]}) as r:
                assert r.status == 201, await r.text()
                receiver.secrets = [(await r.json())["secret"]]
            await _call(http, urls[0])
            await _call(http, urls[1])
            listed: list[set[str]] = []
            for _ in range(100):
                listed = []
                for u in urls:
                    async with http.get(u + "/api/v1/calls", headers=auth) as r:
                        assert r.status == 200, await r.text()
                        listed.append({c["id"] for c in (await r.json())["calls"] if c["status"] == "ended"})
                if all(len(ids) == 2 for ids in listed):
                    break
                await asyncio.sleep(0.1)
            assert listed[0] == listed[1] and len(listed[0]) == 2  # each node lists both calls
        await receiver.wait_for(lambda r: len(r.accepted) == 2, within=20)
        assert {p["data"]["id"] for p in receiver.accepted.values()} == listed[0]
        assert len(receiver.received) == 2  # one delivery each, whichever node sent it
    finally:
        await receiver.stop()
        for d in nodes:
            await d.stop()
