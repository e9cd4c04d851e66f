"""Live calls of organisations other than the default: agents in ``agents/<org>/``, a SIP
call to an organisation's number answered by that organisation's agent, its call record
in that organisation's API only (404 for the others) and its webhooks delivered only to
that organisation's endpoints. Through the real daemon, its SIP socket and its HTTP API."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.daemons import start_daemon
from tests.interop.sipd import free_udp_tcp_port
from tests.net.test_sip_srtp import bye
from tests.security.test_media_sources import ack, recv_until, udp
from tests.webhooks.receiver import Receiver
from voxd.api.keys_cli import create_key
from voxd.app import Daemon
from voxd.call.events import ToolExecuted
from voxd.core.calllog import CallRecord, ToolCallRecord
from voxd.net.leg import Refused

ORGS = ("default", "acme", "globex")


def agent(greeting: str, *numbers: str, name: str | None = None, record: bool = False) -> str:
    return json.dumps({**({"name": name} if name else {}), "greeting": greeting,
                       "stt": {"engine": "fake", "options": {"transcripts": []}},
                       "llm": {"engine": "dialog"}, "voice": {"engine": "fake"},
                       "sip": {"numbers": list(numbers)}, "recording": {"enabled": record}})


def invite(sip_port: int, sip_sock: socket.socket, number: str, rtp_port: int, call_id: str) -> bytes:
    me = sip_sock.getsockname()
    sdp = (f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           f"m=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n").encode()
    head = (f"INVITE sip:{number}@127.0.0.1:{sip_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {me[0]}:{me[1]};branch=z9hG4bK{call_id};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:caller@127.0.0.1>;tag=c1\r\nTo: <sip:{number}@127.0.0.1>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{me[0]}:{me[1]}>\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n")
    return head.encode() + sdp


async def sip_call(d: Daemon, number: str, call_id: str, seconds: float = 0.6,
                   during: Callable[[str], Awaitable[None]] | None = None) -> str:
    """Call ``number`` over the daemon's SIP socket, talk for ``seconds`` (then ``during``,
    given the call's id), hang up; the voxd call id of the call."""
    assert d.sip is not None
    port = d.sip.port
    sip, rtp = udp("127.0.0.1"), udp("127.0.0.1")
    try:
        sip.sendto(invite(port, sip, number, rtp.getsockname()[1], call_id), ("127.0.0.1", port))
        ok = await recv_until(sip, lambda b: b.startswith(b"SIP/2.0 200"))
        sip.sendto(ack(port, sip, ok, call_id), ("127.0.0.1", port))
        (call,) = [c for c in d.sip.sip_calls.values() if c.session is not None]
        assert call.session is not None
        voxd_id = call.session.record.id
        await asyncio.sleep(seconds)
        if during is not None:
            await during(voxd_id)
        sip.sendto(bye(port, sip, ok, call_id), ("127.0.0.1", port))
        await recv_until(sip, lambda b: b.startswith(b"SIP/2.0 200") and b"BYE" in b)
    finally:
        sip.close()
        rtp.close()
    assert d.calls is not None
    for _ in range(100):
        if voxd_id not in d.calls.active:
            break
        await asyncio.sleep(0.02)
    await d.calls.flush()
    return voxd_id


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    for org, name, text in (("acme", "sales", agent("Acme sales, hello.", "+15550100", record=True)),
                            ("globex", "front", agent("Globex front desk.", "+15550200"))):
        (tmp_path / "agents" / org).mkdir(parents=True)
        (tmp_path / "agents" / org / f"{name}.yaml").write_text(text)
    d = await start_daemon(tmp_path, {"desk": agent("The default desk.", "+15550000")}, default_agent="desk",
                           drain_timeout_s=0, reload_interval_s=0.2,
                           sip={"port": free_udp_tcp_port(), "allow_any": True,
                                "rtp_port_min": 33600, "rtp_port_max": 33700},
                           webhooks={"allow_private_destinations": True, "retry_schedule_s": [0.2]})
    assert d.db is not None
    for org in ORGS[1:]:
        await d.db.orgs().create(org)
    yield d
    await d.stop()


