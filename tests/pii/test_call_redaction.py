"""Issue 19's redaction proof: a call through a real daemon where the caller says a card
number (in digit words, as speech-to-text writes it) and an email address. Neither reaches
the stored transcript, the database file at all, the log lines, the webhook bodies, the
analysis or the recording's metadata; the live call still had them (the bot echoed them)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.daemons import start_daemon
from tests.synth import silence, voiced
from tests.webhooks.receiver import Receiver
from voxd.api.keys_cli import create_key
from voxd.app import Daemon
from voxd.logs import ContextFilter, JsonFormatter

SAID = ["my card is four one one one one one one one one one one one one one one one",
        "and my email is jane.doe@example.com"]
SECRETS = ("4111", "one one one one", "jane.doe", "example.com")

AGENT = f"""
name: pay
greeting: Hello, payments desk.
stt: {{engine: fake, options: {{transcripts: {json.dumps(SAID)}}}}}
llm: {{engine: fake}}
voice: {{engine: fake}}
turn: {{detector: silence, max_silence_ms: 300}}
recording: {{enabled: true, retention_days: 1}}
analysis:
  summary_template: "{{agent}}: {{turns}} turns"
"""


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """The daemon's log as voxd writes it (the same filter and formatter), at DEBUG."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def _call(http: aiohttp.ClientSession, url: str,
                live: Callable[[str], Awaitable[None]]) -> tuple[str, list[str]]:
    """Greeting, then one caller utterance after each bot line; hang up. The bot lines the
    live call sent back; ``live`` looks at the call once it has heard the card number."""
    bot: list[str] = []
    async with http.ws_connect(f"{url}/media/voxd?agent=pay") as ws:
        call_id = ""
        async with asyncio.timeout(30):
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                ev = json.loads(msg.data)
                if ev["type"] == "started":
                    call_id = ev["call_id"]
                if ev["type"] == "transcript" and ev["speaker"] == "bot":
                    bot.append(ev["text"])
                    if len(bot) == 2:
                        await live(call_id)
                    if len(bot) > len(SAID):
                        await ws.send_str(json.dumps({"type": "stop"}))
                        break
                    await ws.send_bytes(voiced(0.6) + silence(0.8))
    return call_id, bot


async def _settled(http: aiohttp.ClientSession, url: str, auth: dict[str, str], call_id: str) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:
            async with http.get(f"{url}/api/v1/calls/{call_id}", headers=auth) as r:
                body: dict[str, Any] = await r.json()
            rec = body.get("metadata", {}).get("recording") or {}
            if r.status == 200 and body.get("analysis") is not None and rec.get("status") == "ready":
                return body
            await asyncio.sleep(0.1)


def _clean(where: str, text: str) -> None:
    low = text.lower()
    for secret in SECRETS:
        assert secret not in low, f"{secret!r} in {where}: ...{low[max(0, low.find(secret) - 200):][:400]}"


async def test_card_and_email_said_on_a_call_are_written_nowhere(tmp_path: Path, log_lines: io.StringIO) -> None:
    d: Daemon = await start_daemon(tmp_path, {"pay": AGENT}, webhooks={"allow_private_destinations": True})
    receiver = Receiver()
    await receiver.start()
    try:
        key = await create_key(d.db, "ops", ["admin"])
        url = f"http://127.0.0.1:{d.http_port}"
        auth = {"Authorization": f"Bearer {key}"}
        async with aiohttp.ClientSession() as http:
            async with http.post(url + "/api/v1/webhooks", headers=auth, json={"url": receiver.url}) as r:
                assert r.status == 201, await r.text()
                receiver.secrets = [(await r.json())["secret"]]
            async def live(call_id: str) -> None:  # the API's view of the call in progress
                async with http.get(f"{url}/api/v1/calls/active", headers=auth) as r:
                    text = await r.text()
                    assert r.status == 200 and "[card]" in text, text
                    _clean("the API's active calls", text)
                async with http.get(f"{url}/api/v1/calls/{call_id}", headers=auth) as r:
                    _clean("the API's call in progress", await r.text())

            call_id, bot = await _call(http, url, live)
            # the live call kept the real words: the (echoing) model was given them
            assert "four one one one" in bot[1] and "jane.doe@example.com" in bot[2], bot
            call = await _settled(http, url, auth, call_id)
            await receiver.wait_for(lambda rc: {"call.analyzed", "recording.ready", "call.ended"}
                                    <= {p["type"] for p in rc.accepted.values()}, within=30)

        caller = [t["text"] for t in call["turns"] if t["speaker"] == "caller"]
        assert caller == ["my card is [card]", "and my email is [email]"]
        assert [t["text"] for t in call["turns"] if t["speaker"] == "bot"][1:] == [
            "You said: my card is [card].", "You said: and my email is [email]."]
        _clean("the stored call", json.dumps(call))
        _clean("the analysis", json.dumps(call["analysis"]))
        assert call["analysis"]["summary"] == "pay: 5 turns"
        _clean("the recording's metadata", json.dumps(call["metadata"]["recording"]))
        for side in (tmp_path / "state" / "recordings").glob("*.json"):
            _clean(side.name, side.read_text())

        bodies = [r.body.decode() for r in receiver.received]
        assert any("[card]" in b for b in bodies) and len(bodies) >= 5  # transcripts went out, redacted
        for b in bodies:
            _clean("a webhook body", b)

        logged = log_lines.getvalue()
        assert "caller said: my card is [card]" in logged and "caller said: and my email is [email]" in logged
        _clean("the log", logged)
    finally:
        await receiver.stop()
        await d.stop()

    with sqlite3.connect(d.cfg.resolved_database()) as raw:  # every row of every table, as stored
        _clean("the database file", "\n".join(raw.iterdump()))


async def test_text_conversation_messages_are_stored_redacted(tmp_path: Path) -> None:
    d: Daemon = await start_daemon(tmp_path, {"pay": AGENT})
    try:
        key = await create_key(d.db, "ops", ["admin"])
        url = f"http://127.0.0.1:{d.http_port}/api/v1/conversations"
        auth = {"Authorization": f"Bearer {key}"}
        async with aiohttp.ClientSession() as http:
            async with http.post(url, headers=auth, json={"agent": "pay"}) as r:
                assert r.status == 201, await r.text()
                cid = (await r.json())["id"]
            async with http.post(f"{url}/{cid}/messages", headers=auth,
                                 json={"text": "card 4111-1111-1111-1111, mail jane.doe@example.com"}) as r:
                assert r.status == 200, await r.text()
                reply = (await r.json())["reply"]
            assert "4111-1111-1111-1111" in reply  # the model was given the real text
            async with http.get(f"{url}/{cid}", headers=auth) as r:
                stored = await r.json()
        caller = [t["text"] for t in stored["turns"] if t["speaker"] == "caller"]
        assert caller == ["card [card], mail [email]"]
        _clean("the stored conversation", json.dumps(stored))
    finally:
        await d.stop()
    with sqlite3.connect(d.cfg.resolved_database()) as raw:
        _clean("the database file", "\n".join(raw.iterdump()))
