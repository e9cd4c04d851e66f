"""A daemon whose agent uses engine: local starts the model process with the daemon and
reports it in /readyz; a model process that dies makes the daemon not ready until the
supervisor has it back. The worker is the fake one (same protocol, no model)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.daemons import start_daemon
from voxd.providers.llm.local import catalog, runtime
from voxd.providers.llm.local.supervisor import ModelProcess

FAKE = Path(__file__).with_name("fake_llm_worker.py")
MODEL = "qwen2.5-coder-0.5b"
AGENT = f"""
stt: {{engine: fake, options: {{transcripts: ["hello"]}}}}
llm: [{{engine: local, model: {MODEL}}}, {{engine: dialog}}]
voice: {{engine: fake}}
turn: {{detector: silence}}
"""


async def readyz(port: int) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/readyz") as r:
        return r.status, await r.json()


async def test_readyz_reports_the_model_process_and_its_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ModelProcess, "command", lambda self: [sys.executable, str(FAKE)])
    real = catalog.MODELS[MODEL]
    monkeypatch.setitem(catalog.MODELS, MODEL, catalog.PackagedModel(MODEL, "", real.packages, 4, "0" * 64, real.file))
    models = tmp_path / "models"
    models.mkdir()
    (models / real.file).write_bytes(b"GGUF")
    d = await start_daemon(tmp_path, {"front": AGENT}, engines={"silero_confirm": False, "preload": True},
                           local_llm={"models_dir": str(models), "restart_backoff_s": [0.05, 0.2]})
    try:
        assert d.http_port is not None
        status, body = await readyz(d.http_port)
        assert status == 200 and body["checks"]["local_llm"] is True
        slot = body["local_llm"][MODEL]["slots"][0]
        assert slot["state"] == "ready" and slot["pid"]
        os.kill(slot["pid"], signal.SIGKILL)
        seen_down = False
        for _ in range(500):
            status, body = await readyz(d.http_port)
            s = body["local_llm"][MODEL]["slots"][0]
            seen_down = seen_down or status == 503
            if s["state"] == "ready" and s["pid"] != slot["pid"]:
                break
            await asyncio.sleep(0.02)
        assert s["state"] == "ready" and s["restarts"] == 1 and status == 200
        assert seen_down or s["restarts"] == 1
    finally:
        await d.stop()
    assert runtime.health() == {}
