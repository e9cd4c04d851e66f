"""Per-call variables over real SIP: an inbound lookup (a CRM server in this test, its
requests verified with standardwebhooks) before the 200 OK, heard by baresip and
transcribed back with the offline whisper engine; sipp measures how long a slow lookup
holds the answer and sees a rejection's status; POST /api/v1/calls variables reach the
greeting of an outbound call that a sipp UAS answers."""

from __future__ import annotations

import asyncio
import csv
import json
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from tests.interop.sipd import (
    baresip_available,
    baresip_call,
    call_records,
    free_port,
    make_wav,
    read_wav,
    running_daemon,
    voiced_spans,
)
from tests.interop.test_baresip import transcribe, words
from voxd.api.keys_cli import create_key
from voxd.app import Daemon
from voxd.core.signing import new_secret

pytestmark = [pytest.mark.interop, pytest.mark.skipif(not shutil.which("sipp"), reason="sipp not installed")]

SCENARIOS = Path(__file__).parent / "sipp"
RTP = (37200, 37300)
SECRET = new_secret()
SLOW_MS = 400


def agent(number: str, path: str | None, **lookup: Any) -> str:
    cfg: dict[str, Any] = {
        "greeting": "Hello {name}, your {item} is ready.", "voice": {"engine": "espeak"},
        "turn": {"detector": "silence"}, "variables": {"name": "there", "item": "order"}, "sip": {"numbers": [number]},
        "max_call_s": 4,
    }
    if path is not None:
        cfg["inbound_lookup"] = {"url": f"http://127.0.0.1:{{port}}/lookup/{path}", "timeout_ms": 2000, **lookup}
    return json.dumps(cfg)


