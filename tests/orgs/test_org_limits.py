"""Limits per organisation hold under a burst (the 429s counted), across all of its keys,
without touching another organisation; calls at once and per day refuse the next outbound
call; GET /api/v1/usage reports the use against them."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.api.conftest import PEPPER
from voxd.api.app import SERVICES_KEY
from voxd.core.calllog import CallRecord


async def _org_keys(api, org: str, n: int, scopes=("calls:read", "usage:read")) -> list[str]:
    if await api.db.orgs().get(org) is None:
        await api.db.orgs().create(org)
    keys = api.db.for_org(org).api_keys(pepper=PEPPER)
    return [(await keys.create(f"{org}-{i}", list(scopes), created_by="test"))[0] for i in range(n)]


async def test_a_burst_over_the_org_limit_gets_429s_across_its_keys(api):
    acme = await _org_keys(api, "acme", 3)
    other = await _org_keys(api, "other", 1)
    await api.db.orgs().set_limits("acme", {"api_requests_per_minute": 10})

    async def get(raw: str) -> tuple[int, dict[str, str]]:
        resp = await api.client.get("/api/v1/calls", headers=api.auth(raw))
        return resp.status, dict(resp.headers)

    answers = await asyncio.gather(*(get(acme[i % 3]) for i in range(25)))
    statuses = [s for s, _ in answers]
    assert statuses.count(200) == 10 and statuses.count(429) == 15
    refused = next(h for s, h in answers if s == 429)
    assert int(refused["Retry-After"]) >= 1
    assert any(h.lower().startswith("ratelimit") for h in refused)
    assert [(await get(other[0]))[0] for _ in range(12)] == [200] * 12  # the other org is untouched


async def test_limits_validate(api):
    await api.db.orgs().create("acme")
    for bad in ({"nope": 1}, {"api_requests_per_minute": 0}, {"calls_per_day": -1}, {"calls_concurrent": True}):
        with pytest.raises(ValueError):
            await api.db.orgs().set_limits("acme", bad)
    got = await api.db.orgs().set_limits("acme", {"calls_per_day": 5, "calls_concurrent": 2})
    assert got["limits"] == {"calls_concurrent": 2, "calls_per_day": 5}
    got = await api.db.orgs().set_limits("acme", {"calls_per_day": None})
    assert got["limits"] == {"calls_concurrent": 2}


async def test_calls_at_once_and_per_day_refuse_the_next_call(api):
    api.calls.can_dial = True
    headers = await api.admin()
    body = {"to": "sip:bob@127.0.0.1", "agent": "front-desk"}
    await api.db.orgs().set_limits("default", {"calls_concurrent": 1})
    api.app[SERVICES_KEY].org_limits._seen.clear()  # limits are cached for seconds: read them afresh
    api.calls.calls["c1"] = {"id": "c1"}
    resp = await api.client.post("/api/v1/calls", json=body, headers=headers)
    assert resp.status == 429 and "calls up" in (await resp.json())["detail"]
    api.calls.calls.clear()
    await api.db.orgs().set_limits("default", {"calls_concurrent": None, "calls_per_day": 2})
    api.app[SERVICES_KEY].org_limits._seen.clear()
    for i in range(2):
        await api.db.calls().save(CallRecord(id=f"today{i}", agent="front-desk", agent_version="1", transport="sip"))
    resp = await api.client.post("/api/v1/calls", json=body, headers=headers)
    assert resp.status == 429 and "for today" in (await resp.json())["detail"]
    assert int(resp.headers["Retry-After"]) <= 86400
    assert api.calls.dialed == []


async def test_usage_reports_requests_and_calls_of_the_org_only(api):
    (raw,) = await _org_keys(api, "acme", 1)
    await _org_keys(api, "other", 1)
    await api.db.orgs().set_limits("acme", {"calls_per_day": 100})
    now = time.time()
    rec = CallRecord(id="acme1", agent="desk", agent_version="1", transport="sip", started_at=now - 60)
    rec.answered_at, rec.ended_at = now - 50, now - 20
    await api.db.for_org("acme").calls().save(rec)
    await api.db.for_org("other").calls().save(CallRecord(id="other1", agent="desk", agent_version="1",
                                                          transport="sip"))
    for _ in range(3):
        assert (await api.client.get("/api/v1/calls", headers=api.auth(raw))).status == 200
    resp = await api.client.get("/api/v1/usage", headers=api.auth(raw))
    assert resp.status == 200, await resp.text()
    use = await resp.json()
    assert use["org"] == "acme" and use["limits"] == {"calls_per_day": 100}
    assert use["today"]["calls"] == {"count": 1, "answered": 1, "seconds": 30.0}
    assert use["today"]["api_requests"] >= 3 and use["month"]["api_requests"] >= use["today"]["api_requests"]


async def test_cli_sets_shows_and_audits_limits(tmp_path, capsys):
    import json

    from tests.orgs.test_audit import cli

    config = tmp_path / "voxd.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\nagents_dir: {tmp_path / 'agents'}\n")
    c = ["-c", str(config)]
    assert await cli(["orgs", *c, "create", "acme"]) == 0
    capsys.readouterr()
    assert await cli(["orgs", *c, "limits", "acme", "--api-requests-per-minute", "600", "--calls-per-day", "50"]) == 0
    assert json.loads(capsys.readouterr().out) == {"api_requests_per_minute": 600, "calls_per_day": 50}
    assert await cli(["orgs", *c, "limits", "acme", "--calls-per-day", "none"]) == 0
    assert json.loads(capsys.readouterr().out) == {"api_requests_per_minute": 600}
    assert await cli(["orgs", *c, "limits", "acme", "--api-requests-per-minute", "0"]) == 2
    assert await cli(["orgs", *c, "limits", "nope"]) == 2
    capsys.readouterr()
    assert await cli(["audit", *c, "export", "--org", "acme"]) == 0
    actions = [json.loads(x)["action"] for x in capsys.readouterr().out.splitlines() if x]
    assert actions.count("org_limits") == 2
