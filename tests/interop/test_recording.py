"""Recordings of real calls.

- sipp calls the daemon (speech from festival's kal voice, not the bot's piper voice); the
  stereo recording's left channel is what sipp sent (cross-correlation), its right channel
  holds the bot's consent prompt and greeting (whisper transcribes them back); the API serves
  it with range requests; retention deletes it.
- A daemon process SIGKILLed mid-call leaves a WAV readable up to its last flushed second.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import sys
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from tests.interop.test_sipp import free_udp_port, records, run_sipp, scenario
from tests.synth import voiced
from voxd.api.keys_cli import create_key
from voxd.app import Daemon
from voxd.config import VoxdConfig
from voxd.media.audio import SAMPLE_RATE

ROOT = Path(__file__).parents[2]
SPEECH = ROOT / "tests" / "data" / "speech"
CALLER = SPEECH / "festival-kal" / "what_time.8k.wav"
LEAD_S = 5.0  # after the consent prompt and greeting (speech before them would barge in)

pytestmark = [pytest.mark.interop, pytest.mark.skipif(not shutil.which("sipp"), reason="sipp not installed")]

AGENT = """
greeting: Hello from the front desk.
turn: {detector: silence, max_silence_ms: 600}
tools: [get_current_time]
dialog:
  intents:
    - {name: time, examples: ["what time is it"], keywords: [time], tool: get_current_time, reply: "It's {result.spoken}."}
recording: {enabled: true, channels: stereo, format: wav, consent_prompt: "This call is recorded for quality.",
            retention_days: 1}