@pytest.fixture
async def crm() -> AsyncIterator[tuple[int, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        Webhook(SECRET).verify(body, dict(request.headers))  # raises (500) if the signature is wrong
        what = request.match_info["what"]
        seen.append({"what": what, **json.loads(body)})
        if what == "slow":
            await asyncio.sleep(2.0)
        if what == "reject":
            return web.json_response({"reject": "busy"})
        return web.json_response({"variables": {"name": "Peter", "item": "blue bicycle"}})

    app = web.Application()
    app.router.add_post("/lookup/{what}", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port(socket.SOCK_STREAM)
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield port, seen
    await runner.cleanup()


@pytest.fixture
async def sipd(tmp_path: Path, crm: tuple[int, list[dict[str, Any]]],
               monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Daemon]:
    monkeypatch.setenv("VOXD_TEST_SIGNING", SECRET)
    port, _ = crm
    agents = {"known": agent("100", "known"), "slowdesk": agent("300", "slow", timeout_ms=SLOW_MS),
              "bouncer": agent("400", "reject"), "outbound": agent("500", None)}
    async with running_daemon(tmp_path, {k: v.replace("{port}", str(port)) for k, v in agents.items()}, RTP,
                              config={"egress": {"allow": [{"networks": ["127.0.0.1/32"], "uses": ["lookups"]}]},
                                      "tools": {"signing_secret_env": "VOXD_TEST_SIGNING"},
                                      "http": {"port": 0}}) as d:
        yield d


async def sipp(d: Daemon, tmp: Path, name: str, *extra: str, **subs: str) -> None:
    text = (SCENARIOS / name).read_text()
    for k, v in subs.items():
        text = text.replace(f"@{k}@", v)
    scen = tmp / name
    scen.write_text(text)
    proc = await asyncio.create_subprocess_exec(
        "sipp", f"127.0.0.1:{d.sip.port}", "-sf", str(scen), "-i", "127.0.0.1", "-p", str(free_port()),
        "-mi", "127.0.0.1", "-mp", str(free_port()), "-m", "1", "-timeout", "30", "-timeout_error", "-nostdin",
        "-trace_err", "-error_file", str(tmp / "sipp_errors.log"), *extra,
        cwd=tmp, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 45)
    errors = (tmp / "sipp_errors.log").read_text() if (tmp / "sipp_errors.log").exists() else ""
    assert proc.returncode == 0, f"sipp failed ({proc.returncode}): {err.decode()[-800:]} {errors[-1500:]}"


@pytest.mark.skipif(not baresip_available(), reason="baresip (baresip-core) not installed")
@pytest.mark.timeout(120)
async def test_lookup_variables_reach_the_greeting_baresip_hears(
        sipd: Daemon, crm: tuple[int, list[dict[str, Any]]], tmp_path: Path) -> None:
    caller = await make_wav(tmp_path / "caller.wav", ("silence", 5.0))
    b = await baresip_call(tmp_path / "baresip", caller, f"sip:100@127.0.0.1:{sipd.sip.port}", timeout_s=40)
    (rec,) = await call_records(sipd)
    _, dec = b.recordings()
    heard, rate = read_wav(dec)
    spans = voiced_spans(heard, rate)
    assert spans, "baresip heard nothing"
    text = await asyncio.to_thread(transcribe, dec, 0.0, spans[-1][1] + 0.3)
    print(f"baresip heard: {text!r}")
    # common words survive espeak, G.711 and whisper tiny better than a name does
    assert "bicycle" in words(text) and "order" not in words(text), text
    assert rec["turns"][0]["text"] == "Hello Peter, your blue bicycle is ready."
    assert rec["variables"] == {"name": "Peter", "item": "blue bicycle"}
    assert rec["metadata"]["inbound_lookup"]["result"] == "ok"
    _, seen = crm
    assert [(s["what"], s["called"], s["transport"], s["agent"]) for s in seen] == [("known", "100", "sip", "known")]
    assert seen[0]["caller"] == "caller"  # baresip's account user


def answer_ms(tmp: Path) -> float:
    """sipp's response time "answer" (INVITE sent -> 200 OK received), from -trace_rtt's file."""
    [rtt_file] = list(tmp.glob("*_rtt.csv"))
    rows = [r for r in csv.reader(rtt_file.read_text().splitlines(), delimiter=";") if r and r[0][:1].isdigit()]
    return float(rows[0][1])


async def test_a_slow_lookup_answers_with_defaults_within_timeout(sipd: Daemon, tmp_path: Path) -> None:
    await sipp(sipd, tmp_path, "lookup_call.xml", "-trace_rtt", "-rtt_freq", "1", USER="300")
    took = answer_ms(tmp_path)
    print(f"INVITE -> 200 OK with a lookup timing out after {SLOW_MS} ms: {took:.1f} ms")
    assert SLOW_MS <= took < SLOW_MS + 100, took
    (rec,) = await call_records(sipd)
    assert rec["metadata"]["inbound_lookup"]["result"] == "timeout"
    assert rec["variables"] == {"name": "there", "item": "order"}
    assert rec["turns"][0]["text"] == "Hello there, your order is ready."


async def test_a_rejected_call_gets_486_and_a_record(sipd: Daemon, tmp_path: Path) -> None:
    await sipp(sipd, tmp_path, "lookup_rejected.xml", USER="400", STATUS="486")
    (rec,) = await call_records(sipd)
    assert rec["agent"] == "bouncer" and rec["end_reason"] == "rejected" and rec["answered_at"] is None
    assert rec["metadata"]["rejected"] == "busy" and rec["metadata"]["inbound_lookup"]["reject"]["status"] == 486
    assert not rec["turns"] and sipd.sip.ports.in_use == 0


async def test_api_variables_reach_an_outbound_greeting(sipd: Daemon, tmp_path: Path) -> None:
    port = free_port()
    callee = await asyncio.create_subprocess_exec(
        "sipp", "-sn", "uas", "-i", "127.0.0.1", "-p", str(port), "-mi", "127.0.0.1", "-mp", str(free_port()),
        "-m", "1", "-nostdin", "-timeout", "30", "-timeout_error", cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        key = await create_key(sipd.db, "dialer", ["admin"])
        async with aiohttp.ClientSession() as http, http.post(
                f"http://127.0.0.1:{sipd.http_port}/api/v1/calls", headers={"Authorization": f"Bearer {key}"},
                json={"agent": "outbound", "to": f"sip:bob@127.0.0.1:{port}", "variables": {"name": "Zoe"}}) as r:
            assert r.status == 202, await r.text()
            call_id = (await r.json())["id"]
        assert await asyncio.wait_for(callee.wait(), 25) == 0  # sipp saw INVITE, ACK and our BYE
    finally:
        if callee.returncode is None:
            callee.kill()
            await callee.wait()
    (rec,) = await call_records(sipd)
    assert rec["id"] == call_id and rec["direction"] == "outbound"
    assert rec["turns"][0]["text"] == "Hello Zoe, your order is ready."
    assert rec["variables"] == {"name": "Zoe", "item": "order"}


async def test_a_cancel_during_the_lookup_leaves_nothing_behind(
        sipd: Daemon, crm: tuple[int, list[dict[str, Any]]], tmp_path: Path) -> None:
    await sipp(sipd, tmp_path, "lookup_cancel.xml", USER="300")  # CANCEL 150 ms in; the lookup gives up at 400
    await asyncio.sleep(SLOW_MS / 1000 + 0.3)  # past the lookup's timeout: nothing may answer or start now
    assert sipd.calls is not None and sipd.sip is not None
    await sipd.calls.flush()
    assert await call_records(sipd) == []
    assert not sipd.sip._looking_up and not sipd.sip.sip_calls and sipd.sip.ports.in_use == 0
    _, seen = crm
    assert [s["what"] for s in seen] == ["slow"]
