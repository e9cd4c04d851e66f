"""SIGHUP's config re-read reaches the parts that hold settings: webhooks, WebRTC, Twilio."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.daemons import start_daemon, time_agent


async def test_reload_applies_webhook_webrtc_and_twilio_settings(tmp_path: Path) -> None:
    d = await start_daemon(tmp_path, {"fakey": time_agent()})
    try:
        assert d.webhooks is not None and d.webhooks.cfg.retry_schedule_s != [1.0, 2.0]
        new = d.cfg.model_copy(update={
            "webhooks": d.cfg.webhooks.model_copy(update={"retry_schedule_s": [1.0, 2.0], "concurrency_per_endpoint": 2}),
            "webrtc": d.cfg.webrtc.model_validate({"ice_servers": [{"urls": "stun:127.0.0.1:3478"}]}),
        })
        d.config_loader = lambda: new
        await d.reload_now()
        assert d.webhooks.cfg.retry_schedule_s == [1.0, 2.0]
        assert d.webhooks.worker.cfg.concurrency_per_endpoint == 2
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{d.http_port}/webrtc/ice") as r:
            assert await r.json() == {"ice_servers": [{"urls": "stun:127.0.0.1:3478"}]}
    finally:
        await d.stop()