async def keys(d: Daemon) -> dict[str, dict[str, str]]:
    assert d.db is not None
    return {org: {"Authorization": f"Bearer {await create_key(d.db.for_org(org), org, ['admin'])}"}
            for org in ORGS}


async def test_a_sip_call_to_acmes_number_is_acmes_alone(daemon: Daemon) -> None:
    url = f"http://127.0.0.1:{daemon.http_port}/api/v1"
    auth = await keys(daemon)
    receivers = {org: Receiver() for org in ORGS}
    for r in receivers.values():
        await r.start()
    try:
        async with aiohttp.ClientSession() as http:
            for org, r in receivers.items():
                async with http.post(url + "/webhooks", headers=auth[org],
                                     json={"url": r.url, "events": ["call.started", "call.ended",
                                                                  "recording.ready"]}) as resp:
                    assert resp.status == 201, await resp.text()
                    r.secrets.append((await resp.json())["secret"])
            async def live(call_id: str) -> None:  # in progress: acme's, nobody else's to see or end
                for org, want in (("acme", [call_id]), ("default", []), ("globex", [])):
                    async with http.get(url + "/calls/active", headers=auth[org]) as resp:
                        assert [c["id"] for c in (await resp.json())["calls"]] == want, org
                    if org != "acme":
                        async with http.post(url + f"/calls/{call_id}/end", headers=auth[org]) as resp:
                            assert resp.status == 404, (org, await resp.text())

            call_id = await sip_call(daemon, "+15550100", "acme-1", during=live)
            # the call ran on acme's agent, and is acme's record
            async with http.get(url + f"/calls/{call_id}", headers=auth["acme"]) as resp:
                assert resp.status == 200, await resp.text()
                call = await resp.json()
            assert call["agent"] == "sales" and call["turns"][0]["text"] == "Acme sales, hello."
            assert call["to_uri"].startswith("sip:+15550100@")
            async with http.get(url + "/calls", headers=auth["acme"]) as resp:
                assert [c["id"] for c in (await resp.json())["calls"]] == [call_id]
            assert daemon.recordings is not None
            await daemon.recordings.flush()
            async with http.get(url + f"/calls/{call_id}/recording", headers=auth["acme"]) as resp:
                assert resp.status == 200 and (await resp.read())[:4] == b"RIFF"
            async with http.get(url + f"/calls/{call_id}", headers=auth["acme"]) as resp:
                assert (await resp.json())["metadata"]["recording"]["status"] == "ready"
            for other in ("default", "globex"):
                async with http.get(url + f"/calls/{call_id}", headers=auth[other]) as resp:
                    assert resp.status == 404, (other, await resp.text())
                async with http.get(url + f"/calls/{call_id}/recording", headers=auth[other]) as resp:
                    assert resp.status == 404, (other, await resp.text())
                async with http.get(url + "/calls", headers=auth[other]) as resp:
                    assert (await resp.json())["calls"] == []
            # webhooks: acme's endpoint has the call's events; nobody else has anything
            await receivers["acme"].wait_for(lambda r: len(r.accepted) >= 3)
            got = receivers["acme"].accepted.values()
            assert sorted(p["type"] for p in got) == ["call.ended", "call.started", "recording.ready"]
            assert {p["data"]["id"] if "id" in p["data"] else p["data"]["call_id"] for p in got} == {call_id}
            # a default-organisation call after it: its events reach the default endpoint only,
            # so by the time they have, anything misrouted of acme's would have arrived too
            default_id = await sip_call(daemon, "+15550000", "default-1", seconds=0.2)
            await receivers["default"].wait_for(lambda r: len(r.accepted) >= 2)
            assert {p["data"].get("id", p["data"].get("call_id")) for p in receivers["default"].accepted.values()} \
                == {default_id}
            assert receivers["globex"].received == []
            assert len(receivers["acme"].received) == 3
            async with http.get(url + f"/calls/{default_id}", headers=auth["acme"]) as resp:
                assert resp.status == 404
    finally:
        for r in receivers.values():
            await r.stop()


