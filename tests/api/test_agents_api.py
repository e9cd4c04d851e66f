from __future__ import annotations

from .conftest import AGENT_YAML


async def test_create_get_update_delete_with_history(api):
    h = await api.admin()
    resp = await api.client.post("/api/v1/agents", headers=h, json={"yaml": AGENT_YAML})
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    assert created["name"] == "front-desk" and created["version"] == "1"
    assert created["yaml"] == AGENT_YAML  # text, comments included, is the source of truth
    assert created["config"]["turn"]["min_silence_ms"] == 250
    assert resp.headers["Location"] == "/api/v1/agents/front-desk"

    resp = await api.client.post("/api/v1/agents", headers=h, json={"yaml": AGENT_YAML})
    assert resp.status == 409

    listed = await (await api.client.get("/api/v1/agents", headers=h)).json()
    assert [a["name"] for a in listed["agents"]] == ["front-desk"]

    updated_yaml = AGENT_YAML.replace("250", "300")
    resp = await api.client.put("/api/v1/agents/front-desk", headers=h,
                                json={"yaml": updated_yaml})
    assert resp.status == 200
    assert (await resp.json())["version"] == "2"

    resp = await api.client.put("/api/v1/agents/other", headers=h, json={"yaml": updated_yaml})
    assert resp.status == 404
    api.agents.agents["other"] = api.agents.agents["front-desk"]
    resp = await api.client.put("/api/v1/agents/other", headers=h, json={"yaml": updated_yaml})
    assert resp.status == 422 and "name" in (await resp.json())["detail"]

    assert (await api.client.delete("/api/v1/agents/front-desk", headers=h)).status == 204
    assert (await api.client.get("/api/v1/agents/front-desk", headers=h)).status == 404
    assert (await api.client.delete("/api/v1/agents/front-desk", headers=h)).status == 404

    history = await (await api.client.get("/api/v1/agents/front-desk/history",
                                          headers=h)).json()
    actions = [(c["action"], c["version"]) for c in history["changes"]]
    assert actions == [("delete", "2"), ("update", "2"), ("create", "1")]
    assert {c["actor"] for c in history["changes"]} == {api.agents.writes[0][1]}
    assert api.agents.writes[0][1].startswith("key_")


async def test_invalid_yaml_names_field_and_line(api):
    h = await api.admin()
    bad = AGENT_YAML.replace("min_silence_ms: 250", "min_silence_ms: 5\n  loudness: 11")
    resp = await api.client.post("/api/v1/agents", headers=h, json={"yaml": bad})
    assert resp.status == 422
    assert resp.content_type == "application/problem+json"
    problem = await resp.json()
    assert problem["type"] == "urn:voxd:problem:invalid-agent"
    fields = {e["field"]: e["line"] for e in problem["errors"]}
    assert fields == {"turn.min_silence_ms": 6, "turn.loudness": 7}
    assert "turn.min_silence_ms" in problem["detail"]
    assert api.agents.agents == {}

    resp = await api.client.post("/api/v1/agents/_validate", headers=h, json={"yaml": bad})
    assert resp.status == 200
    result = await resp.json()
    assert result["valid"] is False and len(result["errors"]) == 2
    resp = await api.client.post("/api/v1/agents/_validate", headers=h,
                                 json={"yaml": AGENT_YAML})
    assert await resp.json() == {"valid": True, "errors": []}
    resp = await api.client.post("/api/v1/agents/_validate", headers=h,
                                 json={"yaml": "name: [unclosed"})
    assert (await resp.json())["errors"][0]["field"] == "(yaml)"


async def test_request_validation(api):
    h = await api.admin()
    resp = await api.client.post("/api/v1/agents", headers=h,
                                 json={"yaml": AGENT_YAML, "extra": 1})
    problem = await resp.json()
    assert resp.status == 422 and problem["errors"][0]["field"] == "extra"
    assert "body field 'extra'" in problem["detail"]
    resp = await api.client.post("/api/v1/agents", headers=h, json={})
    assert resp.status == 422 and "'yaml'" in (await resp.json())["detail"]
    resp = await api.client.post("/api/v1/agents", headers={**h, "Content-Type": "text/yaml"},
                                 data=AGENT_YAML)
    assert resp.status == 415
    resp = await api.client.post("/api/v1/agents",
                                 headers={**h, "Content-Type": "application/json"},
                                 data="{not json")
    assert resp.status == 400
    assert (await resp.json())["type"] == "urn:voxd:problem:malformed-request"
    big = {"yaml": "name: x\n" + "#" * (300 * 1024)}
    resp = await api.client.post("/api/v1/agents", headers=h, json=big)
    assert resp.status == 413
    assert (await resp.json())["type"] == "urn:voxd:problem:payload-too-large"


async def test_unknown_route_and_method_are_problems(api):
    h = await api.admin()
    resp = await api.client.get("/api/v1/nothing", headers=h)
    assert resp.status == 404 and resp.content_type == "application/problem+json"
    resp = await api.client.patch("/api/v1/agents", headers=h)
    assert resp.status == 405 and "GET" in resp.headers["Allow"]
    assert (await resp.json())["type"] == "urn:voxd:problem:method-not-allowed"
