"""Twilio Media Streams against streamdouble (PyPI), a third-party platform simulator.

streamdouble runs as its own process (the CLI a CI job would use); the daemon runs
in this process on 127.0.0.1 with fake-engine agents, so the assertions are about
the transport: frames, pacing, marks, clear, call records.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.daemons import start_daemon, talker_agent, time_agent
from voxd.app import Daemon
from voxd.store.calls import CallRepository

pytestmark = pytest.mark.interop

SPEECH = Path(__file__).resolve().parents[1] / "data" / "speech"
STREAMDOUBLE = shutil.which("streamdouble") or str(Path(sys.executable).parent / "streamdouble")

@pytest.fixture
async def daemon(tmp_path: Path) -> Any:
    if not shutil.which(STREAMDOUBLE):
        pytest.skip("streamdouble is not installed (pip install streamdouble)")
    # streamdouble plays Twilio's media servers, all from loopback without a token: let
    # the load test's 20 streams past the anonymous caps
    d = await start_daemon(tmp_path, {"fakey": time_agent(500), "talker": talker_agent(500)},
                           calls={"unauthenticated_max_calls": 50, "unauthenticated_per_source": 50})
    yield d
    await d.stop()


async def streamdouble(*args: str, within_s: float = 60.0) -> tuple[int, dict[str, Any], str]:
    proc = await asyncio.create_subprocess_exec(
        STREAMDOUBLE, *args, "--json", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), within_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    try:
        report = json.loads(out)
    except json.JSONDecodeError:
        report = {}
    return proc.returncode, report, out.decode() + err.decode()


async def records(daemon: Daemon, n: int) -> list[dict[str, Any]]:
    assert daemon.calls is not None
    for _ in range(200):
        if not daemon.calls.active:
            break
        await asyncio.sleep(0.025)
    await daemon.calls.flush()
    calls, _ = await CallRepository(daemon.db).list(limit=n + 5)
    full = [await CallRepository(daemon.db).get(c["id"]) for c in calls]
    return [c for c in full if c is not None]


async def test_call_with_speech_digits_and_hangup(daemon: Daemon, tmp_path: Path) -> None:
    scenario = tmp_path / "call.yaml"
    scenario.write_text(json.dumps({"name": "speech, digits, hang-up", "steps": [
        {"wait_for": {"event": "quiet", "timeout": 10}},
        {"say": str(SPEECH / "flite-slt" / "what_time.8k.wav")},
        {"wait": 2.0},  # `wait_for: audio` is already satisfied by the greeting
        {"wait_for": {"event": "quiet", "timeout": 10}},
        {"dtmf": "42#"},
        {"wait": 1.0},
        {"expect": "mark"},
        {"expect": "no_violations"},
    ]}))
    url = f"ws://127.0.0.1:{daemon.http_port}/media/twilio"
    code, _, text = await streamdouble("scenario", str(scenario), url, "--param", "agent=fakey",
                                            "--out", str(tmp_path / "reply.wav"))
    assert code == 0, text
    [rec] = await records(daemon, 1)
    assert rec["transport"] == "twilio" and rec["agent"] == "fakey"
    assert rec["end_reason"] == "caller_hangup"  # the scenario's end sends `stop`
    turns = [(t["speaker"], t["text"]) for t in rec["turns"]]
    assert turns[0] == ("bot", "Hello and welcome.")
    assert ("caller", "what time is it") in turns
    assert any(s == "bot" and t.startswith("It's ") for s, t in turns)
    assert "".join(d["digit"] for d in rec["dtmf"]) == "42#"
    assert rec["metadata"]["marks_echoed"] > 0
    assert (tmp_path / "reply.wav").stat().st_size > 8000  # the bot's audio, as streamdouble heard it


async def test_barge_in_expects_clear(daemon: Daemon, tmp_path: Path) -> None:
    scenario = tmp_path / "barge.yaml"
    scenario.write_text(json.dumps({"name": "interrupt the greeting", "steps": [
        {"wait_for": {"event": "audio", "timeout": 10}},
        {"wait": 1.5},
        {"say": str(SPEECH / "flite-kal" / "book_tuesday.8k.wav")},
        {"expect": "clear"},
        {"wait": 1.0},
        {"expect": "no_violations"},
        "hangup",
    ]}))
    url = f"ws://127.0.0.1:{daemon.http_port}/media/twilio"
    code, _, text = await streamdouble("scenario", str(scenario), url, "--param", "agent=talker")
    assert code == 0, text
    [rec] = await records(daemon, 1)
    assert rec["end_reason"] == "connection_lost"  # `hangup` drops the socket without `stop`
    greeting = rec["turns"][0]
    assert greeting["interrupted"] and rec["interruptions"] >= 1
    heard = greeting["heard_text"].split()
    assert 0 < len(heard) < len(greeting["text"].split())
    assert greeting["text"].split()[: len(heard)] == heard


async def test_twenty_concurrent_calls(daemon: Daemon, tmp_path: Path) -> None:
    """streamdouble's `-n 20` places calls one after another, so sd_load.py runs twenty at once
    through streamdouble's API, in one separate process (twenty interpreters would swamp a small CI box)."""
    scenario = tmp_path / "ask.yaml"
    scenario.write_text(json.dumps({"name": "ask the time", "steps": [
        {"wait_for": {"event": "quiet", "timeout": 20}},
        {"say": str(SPEECH / "flite-rms" / "what_time.8k.wav")},
        {"wait": 3.0},  # `wait_for: audio` is already satisfied by the greeting
        {"wait_for": {"event": "quiet", "timeout": 20}},
        {"expect": "no_violations"},
    ]}))
    url = f"ws://127.0.0.1:{daemon.http_port}/media/twilio"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).with_name("sd_load.py")), url, str(scenario), "20", "agent=fakey",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    results = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    assert len(results) == 20, err.decode()
    assert all(r["exit_code"] == 0 for r in results), results
    recs = await records(daemon, 20)
    assert len(recs) == 20
    for rec in recs:
        assert rec["transport"] == "twilio" and rec["end_reason"] == "caller_hangup"
        turns = [(t["speaker"], t["text"], t["interrupted"]) for t in rec["turns"]]
        assert turns[0] == ("bot", "Hello and welcome.", False) and turns[1] == ("caller", "what time is it", False)
        assert turns[2][0] == "bot" and turns[2][1].startswith("It's ") and not turns[2][2], turns
    starts = sorted(r["started_at"] for r in recs)
    assert starts[-1] - starts[0] < min(r["ended_at"] - r["started_at"] for r in recs)  # they overlapped
