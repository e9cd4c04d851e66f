"""The daemon as systemd runs it: a subprocess with NOTIFY_SOCKET, signals, drain, metrics."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.synth import silence, voiced

ROOT = Path(__file__).parents[2]

AGENT = """
greeting: {greeting}
stt: {{engine: fake, options: {{transcripts: ["what time is it"]}}}}
voice: {{engine: fake}}
turn: {{detector: silence, max_silence_ms: 300}}
tools: [get_current_time]
dialog:
  intents:
    - {{name: time, examples: ["what time is it"], tool: get_current_time, reply: "It's {{result.spoken}}."}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Daemon:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.agents = tmp / "agents"
        self.agents.mkdir()
        (self.agents / "front.yaml").write_text(AGENT.format(greeting="Version one."))
        self.notify_path = str(tmp / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.notify_path)
        self.sock.setblocking(False)
        self.log = tmp / "daemon.log"
        self.messages: list[str] = []

    async def start(self) -> None:
        cfg = self.tmp / "voxd.yaml"
        cfg.write_text(
            f"agents_dir: {self.agents}\nstate_dir: {self.tmp / 'state'}\nhttp: {{port: {self.port}, media_unauthenticated: true}}\n"
            "sip: {enabled: false}\nengines: {silero_confirm: false, preload: false}\ndrain_timeout_s: 20\n"
        )
        env = dict(os.environ, NOTIFY_SOCKET=self.notify_path, WATCHDOG_USEC="2000000", WATCHDOG_PID="")
        self.log_file = open(self.log, "w")  # noqa: SIM115, ASYNC230 - tiny, closed by the fixture
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "voxd.cli", "run", "-c", str(cfg), cwd=ROOT, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=self.log_file,
        )

    async def wait_message(self, prefix: str, limit_s: float = 60) -> str:
        """The next sd_notify line starting with prefix; fails at once, with the
        daemon's log, if the daemon exits or the limit passes first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        while True:
            for m in self.messages:
                for line in m.splitlines():
                    if line.startswith(prefix):
                        self.messages.remove(m)
                        return line
            if self.proc.returncode is not None or loop.time() > deadline:
                self.log_file.flush()
                pytest.fail(f"no {prefix!r} from the daemon (exit code {self.proc.returncode}); "
                            f"its log:\n{self.log.read_text()[-4000:]}")
            try:
                data = await asyncio.wait_for(loop.sock_recv(self.sock, 4096), 0.5)
            except TimeoutError:
                continue
            self.messages.append(data.decode())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    d = Daemon(tmp_path)
    await d.start()
    yield d
    if d.proc.returncode is None:
        d.proc.kill()
        await d.proc.wait()
    d.sock.close()
    d.log_file.close()


async def greeting_of(http: aiohttp.ClientSession, url: str, ask: bool = False) -> str:
    """The greeting of a new call; with ask=True, also one question and its answer."""
    greeting = None
    async with http.ws_connect(url + "/media/voxd") as ws:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                ev = json.loads(msg.data)
                if ev["type"] != "transcript":
                    continue
                if greeting is None:
                    greeting = str(ev["text"])
                    if ask:
                        await ws.send_bytes(voiced(0.6) + silence(0.8))
                        continue
                elif ev["speaker"] == "caller":
                    continue
                await ws.send_str(json.dumps({"type": "stop"}))
                return greeting
    raise AssertionError("no greeting")


async def test_ready_reload_and_metrics(daemon: Daemon) -> None:
    assert await daemon.wait_message("READY=1")
    assert (await daemon.wait_message("WATCHDOG=1", limit_s=5)) == "WATCHDOG=1"
    async with aiohttp.ClientSession() as http:
        async with http.get(daemon.url + "/readyz") as r:
            assert r.status == 200 and (await r.json())["ready"] is True
        assert await greeting_of(http, daemon.url, ask=True) == "Version one."
        # a broken file + SIGHUP: logged with file and line, the old version keeps answering
        (daemon.agents / "front.yaml").write_text("greeting: [unclosed\n")
        daemon.proc.send_signal(signal.SIGHUP)
        await daemon.wait_message("RELOADING=1")
        await daemon.wait_message("READY=1")
        assert await greeting_of(http, daemon.url) == "Version one."
        assert "front.yaml:2: YAML syntax" in daemon.log.read_text()
        # fixed file + SIGHUP: new calls get the new version
        (daemon.agents / "front.yaml").write_text(AGENT.format(greeting="Version two."))
        daemon.proc.send_signal(signal.SIGHUP)
        await daemon.wait_message("RELOADING=1")
        await daemon.wait_message("READY=1")
        assert await greeting_of(http, daemon.url) == "Version two."
        await asyncio.sleep(0.3)
        async with http.get(daemon.url + "/metrics") as r:
            text = await r.text()
    assert 'voxd_calls_total{end_reason="caller_hangup",transport="websocket"} 3.0' in text
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert float(samples["voxd_turn_latency_seconds_count"]) >= 1
    assert float(samples['voxd_turn_stage_seconds_count{stage="transcript"}']) >= 1
    assert float(samples["voxd_event_loop_lag_seconds_count"]) > 10
    assert float(samples['voxd_active_calls{agent="front",transport="websocket"}']) == 0
    daemon.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(daemon.proc.wait(), 30) == 0


async def test_sigterm_lets_an_active_call_finish(daemon: Daemon) -> None:
    await daemon.wait_message("READY=1")
    async with aiohttp.ClientSession() as http, http.ws_connect(daemon.url + "/media/voxd") as ws:
        async def next_transcript() -> dict:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    ev = json.loads(msg.data)
                    if ev["type"] in ("transcript", "end"):
                        return dict(ev)
            raise AssertionError("closed")

        assert (await next_transcript())["text"] == "Version one."
        daemon.proc.send_signal(signal.SIGTERM)
        await daemon.wait_message("STOPPING=1")
        # new calls are refused while draining
        async with http.get(daemon.url + "/media/voxd") as r:
            assert r.status == 503 and r.headers["Retry-After"] == "30"
        # the active call still converses
        await ws.send_bytes(voiced(0.6) + silence(0.8))
        ev = await next_transcript()
        assert ev == {"type": "transcript", "speaker": "caller", "text": "what time is it", "interrupted": False}
        ev = await next_transcript()
        assert ev["speaker"] == "bot" and ev["text"].startswith("It's ")
        assert daemon.proc.returncode is None
        await ws.send_str(json.dumps({"type": "stop"}))
    assert await asyncio.wait_for(daemon.proc.wait(), 30) == 0
    assert "voxd stopped" in daemon.log.read_text()


async def test_sighup_rereads_the_config_and_rebinds_http(daemon: Daemon) -> None:
    await daemon.wait_message("READY=1")
    cfg = daemon.tmp / "voxd.yaml"
    # a broken config is rejected whole; the daemon keeps serving on its address
    good = cfg.read_text()
    cfg.write_text(good + "http: [oops\n")
    daemon.proc.send_signal(signal.SIGHUP)
    await daemon.wait_message("READY=1")
    assert "config rejected" in daemon.log.read_text()
    async with aiohttp.ClientSession() as http, http.get(daemon.url + "/healthz") as r:
        assert r.status == 200
    # a new HTTP port: re-bound without a restart, and the old one is closed
    new_port = free_port()
    cfg.write_text(good.replace(f"port: {daemon.port}", f"port: {new_port}"))
    daemon.proc.send_signal(signal.SIGHUP)
    await daemon.wait_message("READY=1")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{new_port}/healthz") as r:
            assert r.status == 200
        with pytest.raises(aiohttp.ClientConnectionError):
            async with http.get(daemon.url + "/healthz"):
                pass
    daemon.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(daemon.proc.wait(), 30) == 0
