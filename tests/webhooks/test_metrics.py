"""Webhook outbox depth and delivery outcomes reach /metrics."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import aiohttp

from tests.daemons import start_daemon, time_agent
from voxd.api.keys_cli import create_key


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens here once the socket closes


def samples(text: str) -> dict[str, float]:
    return {k: float(v) for k, v in (line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))}


async def test_undeliverable_events_show_in_metrics(tmp_path: Path) -> None:
    d = await start_daemon(tmp_path, {"desk": time_agent()},
                           webhooks={"allow_private_destinations": True, "retry_schedule_s": [60.0]})
    try:
        key = await create_key(d.db, "ops", ["admin"])
        url = f"http://127.0.0.1:{d.http_port}"
        auth = {"Authorization": f"Bearer {key}"}
        async with aiohttp.ClientSession() as http:
            async with http.post(url + "/api/v1/webhooks", headers=auth,
                                 json={"url": f"http://127.0.0.1:{closed_port()}/hook", "events": ["*"]}) as r:
                assert r.status == 201, await r.text()
            async with http.ws_connect(url + "/media/voxd?agent=desk") as ws:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data)["type"] == "transcript":
                        await ws.send_str(json.dumps({"type": "stop"}))
                        break
            m: dict[str, float] = {}
            for _ in range(50):  # the first attempts fail at once (connection refused)
                await asyncio.sleep(0.1)
                async with http.get(url + "/metrics") as r:
                    m = samples(await r.text())
                if m.get('voxd_webhook_attempts_total{result="network_error",status="pending"}', 0) >= 3:
                    break
        assert m['voxd_webhook_attempts_total{result="network_error",status="pending"}'] >= 3
        assert m["voxd_webhook_outbox_depth"] >= 3  # call.started, conversation.updated, call.ended... all waiting
    finally:
        await d.stop()
