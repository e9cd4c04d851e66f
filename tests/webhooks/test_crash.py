"""The daemon as a subprocess: events happen while the receiver is down, the daemon is
SIGKILLed, started again, the receiver comes up, and every event arrives (at least once,
duplicates only with the same webhook-id)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.synth import silence, voiced
from voxd.api.keys_cli import create_key
from voxd.store.db import Database

from .receiver import Receiver, free_port

ROOT = Path(__file__).parents[2]
PEPPER = "crash-test-pepper"
AGENT = """
greeting: Hello from the crash test.
stt: {engine: fake, options: {transcripts: ["what time is it"]}}
voice: {engine: fake}
turn: {detector: silence, max_silence_ms: 300}
tools: [get_current_time]
dialog:
  intents:
    - {name: time, examples: ["what time is it"], tool: get_current_time, reply: "It's {result.spoken}."}
"""
CALLS = 3


class Proc:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.cfg = tmp / "voxd.yaml"
        self.cfg.write_text(
            f"agents_dir: {tmp / 'agents'}\nstate_dir: {tmp / 'state'}\n"
            "sip: {enabled: false}\nengines: {silero_confirm: false, preload: false}\n"
            "http: {media_unauthenticated: true}\n"
            "webhooks: {retry_schedule_s: [0.2, 0.3, 0.5, 0.5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, "
            "1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], retry_jitter: 0.1}\n"
        )
        self.env = dict(os.environ, VOXD_WEBHOOKS_ALLOW_PRIVATE_DESTINATIONS="1", VOXD_API_KEY_PEPPER=PEPPER)
        self.proc: asyncio.subprocess.Process | None = None
        self.runs = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.runs += 1
        log = open(self.tmp / f"daemon{self.runs}.log", "w")  # noqa: SIM115,ASYNC230 - tiny, closed below
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "voxd.cli", "run", "-c", str(self.cfg), "--http-port", str(self.port),
            cwd=ROOT, env=self.env, stdout=asyncio.subprocess.DEVNULL, stderr=log)
        log.close()
        async with aiohttp.ClientSession() as http, asyncio.timeout(60):
            while True:
                try:
                    async with http.get(self.url + "/readyz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)

    async def end(self, sig: int) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(sig)
            await asyncio.wait_for(self.proc.wait(), 30)


def _db_rows(path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return list(conn.execute(sql))


async def _call(http: aiohttp.ClientSession, url: str) -> None:
    """One websocket call: greeting, a question, the answer, hang up."""
    async with http.ws_connect(url + "/media/voxd") as ws:
        bot_lines = 0
        async with asyncio.timeout(20):
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                ev = json.loads(msg.data)
                if ev["type"] == "transcript" and ev["speaker"] == "bot":
                    bot_lines += 1
                    if bot_lines == 1:
                        await ws.send_bytes(voiced(0.6) + silence(0.8))
                    else:
                        await ws.send_str(json.dumps({"type": "stop"}))
                        return


@pytest.mark.timeout(150)
async def test_sigkill_loses_nothing(tmp_path: Path) -> None:
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "front.yaml").write_text(AGENT)
    db_path = tmp_path / "state" / "voxd.db"
    db = await Database.open(db_path)
    key = await create_key(db, "crash", ["webhooks:write"], pepper=PEPPER)
    await db.close()
    daemon = Proc(tmp_path)
    receiver = Receiver()  # not listening yet
    try:
        await daemon.start()
        async with aiohttp.ClientSession() as http:
            async with http.post(daemon.url + "/api/v1/webhooks", json={"url": receiver.url},
                                 headers={"Authorization": f"Bearer {key}"}) as r:
                assert r.status == 201, await r.text()
                receiver.secrets = [(await r.json())["secret"]]
            for _ in range(CALLS):
                await _call(http, daemon.url)
        # wait until the last events are in the outbox and the first sends have failed
        async with asyncio.timeout(20):
            while True:
                ended = _db_rows(db_path, "SELECT COUNT(*) FROM webhook_messages WHERE type = 'conversation.ended'")
                tried = _db_rows(db_path, "SELECT COUNT(*) FROM webhook_attempts WHERE error IS NOT NULL")
                if ended[0][0] == CALLS and tried[0][0] > 0:
                    break
                await asyncio.sleep(0.05)
        await daemon.end(signal.SIGKILL)
        assert daemon.proc is not None and daemon.proc.returncode == -signal.SIGKILL

        messages = dict(_db_rows(db_path, "SELECT id, type FROM webhook_messages"))
        kinds = sorted(messages.values())
        for kind in ("call.started", "call.answered", "call.ended", "conversation.ended"):
            assert kinds.count(kind) == CALLS, kinds
        assert kinds.count("conversation.updated") >= 2 * CALLS  # greeting + answer (+ caller turn)
        assert kinds.count("function.executed") == CALLS
        assert not [r for r in _db_rows(db_path, "SELECT status FROM webhook_deliveries") if r[0] != "pending"]

        await daemon.start()
        await receiver.start()
        await receiver.wait_for(lambda r: set(r.accepted) >= set(messages), within=60)
        received_ids = [r.msg_id for r in receiver.received]
        assert set(received_ids) <= set(messages)  # nothing invented
        bodies: dict[str, bytes] = {}
        for r in receiver.received:  # a duplicate is the same event, byte for byte
            assert r.verified_by == [0] and r.svix_ok
            assert bodies.setdefault(r.msg_id, r.body) == r.body
        for msg_id, payload in receiver.accepted.items():
            assert payload["type"] == messages[msg_id]
        async with asyncio.timeout(10):
            while True:
                left = _db_rows(db_path, "SELECT COUNT(*) FROM webhook_deliveries WHERE status != 'succeeded'")
                if left[0][0] == 0:
                    break
                await asyncio.sleep(0.05)
        await daemon.end(signal.SIGTERM)
        assert daemon.proc is not None and daemon.proc.returncode == 0
    finally:
        await daemon.end(signal.SIGKILL)
        await receiver.stop()
