import time

import pytest

from voxd.store.agent_changes import AgentChangeRepository
from voxd.store.functions import FunctionRepository
from voxd.store.keys import (
    KEY_LEN,
    ApiKeyRepository,
    generate_key,
    hash_key,
    utc_day,
    well_formed,
)


def test_key_format_and_checksum():
    raw = generate_key()
    assert raw.startswith("vx_live_") and len(raw) == KEY_LEN == 46
    assert well_formed(raw)
    last = raw[-1]
    typo = raw[:-1] + ("a" if last != "a" else "b")
    assert not well_formed(typo)
    flipped = raw[:10] + ("x" if raw[10] != "x" else "y") + raw[11:]
    assert not well_formed(flipped)
    assert not well_formed(raw + "a")
    assert not well_formed("vx_test_" + raw[8:])
    assert generate_key() != raw


def test_hash_uses_pepper():
    raw = generate_key()
    assert hash_key(raw) != hash_key(raw, "pepper") != hash_key(raw, "other")
    assert len(hash_key(raw, "pepper")) == 64


@pytest.mark.parametrize("pepper", ["", "s3cret-pepper"])
async def test_create_lookup_revoke(db, pepper):
    repo = ApiKeyRepository(db, pepper=pepper)
    raw, key = await repo.create("ops", ["calls:read", "agents:read", "calls:read"],
                                 created_by="cli", quota_per_day=10)
    assert key.scopes == ("agents:read", "calls:read")
    assert key.prefix == raw[:16]
    found = await repo.lookup(raw)
    assert found == key
    assert await repo.lookup(generate_key()) is None
    assert await ApiKeyRepository(db, pepper=pepper + "x").lookup(raw) is None
    row = await db.fetchone("SELECT hash FROM api_keys WHERE id = ?", (key.id,))
    assert row["hash"] == hash_key(raw, pepper) and raw not in row["hash"]

    revoked = await repo.revoke(key.id)
    assert revoked is not None and revoked.revoked_at is not None
    assert (await repo.lookup(raw)).revoked_at == revoked.revoked_at  # still found, marked
    again = await repo.revoke(key.id)
    assert again.revoked_at == revoked.revoked_at


async def test_update_and_list(db):
    repo = ApiKeyRepository(db)
    _, a = await repo.create("a", ["admin"], created_by="cli")
    _, b = await repo.create("b", ["calls:read"], created_by=a.id, expires_at=time.time() - 1)
    assert [k.id for k in await repo.list()] == [a.id, b.id]
    assert b.expired() and not a.expired()
    upd = await repo.update(a.id, name="renamed", scopes=["calls:read"], quota_per_month=5)
    assert upd.name == "renamed" and upd.scopes == ("calls:read",) and upd.quota_per_month == 5
    with pytest.raises(ValueError):
        await repo.update(a.id, hash="x")
    assert await repo.update("key_missing", name="x") is None


async def test_usage_counts_per_day_and_month(db):
    repo = ApiKeyRepository(db)
    _, key = await repo.create("u", ["admin"], created_by="cli")
    day1 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    for _ in range(3):
        await repo.record_use(key.id, "GET /api/v1/agents", now=day1 + 10)
    await repo.record_use(key.id, "GET /api/v1/calls", now=day1 + 86400 + 5)
    await repo.record_use(key.id, "GET /api/v1/calls", now=day1 - 5)  # previous month
    assert await repo.usage_totals(key.id, now=day1 + 86400 + 6) == (1, 4)
    assert await repo.usage_totals(key.id, now=day1 + 20) == (3, 3)
    rows = await repo.usage(key.id, since_day=utc_day(day1))
    assert rows == [
        {"day": "2026-01-01", "endpoint": "GET /api/v1/agents", "count": 3},
        {"day": "2026-01-02", "endpoint": "GET /api/v1/calls", "count": 1},
    ]
    assert (await repo.get(key.id)).last_used_at == day1 - 5


async def test_agent_changes(db):
    repo = AgentChangeRepository(db)
    await repo.record("desk", "1", "create", "key_a")
    await repo.record("desk", "2", "update", "key_b")
    await repo.record("other", "1", "create", "key_a")
    rows = await repo.list("desk")
    assert [(r["version"], r["action"], r["actor"]) for r in rows] == [
        ("2", "update", "key_b"), ("1", "create", "key_a")]


async def test_functions(db):
    repo = FunctionRepository(db)
    params = {"type": "object", "properties": {"q": {"type": "string"}}}
    http = {"method": "POST", "url": "https://example.test/hook"}
    f = await repo.put("lookup", "Look it up", params, http, actor="key_a")
    assert f["parameters"] == params and f["http"] == http and f["created_by"] == "key_a"
    f2 = await repo.put("lookup", "Changed", params, http, actor="key_b")
    assert f2["description"] == "Changed" and f2["created_by"] == "key_a"
    assert [x["name"] for x in await repo.list()] == ["lookup"]
    await repo.log_execution("lookup", {"q": "a"}, {"ok": 1}, None, 2.5, "key_a")
    await repo.log_execution("lookup", {"q": "b"}, None, "timeout", 30.0, "key_a")
    log = await repo.executions("lookup")
    assert [e["error"] for e in log] == ["timeout", None] and log[1]["result"] == {"ok": 1}
    assert await repo.delete("lookup") is True
    assert await repo.delete("lookup") is False
    assert await repo.get("lookup") is None


async def test_lookup_cache_sees_other_writers(db, tmp_path):
    from tests.servers import another_connection

    api_repo = ApiKeyRepository(db, pepper="p")
    raw, key = await api_repo.create("k", ["admin"], created_by="cli")
    assert (await api_repo.lookup(raw)).revoked_at is None
    assert (await api_repo.lookup(raw)).revoked_at is None  # served from the cache
    other = await another_connection(db)  # another process, e.g. the CLI, or another node
    try:
        await ApiKeyRepository(other, pepper="p").revoke(key.id)
    finally:
        await other.close()
    assert (await api_repo.lookup(raw)).revoked_at is not None
