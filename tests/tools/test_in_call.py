"""A custom HTTP function inside a real call session: the LLM calls it, the request is
signed and verified by the receiver, the answer is spoken, and the execution log (fed
by the session's ToolExecuted events) holds it with secrets redacted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from tests.call.helpers import make_session
from tests.synth import silence, voiced
from tests.tools.conftest import Serve, local_outbound
from voxd.call.driver import drive, frames_of
from voxd.config.tools import ToolsConfig
from voxd.core.redact import REDACTED
from voxd.core.signing import new_secret
from voxd.providers.base import ToolCall
from voxd.store.db import Database
from voxd.store.functions_log import ExecutionLogRepository
from voxd.tools.execlog import ExecutionLogger
from voxd.tools.library import ToolLibrary


async def test_http_function_in_a_call_is_signed_spoken_and_logged(
    serve: Serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = new_secret()
    received: list[Any] = []

    async def orders(request: web.Request) -> web.Response:
        body = await request.read()
        received.append(Webhook(secret).verify(body, dict(request.headers)))  # raises if not from voxd
        return web.json_response({"status": "shipped", "eta": "Tuesday"})

    app = web.Application()
    app.router.add_post("/orders", orders)
    base = await serve(app)
    monkeypatch.setenv("VOXD_TEST_FN_SECRET", secret)
    monkeypatch.setenv("ORDERS_TOKEN", "orders-token-value")
    agent = {
        "greeting": None, "tools": [], "turn": {"detector": "silence", "max_silence_ms": 300},
        "functions": [{
            "name": "lookup_order", "description": "Where is an order?",
            "parameters": {"type": "object", "properties": {"order_id": {"type": "string"},
                                                            "pin": {"type": "string"}}},
            "http": {"url": base + "/orders", "headers": {"Authorization": "Bearer ${ORDERS_TOKEN}"}},
        }],
    }
    s, _control, events, tts, _llm = make_session(
        agent, transcripts=["where is order A17, my pin is 4321"],
        steps=[[ToolCall("t1", "lookup_order", {"order_id": "A17", "pin": "4321"})], "It ships Tuesday."],
    )
    lib = ToolLibrary(ToolsConfig(signing_secret_env="VOXD_TEST_FN_SECRET"),
                      base_dir=tmp_path, embedder=None, outbound=local_outbound(orders="ORDERS_TOKEN"))
    s.tools.registry = lib.registry_for(s.agent)  # what CallManager will pass per agent
    db = await Database.open(tmp_path / "voxd.db")
    logger = ExecutionLogger(ExecutionLogRepository(db))
    try:
        await drive(s, frames_of(voiced(0.6) + silence(2.0)), virtual=False, tail_s=0.3, max_s=20)
        for e in events:
            logger(e)
        await logger.flush()
        rows = await ExecutionLogRepository(db).for_call(s.record.id)
    finally:
        await logger.close()
        await lib.close()
        await db.close()
    assert received == [{"order_id": "A17", "pin": "4321"}]
    assert tts.texts == ["It ships Tuesday."]
    bot = s.record.turns[-1]
    assert [(t.name, t.result) for t in bot.tool_calls] == [("lookup_order", {"status": "shipped", "eta": "Tuesday"})]
    [row] = rows
    assert row["name"] == "lookup_order" and row["turn_idx"] == bot.index and row["error"] is None
    assert row["arguments"] == {"order_id": "A17", "pin": REDACTED}
    assert "orders-token-value" not in json.dumps(rows)
