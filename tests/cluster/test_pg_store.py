"""The PostgreSQL store as several nodes share it: the same schema as SQLite's, migrations
applied once when nodes start together, and webhook deliveries claimed by one node each
(``FOR UPDATE SKIP LOCKED``), against a PostgreSQL these tests start (tests/servers.py)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from tests.servers import PgServer
from tests.webhooks.conftest import config
from tests.webhooks.receiver import Receiver
from voxd.store.db import Database
from voxd.store.migrations import MIGRATIONS
from voxd.store.pg import PgDatabase
from voxd.store.records import Message
from voxd.webhooks import events
from voxd.webhooks.service import Webhooks

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(90)]
LATEST = MIGRATIONS[-1].version


def _sqlite_schema(path: Path) -> dict[str, set[str]]:
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        return {t: {r[1] for r in conn.execute(f"PRAGMA table_info({t})")} for t in tables}


async def _pg_schema(db: PgDatabase) -> dict[str, set[str]]:
    rows = await db.fetchall("SELECT table_name, column_name FROM information_schema.columns "
                             "WHERE table_schema = 'public'")
    out: dict[str, set[str]] = {}
    for r in rows:
        out.setdefault(r["table_name"], set()).add(r["column_name"])
    return out


async def _indexes(db: PgDatabase) -> set[str]:
    rows = await db.fetchall("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")
    return {r["indexname"] for r in rows if not r["indexname"].endswith("_pkey") and not r["indexname"].endswith("_key")}


async def test_both_backends_migrate_to_the_same_schema(pg_server: PgServer, tmp_path: Path) -> None:
    await (await Database.open(tmp_path / "voxd.db")).close()
    pg = await PgDatabase.open(pg_server.new_database(), state_dir=tmp_path)
    try:
        assert await pg.schema_version() == LATEST
        lite = _sqlite_schema(tmp_path / "voxd.db")
        assert await _pg_schema(pg) == lite
        with sqlite3.connect(tmp_path / "voxd.db") as conn:
            lite_idx = {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%'")}
        assert await _indexes(pg) == lite_idx
        # epoch seconds keep their sub-millisecond part (SQLite's REAL is 8 bytes, so is this)
        types = await pg.fetchall("SELECT data_type FROM information_schema.columns WHERE table_name = 'calls' "
                                  "AND column_name = 'started_at'")
        assert types[0]["data_type"] == "double precision"
    finally:
        await pg.close()


@pytest.mark.parametrize("start", range(1, LATEST))
async def test_upgrade_from_each_earlier_version(pg_server: PgServer, tmp_path: Path, start: int) -> None:
    url = pg_server.new_database()
    db = await PgDatabase.open(url, target_version=start)
    async with db.transaction() as txn:
        await txn.execute("INSERT INTO calls (id, agent, agent_version, transport, direction, status, started_at)"
                          " VALUES ('call_old', 'a', '1', 'sip', 'inbound', 'ended', 1.5)")
    await db.close()
    db = await PgDatabase.open(url, state_dir=tmp_path)
    try:
        assert await db.schema_version() == LATEST
        call = await db.calls().get("call_old")
        assert call is not None and call["started_at"] == 1.5
    finally:
        await db.close()


async def test_nodes_starting_together_apply_each_migration_once(pg_server: PgServer, tmp_path: Path) -> None:
    url = pg_server.new_database()
    nodes = await asyncio.gather(*(PgDatabase.open(url, state_dir=tmp_path) for _ in range(3)))
    try:
        rows = await nodes[0].fetchall("SELECT version FROM schema_version ORDER BY version")
        assert [r["version"] for r in rows] == list(range(1, LATEST + 1))
    finally:
        for n in nodes:
            await n.close()


async def _node(url: str, name: str, tmp_path: Path) -> PgDatabase:
    db = await PgDatabase.open(url, state_dir=tmp_path)
    db.node_id = name
    return db


async def _seed_deliveries(db: PgDatabase, n: int) -> list[str]:
    hooks = db.webhooks()
    await hooks.create_endpoint(url="https://example.com/h", secret="whsec_x", created_by="test")
    msgs = [Message(id=f"msg_{i}", type="call.started", payload="{}", agent="a", call_id=f"c{i}",
                    created_at=time.time() - 1) for i in range(n)]
    assert await hooks.add_messages(msgs) == n
    rows = await db.fetchall("SELECT id FROM webhook_deliveries ORDER BY id")
    return [r["id"] for r in rows]


async def test_a_claim_skips_rows_another_claim_holds(pg_server: PgServer, tmp_path: Path) -> None:
    """Node A's claim transaction holds half the rows; node B's claim of all of them does
    not wait for A: it takes the other half at once, and none of A's."""
    url = pg_server.new_database()
    a, b = await _node(url, "node-a", tmp_path), await _node(url, "node-b", tmp_path)
    try:
        ids = await _seed_deliveries(a, 20)
        held = ids[:10]
        async with a.transaction() as txn:
            marks = ", ".join("?" for _ in held)
            locked = await txn.fetchall(f"SELECT id FROM webhook_deliveries WHERE id IN ({marks})"
                                        + a.skip_locked, held)
            assert len(locked) == 10
            t0 = time.monotonic()
            got = await asyncio.wait_for(b.webhooks().claim(ids, time.time()), 5)
            assert time.monotonic() - t0 < 2.0  # skipped, not waited for
            assert sorted(got) == sorted(ids[10:])
        # A's transaction ended without claiming: the rows are free again, B's claims stand
        assert sorted(await a.webhooks().claim(ids, time.time())) == sorted(held)
        claimers = await a.fetchall("SELECT claimed_by, COUNT(*) AS n FROM webhook_deliveries GROUP BY claimed_by")
        assert {r["claimed_by"]: r["n"] for r in claimers} == {"node-a": 10, "node-b": 10}
    finally:
        await a.close()
        await b.close()


