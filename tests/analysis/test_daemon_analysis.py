"""Post-call analysis in a running daemon: websocket calls through the dialog engine, the
analysis on the call record, call.analyzed at a receiver that verifies it with
``standardwebhooks``, the API's analysis filters, and /metrics."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from tests.analysis.agents import booking_agent
from tests.daemons import start_daemon
from tests.synth import silence, voiced
from tests.webhooks.receiver import Receiver
from tests.webhooks.test_metrics import samples
from voxd.api.keys_cli import create_key
from voxd.app import Daemon

BOOKING = ["I'd like to book an appointment", "Thursday", "at ten am"]
COMPLAINT = ["this is terrible, I hate this awful line, you are useless"]


def agent(name: str, transcripts: list[str]) -> str:
    return booking_agent().replace("name: front", f"name: {name}").replace("stt: {engine: fake}", f"stt: {{engine: fake, options: {{transcripts: {json.dumps(transcripts)}}}}}") + "turn: {detector: silence, max_silence_ms: 300}\n"


async def call(http: aiohttp.ClientSession, url: str, agent_name: str, answers: int) -> str:
    """Greeting, then one caller utterance after each bot line, `answers` times; hang up."""
    async with http.ws_connect(f"{url}/media/voxd?agent={agent_name}") as ws:
        call_id = ""
        bot_lines = 0
        async with asyncio.timeout(30):
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                ev = json.loads(msg.data)
                if ev["type"] == "started":
                    call_id = ev["call_id"]
                if ev["type"] == "transcript" and ev["speaker"] == "bot":
                    bot_lines += 1
                    if bot_lines > answers:
                        await ws.send_str(json.dumps({"type": "stop"}))
                        break
                    await ws.send_bytes(voiced(0.6) + silence(0.8))
        return call_id


async def analysed(http: aiohttp.ClientSession, url: str, auth: dict[str, str], call_id: str) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            async with http.get(f"{url}/api/v1/calls/{call_id}", headers=auth) as r:
                body = await r.json()
                if r.status == 200 and body.get("analysis") is not None:
                    return dict(body)
            await asyncio.sleep(0.1)


async def test_dialog_calls_are_analysed_filtered_and_counted(tmp_path: Path) -> None:
    d: Daemon = await start_daemon(tmp_path, {"front": agent("front", BOOKING), "grumpy": agent("grumpy", COMPLAINT)},
                                   webhooks={"allow_private_destinations": True})
    receiver = Receiver()
    await receiver.start()
    try:
        key = await create_key(d.db, "ops", ["admin"])
        url = f"http://127.0.0.1:{d.http_port}"
        auth = {"Authorization": f"Bearer {key}"}
        async with aiohttp.ClientSession() as http:
            async with http.post(url + "/api/v1/webhooks", headers=auth,
                                 json={"url": receiver.url, "events": ["call.analyzed"]}) as r:
                assert r.status == 201, await r.text()
                receiver.secrets = [(await r.json())["secret"]]
            booked = await call(http, url, "front", len(BOOKING))
            grumpy = await call(http, url, "grumpy", 1)
            a = (await analysed(http, url, auth, booked))["analysis"]
            g = (await analysed(http, url, auth, grumpy))["analysis"]

            assert a["method"] == "dialog" and a["outcome"] == "booked"
            assert a["extracted"] == {"day": "Thursday", "time": "10:00"} and a["validation_error"] is None
            assert [t["intent"] for t in a["intents"]["turns"]] == ["book", "book", "book"]
            assert a["sentiment"]["method"] == "vader" and len(a["sentiment"]["turns"]) == 3
            assert a["quality"]["reply_latency_ms"]["count"] >= 3 and a["quality"]["mos"] is None  # websocket
            assert g["outcome"] == "no_booking" and g["sentiment"]["overall"] < -0.5

            async def ids(query: str) -> set[str]:
                async with http.get(f"{url}/api/v1/calls?{query}", headers=auth) as r:
                    assert r.status == 200, await r.text()
                    return {c["id"] for c in (await r.json())["calls"]}

            assert await ids("outcome=booked") == {booked}
            assert await ids("sentiment_lt=0") == {grumpy}
            assert await ids("outcome=booked&sentiment_lt=0") == set()
            assert await ids("outcome=no_booking&sentiment_lt=0") == {grumpy}
            async with http.get(f"{url}/api/v1/calls?sentiment_lt=7", headers=auth) as r:
                assert r.status == 422  # out of range: a clear error

            await receiver.wait_for(lambda rc: len(rc.accepted) >= 2, within=20)
            events = {p["data"]["call_id"]: p for p in receiver.accepted.values()}
            assert all(r.verified_by == [0] for r in receiver.received)  # standardwebhooks verified each
            ev = events[booked]
            assert ev["type"] == "call.analyzed" and ev["data"]["outcome"] == "booked"
            assert ev["data"]["extracted"] == {"day": "Thursday", "time": "10:00"}
            assert ev["data"]["analysis"]["summary"] == a["summary"]

            async with http.get(url + "/metrics") as r:
                m = samples(await r.text())
            assert m['voxd_call_outcomes_total{agent="front",outcome="booked"}'] == 1
            assert m['voxd_call_outcomes_total{agent="grumpy",outcome="no_booking"}'] == 1
            assert m['voxd_call_sentiment_count{agent="grumpy"}'] == 1
            assert m['voxd_call_sentiment_bucket{agent="grumpy",le="-0.5"}'] == 1
        assert await d.db.analysis().counts() == {"done": 2}
    finally:
        await receiver.stop()
        await d.stop()


async def test_a_call_can_be_analysed_again(tmp_path: Path) -> None:
    d: Daemon = await start_daemon(tmp_path, {"front": agent("front", BOOKING)})
    try:
        key = await create_key(d.db, "ops", ["calls:read", "calls:write"])
        url = f"http://127.0.0.1:{d.http_port}"
        auth = {"Authorization": f"Bearer {key}"}
        async with aiohttp.ClientSession() as http:
            call_id = await call(http, url, "front", len(BOOKING))
            first = (await analysed(http, url, auth, call_id))["analysis"]
            async with http.post(f"{url}/api/v1/calls/call_nope/analysis", headers=auth) as r:
                assert r.status == 404
            async with http.post(f"{url}/api/v1/calls/{call_id}/analysis", headers=auth) as r:
                assert r.status == 202 and (await r.json()) == {"call_id": call_id, "status": "pending"}
            async with asyncio.timeout(20):
                while True:
                    again = (await analysed(http, url, auth, call_id))["analysis"]
                    if again["analysed_at"] > first["analysed_at"]:
                        break
                    await asyncio.sleep(0.2)
            assert again["extracted"] == first["extracted"] and again["outcome"] == "booked"
    finally:
        await d.stop()
