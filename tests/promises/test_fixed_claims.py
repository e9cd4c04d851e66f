"""Issue 16: each claim the README and config/voxd.yaml made that did not hold, now tested."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from dataclasses import replace
from pathlib import Path

import icalendar
import pytest

from tests.api.conftest import GENEROUS, make_api
from voxd.api.app import all_specs
from voxd.api.deps import RateSpec
from voxd.call.ports import NullControl
from voxd.call.toolctx import tools_for_leg
from voxd.config import VoxdConfig
from voxd.harness import standalone_calls
from voxd.net.serializers.plain import PlainSerializer
from voxd.net.serializers.twilio import TwilioSerializer
from voxd.net.ws_leg import WsWire
from voxd.store.calendar import CalendarRepository
from voxd.tools.library import ToolLibrary

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()
CONFIG = (ROOT / "config" / "voxd.yaml").read_text()


async def test_calendar_ics_serves_the_bookings(tmp_path):
    assert "127.0.0.1:8080/api/v1/calendar.ics" in CONFIG
    api, close = await make_api(tmp_path)
    try:
        await CalendarRepository(api.db).add({
            "uid": "abc@voxd", "agent": "desk", "call_id": "call_x1", "summary": "Check-up",
            "description": "", "location": "Room 2", "attendee": "pat@example.com",
            "starts_at": "2026-03-14T15:00:00+00:00", "ends_at": "2026-03-14T15:30:00+00:00"})
        assert (await api.client.get("/api/v1/calendar.ics")).status == 401
        raw = await api.key("calls:read")
        resp = await api.client.get("/api/v1/calendar.ics", headers=api.auth(raw))
        assert resp.status == 200 and resp.content_type == "text/calendar"
        cal = icalendar.Calendar.from_ical(await resp.text())
        (ev,) = cal.walk("VEVENT")
        assert str(ev["summary"]) == "Check-up" and str(ev["uid"]) == "abc@voxd"
    finally:
        await close()


ACTIONS = {("POST", "/api/v1/calls"), ("POST", "/api/v1/functions/{name}/execute"),
           ("POST", "/api/v1/webhooks/{webhook_id}/test"),
           ("POST", "/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/replay")}


def test_actions_use_the_execute_class():
    assert "execute_per_minute: 60        # and actions (outbound calls, function test runs, webhook tests and replays" in CONFIG
    by_route = {(s.method, s.path): s.limit_class for s in all_specs()}
    for route in ACTIONS:
        assert by_route[route] == "execute", route
    assert {r for r, c in by_route.items() if c == "execute"} >= ACTIONS


async def test_dialling_is_limited_by_the_execute_class(tmp_path):
    settings = replace(GENEROUS, class_rates={"read": RateSpec(1000), "write": RateSpec(1000),
                                              "execute": RateSpec(1, 60)})
    api, close = await make_api(tmp_path, settings)
    try:
        api.calls.can_dial = True
        await api.agents.put("desk", "name: desk\ngreeting: Hi.\n", "test")
        h = await api.admin()
        first = await api.client.post("/api/v1/calls", json={"agent": "desk", "to": "sip:bob@127.0.0.1"}, headers=h)
        assert first.status == 202, await first.text()
        second = await api.client.post("/api/v1/calls", json={"agent": "desk", "to": "sip:bob@127.0.0.1"}, headers=h)
        assert second.status == 429 and "'execute'" in (await second.json())["detail"]
    finally:
        await close()


def test_transfer_and_dtmf_are_offered_only_where_the_leg_can_do_them():
    names = ["get_current_time", "transfer_call", "send_dtmf", "end_call"]
    assert tools_for_leg(names, "sip") == names
    assert tools_for_leg(names, "websocket") == names
    assert tools_for_leg(names, "webrtc") == names
    assert tools_for_leg(names, "twilio") == ["get_current_time", "end_call"]
    flat = " ".join(README.split())
    assert "is not offered to the LLM otherwise" in flat and "on Twilio calls `send_dtmf` is never offered" in flat


async def test_websocket_transfer_is_an_event_for_the_client():
    wire = WsWire(None, PlainSerializer(16000))  # type: ignore[arg-type]
    assert wire.cannot_do == frozenset()
    assert await wire.transfer("sip:desk@pbx.example.com") is True
    await wire.send_dtmf("12")
    sent = [json.loads(wire._outbox.get_nowait()) for _ in range(2)]  # type: ignore[arg-type]
    assert sent == [{"type": "transfer", "target": "sip:desk@pbx.example.com"},
                    {"type": "dtmf_out", "digits": "12"}]
    assert '{"type":"transfer","target":…}' in README
    # a Twilio stream without the REST API can do neither (not offered to the LLM)
    assert WsWire(None, TwilioSerializer()).cannot_do == {"transfer_call", "send_dtmf"}  # type: ignore[arg-type]


def test_readme_does_not_call_whisper_streaming():
    intro = README.split("## Quick start")[0]
    assert "streaming pipeline" not in intro and "streaming speech-to-text" not in intro
    assert "decodes a turn once it has ended" in " ".join(intro.split())


def test_readme_functions_section_names_every_library_function():
    section = README.split("### Functions")[1].split("###")[0]
    for tool in ToolLibrary(embedder=None).base.names():
        assert f"`{tool}`" in section, tool


def test_dial_and_call_see_the_library_functions(tmp_path):
    calls, library = standalone_calls(VoxdConfig(), tmp_path)
    from voxd.agents.loader import parse_agent

    agent = parse_agent("name: a\ngreeting: Hi.\ntools: [get_weather, send_email, search_knowledge_base, create_calendar_event]\n")
    assert calls.tools_for is not None
    reg = calls.tools_for(agent)
    for name in ("get_weather", "send_email", "search_knowledge_base", "create_calendar_event", "transfer_call"):
        assert reg.get(name) is not None, name
    assert library.base.get("get_weather") is not None


def _check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "voxd.cli", "check", *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


def test_voxd_check_takes_files_and_folders(tmp_path):
    good = _check("agents/")
    assert good.returncode == 0, good.stderr
    assert "agent=receptionist" in good.stdout and "agent=minimal" in good.stdout
    (tmp_path / "bad.yaml").write_text("greeting: Hi.\nturn: {min_silence_ms: 1}\n")
    one = _check("agents/minimal.yaml", str(tmp_path / "bad.yaml"))
    assert one.returncode == 1 and "agent=minimal" in one.stdout and "bad.yaml:2: turn.min_silence_ms" in one.stderr
    missing = _check(str(tmp_path / "nope"))
    assert missing.returncode == 1 and "no such file or folder" in missing.stderr


def test_package_data_globs_name_files_that_exist():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for package, globs in data.items():
        folder = ROOT / package.replace(".", "/")
        for pattern in globs:
            assert list(folder.glob(pattern)), f"{package}: {pattern} matches nothing"


@pytest.mark.parametrize("transport", ["twilio"])
def test_twilio_session_tools_leave_out_transfer(transport):
    from voxd.agents.loader import parse_agent
    from voxd.call.manager import CallManager
    from voxd.tools.builtins import default_registry

    agent = parse_agent("name: a\ngreeting: Hi.\nstt: {engine: fake}\nvoice: {engine: fake}\n"
                        "tools: [get_current_time, transfer_call, send_dtmf]\n")
    control = NullControl()
    control.transport_name = transport
    session = CallManager(default_registry()).create(agent, control)
    assert [s.name for s in session.tools.specs()] == ["get_current_time"]


async def test_conversation_messages_are_actions_and_scoped(tmp_path):
    """Through the API's stand-alone conversation source (no daemon): messages take the
    execute class, and a key can hand out conversation scopes only if it holds them."""
    settings = replace(GENEROUS, class_rates={"read": RateSpec(1000), "write": RateSpec(1000),
                                              "execute": RateSpec(1, 60)})
    api, close = await make_api(tmp_path, settings)
    try:
        await api.agents.put("desk", "name: desk\ngreeting: Hi.\n", "test")
        raw = await api.key("conversations:write", "conversations:read", "keys:admin")
        h = api.auth(raw)
        started = await api.client.post("/api/v1/conversations", json={"agent": "desk"}, headers=h)
        assert started.status == 201, await started.text()
        cid = (await started.json())["id"]
        first = await api.client.post(f"/api/v1/conversations/{cid}/messages", json={"text": "hello"}, headers=h)
        assert first.status == 200, await first.text()
        second = await api.client.post(f"/api/v1/conversations/{cid}/messages", json={"text": "hello"}, headers=h)
        assert second.status == 429 and "'execute'" in (await second.json())["detail"]
        # key subsets: this key may mint a conversations:read key, never a calls:read one
        ok = await api.client.post("/api/v1/api-keys", json={"name": "widget", "scopes": ["conversations:read"]}, headers=h)
        assert ok.status == 201, await ok.text()
        wider = await api.client.post("/api/v1/api-keys", json={"name": "w", "scopes": ["calls:read"]}, headers=h)
        assert wider.status in (403, 422)
        reader = api.auth((await ok.json())["key"])
        assert (await api.client.get(f"/api/v1/conversations/{cid}", headers=reader)).status == 200
        assert (await api.client.delete(f"/api/v1/conversations/{cid}", headers=reader)).status == 403
    finally:
        await close()
