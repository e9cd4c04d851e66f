"""The isolation matrix: two organisations, each with an owner, an admin, a developer and
a viewer signed in with JWTs plus API keys of every scope; every route of the OpenAPI
document called by every principal against the other organisation's objects.

For each call the answer must be the one the same principal gets for an object that
exists nowhere (same status, same problem type: nothing confirms the other object
exists), a principal holding the route's scope gets 404 on every object route, no answer
carries an identifier or a marker of the other organisation, and afterwards every object
of both organisations is as it was.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.api.conftest import GENEROUS, PEPPER
from tests.servers import backend_params, open_test_store
from voxd.api.app import DOC_KEY, SPECS_KEY, setup_api
from voxd.api.deps import ApiDeps
from voxd.api.fakes import MemoryAgentSource, MemoryCallSource, MemoryFunctionSource
from voxd.api.models import SCOPES
from voxd.core.calllog import CallRecord
from voxd.store.db import Database
from voxd.store.records import Message

ORGS = ("default", "acme")
ROLES = ("owner", "admin", "developer", "viewer")
PASSWORD = "isolation matrix password"
GHOST = {"name": "ghost", "call_id": "call_ghost", "key_id": "key_" + "0" * 16, "webhook_id": "wh_" + "0" * 16,
         "delivery_id": "dlv_" + "0" * 20, "conversation_id": "conv_" + "0" * 20}


def agent_yaml(name: str, org: str) -> str:
    return f"name: {name}\ndescription: MARK-{org}\ngreeting: Hello from MARK-{org}.\n"


async def _seed(db: Database, org: str, agents: MemoryAgentSource, live: MemoryCallSource) -> dict[str, Any]:
    """One of every object in ``org``; returns the identifiers."""
    scoped = db.for_org(org)
    name = f"agent{ORGS.index(org)}"
    await agents.put(name, agent_yaml(name, org), "seed")
    fn = f"fn{ORGS.index(org)}"
    await scoped.functions().put(fn, f"MARK-{org}", {"type": "object", "properties": {}},
                                 {"url": f"https://example.com/MARK-{org}"}, "seed")
    await scoped.functions().log_execution(fn, {"m": f"MARK-{org}"}, {"r": 1}, None, 1.0, "seed")
    call = CallRecord(id=f"call_{org}", agent=name, agent_version="1", transport="sip", direction="inbound",
                      started_at=1.0, metadata={"m": f"MARK-{org}"})
    await scoped.calls().save(call)
    conv = CallRecord(id=f"conv_{org}", agent=name, agent_version="1", transport="api", direction="inbound",
                      started_at=1.0, metadata={"m": f"MARK-{org}"})
    await scoped.conversations().save(conv)
    await scoped.agent_changes().record(name, "1", "create", "seed")
    hooks = scoped.webhooks()
    ep = await hooks.create_endpoint(url=f"https://example.com/MARK-{org}", secret="whsec_" + "s" * 32,
                                     created_by="seed", description=f"MARK-{org}")
    await hooks.add_messages([Message(id=f"msg_{org}", type="call.ended", payload=json.dumps({"m": f"MARK-{org}"}),
                                      agent=name, call_id=call.id, created_at=1.0)])
    delivery = (await hooks.list_deliveries(ep.id))[0][0]["id"]
    if org == "default":
        live.calls[f"call_live_{org}"] = call.to_dict() | {"id": f"call_live_{org}"}
    _, target_key = await scoped.api_keys(pepper=PEPPER).create(f"MARK-{org}", ["calls:read"], created_by="seed")
    return {"org": org, "name": name, "fn": fn, "call_id": call.id, "live_call": f"call_live_{org}",
            "conversation_id": conv.id, "webhook_id": ep.id, "delivery_id": delivery, "key_id": target_key.id}


async def _principals(db: Database, client: TestClient, org: str) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    keys = db.for_org(org).api_keys(pepper=PEPPER)
    for scope in SCOPES:
        raw, _ = await keys.create(f"p-{scope}", [scope], created_by="matrix")
        out[f"key:{scope}"] = {"Authorization": f"Bearer {raw}"}
    for role in ROLES:
        user = await db.users().create(f"{role}@{org}.example", PASSWORD)
        await db.users().set_role(user.id, org, role)
        resp = await client.post("/api/v1/auth/login", json={"email": f"{role}@{org}.example", "password": PASSWORD})
        assert resp.status == 200
        out[f"user:{role}"] = {"Authorization": f"Bearer {(await resp.json())['access_token']}"}
    return out


def _ids(ob: dict[str, Any]) -> dict[str, str]:
    return {"name": ob["name"], "call_id": ob["call_id"], "key_id": ob["key_id"], "webhook_id": ob["webhook_id"],
            "delivery_id": ob["delivery_id"], "conversation_id": ob["conversation_id"]}


def _path(path: str, ids: dict[str, str], ob: dict[str, Any] | None) -> str:
    def sub(m: re.Match[str]) -> str:
        key = m[1]
        if key == "name" and ob is not None and path.startswith("/api/v1/functions"):
            return ob["fn"]
        if key == "call_id" and ob is not None and path.endswith("/end"):
            return ob["live_call"]
        return ids[key]
    return re.sub(r"{(\w+)}", sub, path)


def _body(op: str, ob: dict[str, Any] | None) -> Any:
    agent = ob["name"] if ob else "ghost"
    return {
        "update_agent": {"yaml": agent_yaml(agent, "intruder")},
        "update_function": {"description": "intruder", "parameters": {"type": "object", "properties": {}},
                            "http": {"url": "https://example.com/intruder"}},
        "execute_function": {"arguments": {}},
        "update_key": {"name": "intruder"},
        "update_webhook": {"description": "intruder"},
        "rotate_webhook_secret": {"overlap_s": 0},
        "send_message": {"text": "hello"},
        "dial": {"agent": agent, "to": "sip:x@127.0.0.1"},
        "start_conversation": {"agent": agent},
        "mint_web_token": {"agent": agent},
        "create_password_reset": {"email": f"viewer@{ob['org']}.example" if ob else "ghost@nowhere.example"},
    }.get(op)


# the creates: with another org's names they make the caller's own object (tested apart)
CREATES = {"create_agent", "create_function", "create_key", "create_webhook", "validate_agent", "create_invitation"}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("backend", backend_params())
async def test_every_route_every_principal_other_org_is_invisible(backend, tmp_path, request):
    db = await open_test_store(backend, tmp_path, request)
    await db.orgs().create("acme")
    agents = {"default": MemoryAgentSource(), "acme": MemoryAgentSource()}
    live = MemoryCallSource(can_dial=True)
    app = web.Application()
    setup_api(app, ApiDeps(db=db, agents=agents["default"], calls=live, functions=MemoryFunctionSource(),
                           settings=GENEROUS, org_agents=lambda org: agents[org]))
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        objects = {org: await _seed(db, org, agents[org], live) for org in ORGS}
        before = {org: await _snapshot(db, org, agents[org]) for org in ORGS}
        principals = {org: await _principals(db, client, org) for org in ORGS}
        documented = json.loads(app[DOC_KEY])["paths"]
        specs = [s for s in app[SPECS_KEY] if s.scope is not None and s.path in documented
                 and s.operation_id not in CREATES]
        assert len(specs) >= 35
        calls = 0
        for org in ORGS:
            other = objects[ORGS[1 - ORGS.index(org)]]
            markers = [f"MARK-{other['org']}", other["key_id"], other["webhook_id"], other["delivery_id"],
                       other["call_id"], other["conversation_id"], other["live_call"]]
            for who, headers in principals[org].items():
                for spec in specs:
                    answers = []
                    for ids, ob in ((_ids(other), other), (GHOST, None)):
                        url = _path(spec.path, ids, ob)
                        body = _body(spec.operation_id, ob)
                        resp = await client.request(spec.method, url, headers=headers,
                                                    **({"json": body} if body is not None else {}))
                        text = await resp.text()
                        ptype = json.loads(text).get("type") if resp.content_type.endswith("json") and text else None
                        answers.append((resp.status, ptype))
                        calls += 1
                        sent = json.dumps(body or {}) + url
                        for m in markers:
                            if m not in sent:
                                assert m not in text, f"{org}/{who} {spec.method} {url}: {m} leaked"
                    where = f"{org}/{who} {spec.method} {spec.path}"
                    assert answers[0] == answers[1], f"{where}: {answers[0]} vs nowhere {answers[1]}"
                    if spec.path_params and answers[0][0] != 403:
                        assert answers[0][0] == 404, f"{where}: {answers[0]}"
        assert calls > 2 * 2 * 19 * 35
        for org in ORGS:
            assert await _snapshot(db, org, agents[org]) == before[org], org
    finally:
        await client.close()
        await db.close()


async def _snapshot(db: Database, org: str, agents: MemoryAgentSource) -> dict[str, Any]:
    scoped = db.for_org(org)
    return {
        "agents": {n: a[1] for n, a in agents.agents.items()},
        "functions": await scoped.functions().list(),
        "calls": (await scoped.calls().list())[0],
        "conversations": (await scoped.conversations().list())[0],
        "webhooks": [(e.id, e.url, e.secret, e.enabled, e.description) for e in await scoped.webhooks().list_endpoints()],
        "keys": [(k.id, k.name, k.revoked_at) for k in await scoped.api_keys().list() if k.name.startswith("MARK")],
    }


@pytest.mark.parametrize("backend", backend_params())
async def test_creating_with_another_orgs_names_makes_ones_own(backend, tmp_path, request):
    db = await open_test_store(backend, tmp_path, request)
    await db.orgs().create("acme")
    agents = {"default": MemoryAgentSource(), "acme": MemoryAgentSource()}
    app = web.Application()
    setup_api(app, ApiDeps(db=db, agents=agents["default"], calls=MemoryCallSource(), functions=MemoryFunctionSource(),
                           settings=GENEROUS, org_agents=lambda org: agents[org]))
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        await agents["default"].put("desk", agent_yaml("desk", "default"), "seed")
        await db.functions().put("lookup", "MARK-default", {"type": "object", "properties": {}},
                                 {"url": "https://example.com/a"}, "seed")
        raw, _ = await db.for_org("acme").api_keys(pepper=PEPPER).create("acme-admin", ["admin"], created_by="t")
        h = {"Authorization": f"Bearer {raw}"}
        resp = await client.post("/api/v1/agents", json={"yaml": agent_yaml("desk", "acme")}, headers=h)
        assert resp.status == 201, await resp.text()
        fn = {"name": "lookup", "description": "MARK-acme", "parameters": {"type": "object", "properties": {}},
              "http": {"url": "https://example.com/b"}}
        assert (await client.post("/api/v1/functions", json=fn, headers=h)).status == 201
        assert "MARK-default" in agents["default"].agents["desk"][1]
        assert (await db.functions().get("lookup"))["description"] == "MARK-default"  # type: ignore[index]
        listed = await (await client.get("/api/v1/api-keys", headers=h)).json()
        assert [k["org"] for k in listed["keys"]] == ["acme"]
        rows, _ = await db.for_org("acme").audit().list()
        assert [r["action"] for r in rows] == ["create_function", "create_agent"]
        assert (await db.audit().list())[0] == []
    finally:
        await client.close()
        await db.close()


@pytest.mark.parametrize("backend", backend_params())
async def test_the_transports_key_check_names_the_keys_org(backend, tmp_path, request):
    """WebRTC offers and websocket media ask KeyAuthority.check: it answers the key's
    organisation (whose agents the call may reach), None for a refused key."""
    db = await open_test_store(backend, tmp_path, request)
    try:
        await db.orgs().create("acme")
        app = web.Application()
        setup_api(app, ApiDeps(db=db, agents=MemoryAgentSource(), calls=MemoryCallSource(),
                               functions=MemoryFunctionSource(), settings=GENEROUS))
        from voxd.api.app import AppKeyCheck

        check = AppKeyCheck(app)
        theirs, _ = await db.for_org("acme").api_keys(pepper=PEPPER).create("k", ["calls:write"], created_by="t")
        ours, _ = await db.api_keys(pepper=PEPPER).create("k", ["calls:write"], created_by="t")
        assert await check.check(ours, "calls:write") == "default"
        assert await check.check(theirs, "calls:write") == "acme"
        reader, _ = await db.for_org("acme").api_keys(pepper=PEPPER).create("r", ["calls:read"], created_by="t")
        assert await check.check(reader, "calls:write") is None
        assert await check.check("vxk_" + "0" * 40, "calls:write") is None
    finally:
        await db.close()
