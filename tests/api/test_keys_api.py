from __future__ import annotations

import logging
import time

from voxd.api.app import SERVICES_KEY
from voxd.api.keys_cli import create_key, list_keys, revoke_key
from voxd.store.keys import ApiKeyRepository

from .conftest import PEPPER


async def test_create_shows_key_once_and_it_works(api):
    resp = await api.client.post("/api/v1/api-keys", headers=await api.admin(),
                                 json={"name": "crm", "scopes": ["calls:read", "agents:read"],
                                       "quota_per_day": 100})
    assert resp.status == 201, await resp.text()
    assert resp.headers["Cache-Control"] == "no-store"
    created = await resp.json()
    raw = created["key"]
    assert raw.startswith("vx_live_") and len(raw) == 46
    assert created["prefix"] == raw[:16] and created["status"] == "active"
    assert created["scopes"] == ["agents:read", "calls:read"]
    assert resp.headers["Location"] == f"/api/v1/api-keys/{created['id']}"

    got = await (await api.client.get(f"/api/v1/api-keys/{created['id']}",
                                      headers=await api.admin())).json()
    assert "key" not in got and got["quota_per_day"] == 100
    listed = await (await api.client.get("/api/v1/api-keys", headers=await api.admin())).json()
    assert raw not in str(listed)

    assert (await api.client.get("/api/v1/calls", headers=api.auth(raw))).status == 200
    assert (await api.client.get("/api/v1/functions", headers=api.auth(raw))).status == 403


async def test_a_key_only_mints_scopes_it_holds(api):
    manager = await api.key("keys:admin", "calls:read")
    ok = await api.client.post("/api/v1/api-keys", headers=api.auth(manager),
                               json={"name": "r", "scopes": ["calls:read"]})
    assert ok.status == 201
    for scopes in (["calls:write"], ["admin"], ["calls:read", "agents:read"]):
        resp = await api.client.post("/api/v1/api-keys", headers=api.auth(manager),
                                     json={"name": "x", "scopes": scopes})
        assert resp.status == 403, scopes
        body = await resp.json()
        assert body["type"] == "urn:voxd:problem:insufficient-scope"
        assert "scopes[" in body["detail"]


async def test_update_narrows_only(api):
    admin = await api.admin()
    created = await (await api.client.post(
        "/api/v1/api-keys", headers=admin,
        json={"name": "k", "scopes": ["calls:read", "calls:write"]})).json()
    url = f"/api/v1/api-keys/{created['id']}"
    resp = await api.client.patch(url, headers=admin,
                                  json={"scopes": ["calls:read"], "name": "k2",
                                        "quota_per_month": 9, "rate_limit_per_minute": 30})
    assert resp.status == 200
    body = await resp.json()
    assert body["scopes"] == ["calls:read"] and body["name"] == "k2"
    assert body["quota_per_month"] == 9 and body["rate_limit_per_minute"] == 30
    resp = await api.client.patch(url, headers=admin, json={"scopes": ["calls:write"]})
    assert resp.status == 422
    problem = await resp.json()
    assert problem["errors"][0]["field"] == "scopes[0]" and "scopes[0]" in problem["detail"]
    resp = await api.client.patch(url, headers=admin, json={"colour": "red"})
    assert resp.status == 422 and "colour" in (await resp.json())["detail"]
    resp = await api.client.patch(url, headers=admin, json={"scopes": ["nope"]})
    assert resp.status == 422 and "scopes[0]" in (await resp.json())["detail"]


async def test_expired_revoked_and_quota_are_distinct(api):
    expired = await api.key("calls:read", expires=time.time() - 1)
    resp = await api.client.get("/api/v1/calls", headers=api.auth(expired))
    assert resp.status == 401
    assert (await resp.json())["type"] == "urn:voxd:problem:key-expired"

    revoked = await api.key("calls:read")
    key_id = (await ApiKeyRepository(api.db, PEPPER).lookup(revoked)).id
    resp = await api.client.delete(f"/api/v1/api-keys/{key_id}", headers=await api.admin())
    assert resp.status == 200 and (await resp.json())["status"] == "revoked"
    resp = await api.client.get("/api/v1/calls", headers=api.auth(revoked))
    assert resp.status == 401
    assert (await resp.json())["type"] == "urn:voxd:problem:key-revoked"

    limited = await api.key("calls:read", quota_per_day=2)
    for _ in range(2):
        assert (await api.client.get("/api/v1/calls", headers=api.auth(limited))).status == 200
    resp = await api.client.get("/api/v1/calls", headers=api.auth(limited))
    assert resp.status == 429
    body = await resp.json()
    assert body["type"] == "urn:voxd:problem:quota-exhausted" and body["period"] == "day"
    assert 0 < int(resp.headers["Retry-After"]) <= 86400

    unknown = "vx_live_" + "A" * 38
    resp = await api.client.get("/api/v1/calls", headers=api.auth(unknown))
    assert resp.status == 401
    assert (await resp.json())["type"] == "urn:voxd:problem:unauthenticated"
    for bad in ("Basic abc", "Bearer", "Bearer " + expired[:-1] + "x"):
        resp = await api.client.get("/api/v1/calls", headers={"Authorization": bad})
        assert resp.status == 401