async def test_the_api_lists_and_writes_only_the_callers_agents(daemon: Daemon, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{daemon.http_port}/api/v1"
    auth = await keys(daemon)
    async with aiohttp.ClientSession() as http:
        for org, names in (("default", ["desk"]), ("acme", ["sales"]), ("globex", ["front"])):
            async with http.get(url + "/agents", headers=auth[org]) as resp:
                assert [a["name"] for a in (await resp.json())["agents"]] == names, org
        async with http.get(url + "/agents/sales", headers=auth["globex"]) as resp:
            assert resp.status == 404
        async with http.get(url + "/agents/sales", headers=auth["default"]) as resp:
            assert resp.status == 404
        receivers = {org: Receiver() for org in ("default", "acme")}
        for org, r in receivers.items():
            await r.start()
            async with http.post(url + "/webhooks", headers=auth[org],
                                 json={"url": r.url, "events": ["agent.deployed"]}) as resp:
                r.secrets.append((await resp.json())["secret"])
        # acme writes a second agent: into agents/acme/, and its number answers at once
        async with http.post(url + "/agents", headers=auth["acme"],
                             json={"yaml": agent("Acme support.", "+15550101", name="support")}) as resp:
            assert resp.status == 201, await resp.text()
        try:  # announced to acme's endpoint only
            await receivers["acme"].wait_for(lambda r: len(r.accepted) >= 1)
            (event,) = receivers["acme"].accepted.values()
            assert event["type"] == "agent.deployed" and event["data"]["agent"] == "support"
            await asyncio.sleep(0.5)
            assert receivers["default"].received == []
        finally:
            for r in receivers.values():
                await r.stop()
        assert (tmp_path / "agents" / "acme" / "support.yaml").is_file()
        assert not (tmp_path / "agents" / "support.yaml").exists()
        call_id = await sip_call(daemon, "+15550101", "acme-2", seconds=0.2)
        async with http.get(url + f"/calls/{call_id}", headers=auth["acme"]) as resp:
            assert (await resp.json())["agent"] == "support"
        # a number of another organisation is refused, naming the field
        async with http.post(url + "/agents", headers=auth["acme"],
                             json={"yaml": agent("Mine now.", "+15550200", name="grab")}) as resp:
            body = await resp.text()
            assert resp.status in (400, 422), body
            assert "sip.numbers" in body and "globex" in body
        assert not (tmp_path / "agents" / "acme" / "grab.yaml").exists()


def test_a_registrations_agent_may_name_another_organisations(daemon: Daemon) -> None:
    assert daemon.sip is not None
    env = daemon.sip.env
    got = env.agent("acme/sales", qualified=True)  # sip.registrations[].agent: acme/sales
    assert (got.org, got.name) == ("acme", "sales")
    with pytest.raises(Refused):
        env.agent("acme/front", qualified=True)  # globex's agent is not acme's
    with pytest.raises(Refused):
        env.agent("acme/sales")  # a name a caller gives (websocket ?agent=) stays the default's


async def test_org_folders_are_reloaded_live(daemon: Daemon, tmp_path: Path) -> None:
    fleet = daemon.agent_orgs
    # a new organisation's folder is picked up by the watcher, its number routed
    (tmp_path / "agents" / "initech").mkdir()
    (tmp_path / "agents" / "initech" / "desk.yaml").write_text(agent("Initech.", "+15550300"))

    async def until(check: Any) -> None:
        async with asyncio.timeout(5):
            while not check():  # noqa: ASYNC110 - the daemon's watcher polls the folder
                await asyncio.sleep(0.05)

    await until(lambda: fleet.get("initech", "desk") is not None)
    routed = daemon.agents.for_number("+15550300")
    assert routed is not None and (routed.org, routed.name) == ("initech", "desk")
    # same-named agents of two organisations are two agents
    assert fleet.get("default", "desk") is not None and fleet.get("default", "desk") is not routed
    # an edit is live; a file claiming another organisation's number is refused, the claim stays
    (tmp_path / "agents" / "initech" / "desk.yaml").write_text(agent("Initech, edited.", "+15550300", "+15550100"))
    await until(lambda: tmp_path / "agents" / "initech" / "desk.yaml" in fleet.ensure("initech").errors)
    (err,) = fleet.ensure("initech").errors[tmp_path / "agents" / "initech" / "desk.yaml"]
    assert err.field == "sip.numbers" and "'+15550100'" in err.message and "'acme'" in err.message
    got = daemon.agents.for_number("+15550100")
    assert got is not None and (got.org, got.name) == ("acme", "sales")
    assert fleet.get("initech", "desk").config.greeting == "Initech."  # type: ignore[union-attr]
    # once acme lets the number go, the waiting file loads on a later poll without being touched
    (tmp_path / "agents" / "acme" / "sales.yaml").write_text(agent("Acme sales, hello."))
    await until(lambda: (fleet.get("initech", "desk") or routed).config.greeting == "Initech, edited.")
    got = daemon.agents.for_number("+15550100")
    assert got is not None and got.org == "initech"
    assert daemon.db is not None  # the edit on disk is in acme's audit log, and only there
    async with asyncio.timeout(5):  # written by a task of the reload
        while not (rows := (await daemon.db.for_org("acme").audit().list(action="agent_file_updated"))[0]):  # noqa: ASYNC110 - another task writes it
            await asyncio.sleep(0.05)
    assert [r["target"] for r in rows] == ["agents/acme/sales"]
    assert (await daemon.db.audit().list(action="agent_file_updated"))[0] == []
    # removing the folder removes its agents; an unknown number goes to the default agent
    for p in (tmp_path / "agents" / "initech").iterdir():
        p.unlink()
    (tmp_path / "agents" / "initech").rmdir()
    await until(lambda: fleet.get("initech", "desk") is None)
    fallback = daemon.agents.for_number("+15550300")
    assert fallback is not None and (fallback.org, fallback.name) == ("default", "desk")


def test_voxd_check_reads_org_folders_and_refuses_a_number_two_orgs_claim(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "desk.yaml").write_text(agent("Default.", "+15550000"))
    (tmp_path / "acme").mkdir()
    (tmp_path / "acme" / "sales.yaml").write_text(agent("Acme.", "+15550100"))
    (tmp_path / "tests").mkdir()  # `voxd test` suites, not an organisation's agents
    (tmp_path / "tests" / "desk.yaml").write_text("agent: desk\nscenarios: []\n")

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "voxd.cli", "check", "--agents", str(tmp_path)],
                              capture_output=True, text=True, timeout=60)

    r = run()
    assert r.returncode == 0, r.stderr
    assert "agent=desk version" in r.stdout and "agent=sales org=acme" in r.stdout
    (tmp_path / "acme" / "grab.yaml").write_text(agent("Acme too.", "+15550000"))
    r = run()
    assert r.returncode == 1
    assert "grab.yaml: sip.numbers: number '+15550000' is claimed by organisation 'default'" in r.stderr


