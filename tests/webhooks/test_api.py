"""/api/v1/webhooks through HTTP: CRUD, secret shown once, rotation, test sends, the
delivery log and replays, and the payload schemas in the OpenAPI document."""

from __future__ import annotations

import pytest

from tests.api.conftest import make_api
from voxd.webhooks.delivery import ALLOW_PRIVATE_ENV
from voxd.webhooks.events import EVENT_TYPES

from .receiver import Receiver

pytestmark = pytest.mark.timeout(30)
BASE = "/api/v1/webhooks"


@pytest.fixture
async def api(tmp_path):
    a, close = await make_api(tmp_path)
    yield a
    await close()


async def test_crud_test_send_log_and_replay(api, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    admin = await api.admin()
    refused = await api.client.post(BASE, json={"url": receiver.url}, headers=admin)
    assert refused.status == 422
    assert (await refused.json())["errors"][0]["field"] == "url"

    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "1")
    resp = await api.client.post(BASE, headers=admin, json={
        "url": receiver.url, "description": "crm", "events": ["call.ended"],
        "headers": {"X-Tenant": "acme"}, "retry_schedule_s": [0.1, 0.2]})
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    assert created["secret"].startswith("whsec_") and resp.headers["Cache-Control"] == "no-store"
    wid = created["id"]
    got = await (await api.client.get(f"{BASE}/{wid}", headers=admin)).json()
    assert "secret" not in got and got["header_names"] == ["X-Tenant"] and got["health"] == "healthy"
    listed = await (await api.client.get(BASE, headers=admin)).json()
    assert [w["id"] for w in listed["webhooks"]] == [wid]

    receiver.secrets = [created["secret"]]
    test = await api.client.post(f"{BASE}/{wid}/test", headers=admin)
    assert test.status == 200
    result = await test.json()
    assert result["status"] == "succeeded" and result["attempt"]["status_code"] == 200
    assert receiver.received[-1].payload["type"] == "webhook.test"
    assert receiver.received[-1].msg_id == result["message_id"]

    log = await (await api.client.get(f"{BASE}/{wid}/deliveries", headers=admin)).json()
    assert [d["trigger"] for d in log["deliveries"]] == ["test"]
    did = log["deliveries"][0]["id"]
    detail = await (await api.client.get(f"{BASE}/{wid}/deliveries/{did}", headers=admin)).json()
    assert detail["payload"]["type"] == "webhook.test" and len(detail["attempt_log"]) == 1

    replay = await api.client.post(f"{BASE}/{wid}/deliveries/{did}/replay", headers=admin)
    assert replay.status == 202
    queued = await replay.json()
    assert queued["message_id"] == result["message_id"] and queued["status"] == "pending"

    rot = await api.client.post(f"{BASE}/{wid}/rotate-secret", headers=admin, json={"overlap_s": 60})
    rotated = await rot.json()
    assert rotated["secret"] != created["secret"] and rotated["previous_secret_expires_at"] is not None
    receiver.secrets = [created["secret"], rotated["secret"]]
    await api.client.post(f"{BASE}/{wid}/test", headers=admin)
    assert receiver.received[-1].verified_by == [0, 1]

    patched = await api.client.patch(f"{BASE}/{wid}", headers=admin, json={"enabled": False, "agents": ["front"]})
    body = await patched.json()
    assert body["enabled"] is False and body["health"] == "disabled" and body["agents"] == ["front"]
    bad = await api.client.patch(f"{BASE}/{wid}", headers=admin, json={"headers": {"webhook-id": "x"}})
    assert bad.status == 422
    assert (await api.client.delete(f"{BASE}/{wid}", headers=admin)).status == 204
    assert (await api.client.get(f"{BASE}/{wid}", headers=admin)).status == 404


async def test_event_types_are_documented(api) -> None:
    admin = await api.admin()
    listed = await (await api.client.get(f"{BASE}/event-types", headers=admin)).json()
    assert {e["type"] for e in listed["event_types"]} == set(EVENT_TYPES)
    ended = next(e for e in listed["event_types"] if e["type"] == "call.ended")["example"]["data"]
    assert {"duration_s", "end_reason", "ended_by"} <= set(ended)
    doc = await (await api.client.get("/api/docs.json")).json()
    schemas = doc["components"]["schemas"]
    for name in ("CallEndedEvent", "ConversationUpdatedEvent", "ConversationEndedEvent",
                 "FunctionExecutedEvent", "WebhookTestEvent", "TurnInfo"):
        assert name in schemas, name
    assert doc["paths"][f"{BASE}/{{webhook_id}}/test"]["post"]["x-required-scope"] == "webhooks:write"
