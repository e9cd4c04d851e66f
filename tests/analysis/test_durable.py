"""The analysis job is durable: the daemon (a subprocess) cannot reach the analysis model,
retries, is SIGKILLed with the job pending, and once started again (the model server up
now) finishes it: the model's structured output lands on the call and call.analyzed
reaches a receiver that verifies it with ``standardwebhooks``."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.analysis.agents import booking_agent
from tests.analysis.test_daemon_analysis import BOOKING, call
from tests.cloud.fake_openai import FakeOpenAI
from tests.webhooks.receiver import Receiver, free_port
from tests.webhooks.test_crash import PEPPER, Proc
from voxd.api.keys_cli import create_key
from voxd.store.db import Database


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return list(conn.execute(sql))


def answer(body: dict[str, Any]) -> str:
    said = body["messages"][-1]["content"]
    return json.dumps({"summary": "Booked a Thursday appointment." if "Thursday" in said else "No booking.",
                       "outcome": "booked" if "Thursday" in said else "no_booking",
                       "extracted": {"day": "Thursday", "time": "10:00"}})


@pytest.mark.timeout(180)
async def test_pending_analysis_survives_sigkill(tmp_path: Path) -> None:
    model_port = free_port()
    llm = f"{{engine: openai-compatible, base_url: 'http://127.0.0.1:{model_port}/v1', model: m, timeout_s: 2}}"
    text = booking_agent().replace("stt: {engine: fake}", f"stt: {{engine: fake, options: {{transcripts: {json.dumps(BOOKING)}}}}}")
    text = text.replace("  default_outcome: no_booking", f"  default_outcome: no_booking\n  engine: llm\n  llm: {llm}")
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "front.yaml").write_text(text + "turn: {detector: silence, max_silence_ms: 300}\n")
    db_path = tmp_path / "state" / "voxd.db"
    db = await Database.open(db_path)
    key = await create_key(db, "crash", ["admin"], pepper=PEPPER)
    await db.close()
    daemon = Proc(tmp_path)
    with daemon.cfg.open("a") as f:  # the model on loopback; retries every 0.4 s, for longer than the test waits
        f.write("egress: {allow: [{networks: [127.0.0.1/32], uses: [providers]}]}\n"
                f"analysis: {{retry_schedule_s: {json.dumps([0.4] * 20)}}}\n")
    receiver = Receiver()
    await receiver.start()
    fake = FakeOpenAI(structured=[answer])
    try:
        await daemon.start()
        async with aiohttp.ClientSession() as http:
            async with http.post(daemon.url + "/api/v1/webhooks", json={"url": receiver.url, "events": ["call.analyzed"]},
                                 headers={"Authorization": f"Bearer {key}"}) as r:
                assert r.status == 201, await r.text()
                receiver.secrets = [(await r.json())["secret"]]
            call_id = await call(http, daemon.url, "front", len(BOOKING))
        async with asyncio.timeout(20):  # the model is unreachable: attempts fail, the job stays pending
            while not rows(db_path, f"SELECT 1 FROM analysis_jobs WHERE call_id = '{call_id}' AND attempts >= 2 "  # noqa: ASYNC110 - another process writes it
                                    "AND status = 'pending'"):
                await asyncio.sleep(0.05)
        await daemon.end(signal.SIGKILL)
        assert daemon.proc is not None and daemon.proc.returncode == -signal.SIGKILL
        (status, err), = rows(db_path, f"SELECT status, last_error FROM analysis_jobs WHERE call_id = '{call_id}'")
        assert status == "pending" and "ProviderError" in err
        assert rows(db_path, f"SELECT analysis FROM calls WHERE id = '{call_id}'") == [(None,)]
        assert not receiver.received

        await fake.start(model_port)
        await daemon.start()
        await receiver.wait_for(lambda rc: len(rc.accepted) == 1, within=30)
        (ev,) = receiver.accepted.values()
        assert receiver.received[0].verified_by == [0]
        assert ev["type"] == "call.analyzed" and ev["data"]["call_id"] == call_id
        assert ev["data"]["outcome"] == "booked" and ev["data"]["extracted"] == {"day": "Thursday", "time": "10:00"}
        assert ev["data"]["analysis"]["method"] == "llm" and ev["data"]["analysis"]["engine"] == "openai-compatible"
        assert fake.requests[0]["response_format"]["type"] == "json_schema"
        (status, attempts), = rows(db_path, f"SELECT status, attempts FROM analysis_jobs WHERE call_id = '{call_id}'")
        assert status == "done" and attempts >= 3
        (stored,), = rows(db_path, f"SELECT analysis FROM calls WHERE id = '{call_id}'")
        assert json.loads(stored)["summary"] == "Booked a Thursday appointment."
        await daemon.end(signal.SIGTERM)
        assert daemon.proc is not None and daemon.proc.returncode == 0
    finally:
        await daemon.end(signal.SIGKILL)
        await fake.stop()
        await receiver.stop()
