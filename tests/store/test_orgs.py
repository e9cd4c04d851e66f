"""Organisations at the store layer: every repository bound to one org sees only that
org's rows; existing data lands in ``default`` when migrating from each earlier version."""

from __future__ import annotations

import sqlite3

import pytest

from tests.servers import backend_params, open_test_store
from voxd.core.calllog import CallRecord
from voxd.store.calls import ForeignRow
from voxd.store.db import Database
from voxd.store.migrations import MIGRATIONS, ORG_TABLES
from voxd.store.orgs import OrgExists
from voxd.store.records import Message

LATEST = MIGRATIONS[-1].version
BACKEND_PARAMS = backend_params()


@pytest.fixture(params=BACKEND_PARAMS)
async def two(request, tmp_path):
    db = await open_test_store(request.param, tmp_path, request)
    await db.orgs().create("acme")
    yield db, db.for_org("acme")
    await db.close()


def _call(cid: str) -> CallRecord:
    return CallRecord(id=cid, agent="a", agent_version="1", transport="sip", direction="inbound", started_at=1.0)


async def test_each_repository_sees_its_own_org(two):
    a, b = two
    _, ka = await a.api_keys().create("ka", ["admin"], created_by="t")
    _, kb = await b.api_keys().create("kb", ["admin"], created_by="t")
    assert kb.org == "acme" and ka.org == "default"
    assert [k.id for k in await a.api_keys().list()] == [ka.id]
    assert await a.api_keys().get(kb.id) is None and await b.api_keys().get(ka.id) is None
    assert await b.api_keys().revoke(ka.id) is None
    assert (await a.api_keys().get(ka.id)).revoked_at is None  # type: ignore[union-attr]
    assert await b.api_keys().update(ka.id, name="stolen") is None
    await a.calls().save(_call("call_a"))
    assert await b.calls().get("call_a") is None
    assert (await b.calls().list())[0] == []
    with pytest.raises(ForeignRow):
        await b.calls().save(_call("call_a"))  # an upsert never takes over another org's row
    await a.functions().put("f", "d", {}, {"url": "http://x"}, "t")
    await b.functions().put("f", "other", {}, {"url": "http://y"}, "t")  # same name, own org
    assert (await a.functions().get("f"))["description"] == "d"  # type: ignore[index]
    assert await b.functions().delete("f") and await a.functions().get("f") is not None
    await a.agent_changes().record("x", "1", "put", "t")
    assert await b.agent_changes().list("x") == []
    await a.calendar().add({"uid": "u1", "agent": "x", "summary": "s", "description": "", "location": "", "starts_at": "2026-01-01T10:00:00+00:00",
                            "ends_at": "2026-01-01T11:00:00+00:00"})
    assert await b.calendar().list() == []


async def test_webhook_messages_fan_out_to_their_org_only(two):
    a, b = two
    wa, wb = a.webhooks(), b.webhooks()
    ea = await wa.create_endpoint(url="http://127.0.0.1:1/a", secret="whsec_" + "a" * 32, created_by="t")
    eb = await wb.create_endpoint(url="http://127.0.0.1:1/b", secret="whsec_" + "b" * 32, created_by="t")
    assert [e.id for e in await wb.list_endpoints()] == [eb.id]
    assert await wb.get_endpoint(ea.id) is None
    assert await wb.rotate_secret(ea.id, "whsec_" + "c" * 32, 0) is None
    assert not await wb.delete_endpoint(ea.id)
    msg = Message(id="msg_1", type="call.started", payload="{}", agent="a", call_id="call_1", created_at=1.0)
    assert await wa.add_messages([msg]) == 1  # one delivery: acme's endpoint gets nothing
    page, _ = await wa.list_deliveries(ea.id)
    assert len(page) == 1
    assert (await wb.list_deliveries(eb.id))[0] == []
    assert await wb.get_delivery(ea.id, page[0]["id"]) is None
    assert await wb.attempts(page[0]["id"]) == []
    assert await wb.message("msg_1") is None


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
async def test_org_names(backend, tmp_path, request):
    db = await open_test_store(backend, tmp_path, request)
    try:
        with pytest.raises(OrgExists):
            await db.orgs().create("default")
        with pytest.raises(ValueError):
            await db.orgs().create("Bad Name")
        assert [o["id"] for o in await db.orgs().list()] == ["default"]
    finally:
        await db.close()


@pytest.mark.parametrize("start", range(1, LATEST))
async def test_existing_rows_land_in_default(tmp_path, start):
    path = tmp_path / "voxd.db"
    db = await Database.open(path, target_version=start)
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO calls (id, agent, agent_version, transport, direction, status, started_at)"
                           " VALUES ('call_old', 'a', '1', 'sip', 'inbound', 'ended', 1.0)")
        if start >= 2:
            await conn.execute("INSERT INTO api_keys (id, name, prefix, hash, scopes, created_by, created_at) "
                               "VALUES ('key_0123456789abcdef', 'k', 'vx_live_x', 'h', '[\"admin\"]', 't', 1.0)")
        if start >= 3:
            await conn.execute("INSERT INTO functions (name, description, parameters, http, created_by, "
                               "created_at, updated_at) VALUES ('f', 'd', '{}', '{}', 't', 1.0, 1.0)")
    await db.close()
    db = await Database.open(path)
    try:
        assert await db.calls().get("call_old") is not None
        assert await db.for_org("acme").calls().get("call_old") is None
        if start >= 2:
            assert [k.org for k in await db.api_keys().list()] == ["default"]
        if start >= 3:
            assert await db.functions().get("f") is not None
    finally:
        await db.close()
    with sqlite3.connect(path) as conn:
        for table in ORG_TABLES:
            assert {r[0] for r in conn.execute(f"SELECT DISTINCT org FROM {table}")} <= {"default"}