sip: {numbers: ["2000"]}
"""


def read_wav(path: Path) -> tuple[int, np.ndarray]:
    with wave.open(str(path)) as w:
        ch, rate = w.getnchannels(), w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert rate == SAMPLE_RATE
    return ch, x.reshape(-1, ch)


def best_match(sent: np.ndarray, got: np.ndarray) -> tuple[int, float]:
    """(lag in samples, Pearson correlation there) of `sent` inside `got`."""
    a, b = sent.astype(np.float64), got.astype(np.float64)
    n = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    corr = np.fft.irfft(np.fft.rfft(b, n) * np.conj(np.fft.rfft(a, n)), n)[: len(b) - len(a) + 1]
    lag = int(np.argmax(corr))
    seg = b[lag: lag + len(a)]
    return lag, float(np.corrcoef(a, seg)[0, 1])


@pytest.fixture
async def recd(tmp_path: Path) -> AsyncIterator[Daemon]:
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "front.yaml").write_text(AGENT)
    cfg = VoxdConfig.model_validate({
        "state_dir": str(tmp_path / "state"), "agents_dir": str(agents), "default_agent": "front",
        "http": {"port": 0},
        "engines": {"silero_confirm": False},
        "webhooks": {"allow_private_destinations": True, "retry_schedule_s": [0.2, 0.5]},
        "sip": {"port": free_udp_port(), "rtp_port_min": 31300, "rtp_port_max": 31400, "ring_ms": 0},
    })
    d = Daemon(cfg, tmp_path)
    await d.start()
    yield d
    await d.stop()


@pytest.mark.timeout(180)
async def test_a_sipp_call_is_recorded_caller_left_bot_right(recd: Daemon, tmp_path: Path) -> None:
    from tests.webhooks.receiver import Receiver

    receiver = Receiver()
    await receiver.start()
    admin = await create_key(recd.db, "hooks", ["webhooks:write"])
    async with aiohttp.ClientSession() as http, http.post(
            f"http://127.0.0.1:{recd.http_port}/api/v1/webhooks", json={"url": receiver.url},
            headers={"Authorization": f"Bearer {admin}"}) as r:
        assert r.status == 201, await r.text()
        receiver.secrets = [(await r.json())["secret"]]
    try:
        await _recorded_call(recd, tmp_path, receiver)
    finally:
        await receiver.stop()


async def _recorded_call(recd: Daemon, tmp_path: Path, receiver: Any) -> None:
    ulaw = tmp_path / "caller.ulaw"
    sox = await asyncio.create_subprocess_exec(
        "sox", str(CALLER), "-t", "raw", "-e", "u-law", "-b", "8", "-r", "8000", str(ulaw), "pad", str(LEAD_S), "1")
    assert await sox.wait() == 0
    await run_sipp(recd, scenario(tmp_path, "recorded_call.xml", USER="2000", ULAW=str(ulaw), WAIT_MS="12000"),
                   tmp_path)
    (rec,) = await records(recd)
    assert recd.recordings is not None
    await recd.recordings.flush()
    (rec,) = await records(recd)
    info = rec["metadata"]["recording"]
    path = recd.cfg.resolved_recordings() / f"{rec['id']}.wav"
    data = path.read_bytes()
    assert info["status"] == "ready" and info["sha256"] == hashlib.sha256(data).hexdigest()
    assert info["bytes"] == len(data) and 11.0 < info["duration_s"] < 16.0
    ready: list[Any] = []
    for _ in range(200):  # recording.ready, signed (standardwebhooks verifies it)
        ready = [r for r in receiver.received if r.payload["type"] == "recording.ready"]
        if ready:
            break
        await asyncio.sleep(0.1)
    assert ready[0].verified_by == [0]
    hook = ready[0].payload["data"]
    assert hook["call_id"] == rec["id"] and hook["sha256"] == info["sha256"]
    assert hook["duration_s"] == info["duration_s"] and hook["content_type"] == "audio/wav"
    assert hook["url"] == f"/api/v1/calls/{rec['id']}/recording"
    ch, x = read_wav(path)
    assert ch == 2

    # left: what sipp sent (the mu-law of the speech, resampled by voxd to 16 kHz)
    with wave.open(str(CALLER)) as w:
        sent8 = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
    t16 = np.arange(len(sent8) * 2) / 2
    sent = np.interp(t16, np.arange(len(sent8)), sent8)
    lag, r = best_match(sent, x[:, 0])
    assert r > 0.8, (lag, r)
    assert LEAD_S * SAMPLE_RATE < lag < (LEAD_S + 3) * SAMPLE_RATE, lag  # the lead silence and the answer's moment
    assert np.abs(x[:, 0]).max() > 1000

    # right: the bot's voice, heard back by whisper
    from voxd.providers.stt.whisper import WhisperSTT

    heard = (await asyncio.to_thread(WhisperSTT().transcribe_sync, x[:, 1].copy())).lower()
    assert "recorded for quality" in heard and "front desk" in heard and "it's" in heard, heard
    greeting = slice(0, int((LEAD_S - 0.5) * SAMPLE_RATE))  # the bot talks, sipp sends its lead silence
    assert np.abs(x[greeting, 1]).max() > 3000 and np.abs(x[greeting, 0]).max() < 300

    # the API serves it, by range too
    key = await create_key(recd.db, "rec", ["recordings:read"])
    url = f"http://127.0.0.1:{recd.http_port}/api/v1/calls/{rec['id']}/recording"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:
        async with http.get(url) as resp:
            assert resp.status == 200 and resp.content_type == "audio/wav"
            assert await resp.read() == data
        async with http.get(url, headers={"Range": "bytes=44-1043"}) as resp:
            assert resp.status == 206 and await resp.read() == data[44:1044]
        async with http.get(url, headers={"Range": f"bytes={len(data) + 10}-"}) as resp:
            assert resp.status == 416
        # retention (1 day): the sweeper deletes it once it is due
        assert await recd.recordings.sweep(now=time.time() + 2 * 86400) == [rec["id"]]
        assert not path.exists()
        async with http.get(url) as resp:
            assert resp.status == 404


KILL_AGENT = """
greeting: Hello. This greeting is long so the call has something on both sides while the caller talks.
stt: {engine: fake, options: {transcripts: ["hello"]}}
voice: {engine: fake}
llm: {engine: dialog}
turn: {detector: silence, max_silence_ms: 400}
recording: {enabled: true, format: wav}
"""


async def start_daemon_process(tmp_path: Path, port: int, run: int) -> asyncio.subprocess.Process:
    cfg = tmp_path / "voxd.yaml"
    cfg.write_text(f"agents_dir: {tmp_path / 'agents'}\nstate_dir: {tmp_path / 'state'}\n"
                   "sip: {enabled: false}\nengines: {silero_confirm: false, preload: false}\n"
                   "http: {media_unauthenticated: true}\n")
    with open(tmp_path / f"daemon{run}.log", "w") as err:  # noqa: ASYNC230 (opened before the daemon starts)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "voxd.cli", "run", "-c", str(cfg), "--http-port", str(port),
            cwd=ROOT, env=dict(os.environ, VOXD_API_KEY_PEPPER=""), stdout=asyncio.subprocess.DEVNULL, stderr=err)
    async with aiohttp.ClientSession() as http, asyncio.timeout(60):
        while True:
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                    if r.status == 200:
                        return proc
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)


@pytest.mark.timeout(150)
async def test_a_daemon_killed_mid_call_leaves_a_readable_recording(tmp_path: Path) -> None:
    from tests.webhooks.receiver import free_port
    from voxd.store.db import Database

    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "front.yaml").write_text(KILL_AGENT)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = await start_daemon_process(tmp_path, port, 1)
    talked = 0.0
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(base + "/media/voxd") as ws:
            chunk = voiced(0.2)
            start = time.monotonic()
            while time.monotonic() - start < 4.5:  # 4.5 s of caller audio, sent in real time
                await ws.send_bytes(chunk)
                await asyncio.sleep(0.2)
            talked = time.monotonic() - start
            proc.send_signal(signal.SIGKILL)
            await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    (wav,) = list((tmp_path / "state" / "recordings").glob("call_*.wav"))
    ch, x = read_wav(wav)  # the header written at the last flush covers what is there
    assert ch == 2
    assert len(x) / SAMPLE_RATE >= talked - 2.0, (len(x) / SAMPLE_RATE, talked)
    assert np.abs(x[:, 0]).max() > 1000  # the caller's audio is in it
    assert (wav.with_suffix(".json")).exists()  # the sweeper can find it
    data = wav.read_bytes()

    # started again, the daemon puts the cut recording on its call record and serves it
    db = await Database.open(tmp_path / "state" / "voxd.db")
    key = await create_key(db, "rec", ["recordings:read"], pepper="")
    reader = await create_key(db, "reader", ["calls:read"], pepper="")
    await db.close()
    proc = await start_daemon_process(tmp_path, port, 2)
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:
            async with http.get(f"{base}/api/v1/calls/{wav.stem}/recording") as r:
                assert r.status == 200 and await r.read() == data
            async with http.get(f"{base}/api/v1/calls/{wav.stem}",
                                headers={"Authorization": f"Bearer {key}"}) as r:
                assert r.status == 403  # recordings:read alone does not read the call
            # the call the kill cut short is ended (node_lost, at the end of what was recorded) and analysed
            got: dict = {}
            for _ in range(300):
                async with http.get(f"{base}/api/v1/calls/{wav.stem}",
                                    headers={"Authorization": f"Bearer {reader}"}) as r:
                    assert r.status == 200
                    got = await r.json()
                if got.get("analysis"):
                    break
                await asyncio.sleep(0.1)
            assert got["status"] == "ended" and got["end_reason"] == "node_lost", got
            assert got["analysis"] and got["analysis"].get("quality") is not None
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    db = await Database.open(tmp_path / "state" / "voxd.db")
    try:
        call = await db.calls().get(wav.stem)
    finally:
        await db.close()
    assert call is not None
    info = call["metadata"]["recording"]
    assert info["status"] == "recovered" and info["sha256"] == hashlib.sha256(data).hexdigest()
    assert info["duration_s"] == round(len(x) / SAMPLE_RATE, 3)