async def test_monthly_quota(api):
    limited = await api.key("calls:read", quota_per_month=1)
    assert (await api.client.get("/api/v1/calls", headers=api.auth(limited))).status == 200
    resp = await api.client.get("/api/v1/calls", headers=api.auth(limited))
    assert resp.status == 429 and (await resp.json())["period"] == "month"


async def test_usage_per_endpoint(api):
    raw = await api.key("calls:read", "agents:read")
    for _ in range(3):
        await api.client.get("/api/v1/calls", headers=api.auth(raw))
    await api.client.get("/api/v1/agents", headers=api.auth(raw))
    await api.client.get("/api/v1/functions", headers=api.auth(raw))  # 403: not counted
    key_id = (await ApiKeyRepository(api.db, PEPPER).lookup(raw)).id
    resp = await api.client.get(f"/api/v1/api-keys/{key_id}/usage", headers=await api.admin())
    usage = await resp.json()
    assert usage["today"] == 4 and usage["this_month"] == 4
    assert {(r["endpoint"], r["count"]) for r in usage["days"]} == {
        ("GET /api/v1/calls", 3), ("GET /api/v1/agents", 1)}
    resp = await api.client.get(f"/api/v1/api-keys/{key_id}/usage?since=2999-01-01",
                                headers=await api.admin())
    assert (await resp.json())["days"] == []
    resp = await api.client.get(f"/api/v1/api-keys/{key_id}/usage?since=yesterday",
                                headers=await api.admin())
    assert resp.status == 422 and "since" in (await resp.json())["detail"]
    resp = await api.client.get("/api/v1/api-keys/key_nope/usage", headers=await api.admin())
    assert resp.status == 404


async def test_raw_key_never_in_db_or_logs(api, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    raws = [await api.key("admin", name="boot")]
    resp = await api.client.post("/api/v1/api-keys", headers=api.auth(raws[0]),
                                 json={"name": "minted", "scopes": ["calls:read"]})
    raws.append((await resp.json())["key"])
    for raw in raws:
        await api.client.get("/api/v1/calls", headers=api.auth(raw))
        await api.client.get("/api/v1/agents/nope", headers=api.auth(raw))
    await api.client.get("/api/v1/calls", headers=api.auth(raws[1][:-2] + "zz"))
    await api.app[SERVICES_KEY].usage.flush()
    await api.db.close()  # checkpoint the WAL into the main file
    blobs = b"".join(p.read_bytes() for p in tmp_path.glob("voxd.db*"))
    assert b"vx_live_" in blobs  # display prefixes are stored, so the grep can see the file
    for raw in raws:
        assert raw.encode() not in blobs
        assert raw[8:].encode() not in blobs
        assert raw not in caplog.text
    api.db = await type(api.db).open(tmp_path / "voxd.db")  # for the fixture's close


async def test_cli_helpers(api):
    raw = await create_key(api.db, "ops", ["admin"], pepper=PEPPER)
    keys = await list_keys(api.db)
    assert [k["name"] for k in keys] == ["ops"]
    assert keys[0]["prefix"] == raw[:16] and "key" not in keys[0] and "hash" not in keys[0]
    assert (await api.client.get("/api/v1/agents", headers=api.auth(raw))).status == 200
    assert await revoke_key(api.db, keys[0]["id"]) is True
    assert await revoke_key(api.db, "key_missing") is False
    assert (await list_keys(api.db))[0]["status"] == "revoked"
    assert (await api.client.get("/api/v1/agents", headers=api.auth(raw))).status == 401
    for bad in ((), ("root",)):
        try:
            await create_key(api.db, "x", list(bad))
        except ValueError:
            pass
        else:
            raise AssertionError(f"scopes {bad} accepted")


async def test_usage_is_written_at_shutdown(tmp_path):
    from .conftest import make_api

    api, close = await make_api(tmp_path)
    raw = await api.key("calls:read")
    for _ in range(3):
        assert (await api.client.get("/api/v1/calls", headers=api.auth(raw))).status == 200
    await api.client.close()  # app cleanup flushes the pending counts
    try:
        rows = await api.db.fetchall("SELECT endpoint, count FROM key_usage")
        assert [tuple(r) for r in rows] == [("GET /api/v1/calls", 3)]
        row = await api.db.fetchone("SELECT last_used_at FROM api_keys")
        assert row["last_used_at"] is not None and row["last_used_at"] <= time.time()
    finally:
        await close()