async def test_two_nodes_claiming_at_once_never_take_the_same_delivery(pg_server: PgServer, tmp_path: Path) -> None:
    url = pg_server.new_database()
    a, b = await _node(url, "node-a", tmp_path), await _node(url, "node-b", tmp_path)
    try:
        ids = await _seed_deliveries(a, 300)
        taken: dict[str, list[str]] = {"node-a": [], "node-b": []}

        async def worker(db: PgDatabase) -> None:
            store = db.webhooks()
            ep = (await store.enabled_endpoints())[0]
            while True:
                due = await store.due_for(ep, time.time(), limit=25)
                if not due:
                    return
                taken[db.node_id] += await store.claim([d.id for d in due], time.time())

        await asyncio.gather(*(worker(db) for db in (a, b, a, b)))  # two workers per node
        both = taken["node-a"] + taken["node-b"]
        assert len(both) == len(set(both)) == 300  # each exactly once
        assert sorted(both) == sorted(ids)
        assert taken["node-a"] and taken["node-b"]
        rows = await a.fetchall("SELECT claimed_by, COUNT(*) AS n FROM webhook_deliveries GROUP BY claimed_by")
        assert {r["claimed_by"]: r["n"] for r in rows} == {k: len(v) for k, v in taken.items()}
    finally:
        await a.close()
        await b.close()


async def test_two_nodes_deliver_every_event_once(pg_server: PgServer, tmp_path: Path) -> None:
    """Two daemons' webhook services on one database and one receiver: every event arrives,
    none twice, and both nodes sent some."""
    url = pg_server.new_database()
    dbs = [await _node(url, name, tmp_path) for name in ("node-a", "node-b")]
    nodes = [Webhooks(db, config(concurrency_per_endpoint=4)) for db in dbs]
    sent: dict[str, int] = {"node-a": 0, "node-b": 0}
    receiver = Receiver()
    receiver.delay_s = 0.02
    await receiver.start()
    try:
        ep = await nodes[0].create_endpoint("test", url=receiver.url)
        receiver.secrets = [ep.secret]
        for db, hooks in zip(dbs, nodes, strict=True):
            def count(_d: Any, _r: Any, _s: str, name: str = db.node_id) -> None:
                sent[name] += 1
            hooks.worker.on_attempt = count
            await hooks.start()
        for i in range(0, 80, 8):  # events produced on both nodes
            nodes[(i // 8) % 2].outbox.publish([events.message("webhook.test", events.TestInfo(webhook_id=f"wh_{j}"))
                                                 for j in range(i, i + 8)])
            await asyncio.sleep(0.01)
        for hooks in nodes:
            hooks.worker.wake()
        await receiver.wait_for(lambda r: len(r.accepted) == 80, within=30)
        await asyncio.sleep(0.3)  # a double send would arrive by now
        assert len(receiver.received) == 80, "an event was sent twice"
        assert sent["node-a"] > 0 and sent["node-b"] > 0, sent
        assert sum(sent.values()) == 80
    finally:
        for hooks in nodes:
            await hooks.stop()
        await receiver.stop()
        for db in dbs:
            await db.close()


async def test_a_dead_nodes_claims_run_out_and_a_restarted_node_gives_its_own_back(
        pg_server: PgServer, tmp_path: Path) -> None:
    url = pg_server.new_database()
    a, b = await _node(url, "node-a", tmp_path), await _node(url, "node-b", tmp_path)
    try:
        ids = await _seed_deliveries(a, 6)
        assert sorted(await a.webhooks().claim(ids[:3], time.time(), lease_s=0.5)) == sorted(ids[:3])
        assert sorted(await a.webhooks().claim(ids[3:], time.time(), lease_s=60)) == sorted(ids[3:])
        await a.close()  # node a dies mid-request: nothing recorded
        assert await b.webhooks().claim(ids, time.time()) == []
        await asyncio.sleep(0.6)
        assert sorted(await b.webhooks().claim(ids, time.time())) == sorted(ids[:3])  # its lease ran out
        a = await _node(url, "node-a", tmp_path)  # node a is back: what it held is due again at once
        assert await a.webhooks().release_claims() == 3
        assert sorted(await b.webhooks().claim(ids, time.time())) == sorted(ids[3:])
        assert await b.webhooks().release_claims() == 6
    finally:
        await a.close()
        await b.close()


async def test_an_unreachable_database_is_a_clear_error_without_the_password(tmp_path: Path) -> None:
    from tests.servers import free_port

    url = f"postgresql://voxd:hunter2-secret@127.0.0.1:{free_port()}/voxd"
    with pytest.raises(ConnectionError) as err:
        await PgDatabase.open(url, state_dir=tmp_path, timeout_s=1.0)
    assert "cannot reach PostgreSQL at postgresql://voxd:***@127.0.0.1" in str(err.value)
    assert "hunter2" not in str(err.value)