async def test_an_organisations_calls_run_and_log_its_own_functions(daemon: Daemon) -> None:
    assert daemon.db is not None and daemon.calls is not None and daemon.calls.tools_for is not None
    http = {"url": "https://example.com/hook"}
    for org, names in (("default", ["lookup"]), ("acme", ["lookup", "acme_only"])):
        for name in names:
            await daemon.db.for_org(org).functions().put(name, f"MARK-{org}", {"type": "object"}, http, "t")
    await daemon.tool_library.refresh_stored()

    def stored(org: str, name: str) -> dict[str, str]:
        agent = daemon.agent_orgs.get(org, name)
        assert agent is not None
        tools = daemon.calls.tools_for(agent).tools  # type: ignore[misc]
        return {n: t.description for n, t in tools.items() if not t.builtin}

    assert stored("default", "desk") == {"lookup": "MARK-default"}
    assert stored("acme", "sales") == {"lookup": "MARK-acme", "acme_only": "MARK-acme"}
    assert stored("globex", "front") == {}
    # what a call of acme's agent ran is in acme's execution log, not the default's
    record = CallRecord(id="call_acme_fn", agent="sales", agent_version="1", transport="sip", org="acme")
    daemon.function_log(ToolExecuted(record, ToolCallRecord(name="lookup", arguments={"q": 1}, result={"ok": True},
                                                            started_at=1.0, duration_ms=2.0)))
    await daemon.function_log.flush()
    assert [r["call_id"] for r in await daemon.db.for_org("acme").executions().for_call("call_acme_fn")] == \
        ["call_acme_fn"]
    assert await daemon.db.executions().for_call("call_acme_fn") == []
