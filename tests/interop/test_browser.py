"""Headless Chromium calls the daemon's /talk page over WebRTC with a fake microphone.

Needs Debian `chromium` and node/npm; playwright-core is installed into
tests/interop/browser/node_modules (npm ci) on first use. The screenshot is kept in
artifacts/ for CI.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.net.test_webrtc import ended_record
from voxd.app import Daemon
from voxd.config import VoxdConfig
from voxd.media.audio import read_wav_as, write_wav

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("browser")
SPEECH = ROOT / "tests" / "data" / "speech"
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

FAKE_AGENT = """
greeting: Hello and welcome to the browser test.
stt: {engine: fake, options: {transcripts: ["what time is it"]}}
llm: {engine: dialog}
voice: {engine: fake}
turn: {detector: silence, max_silence_ms: 500}
tools: [get_current_time]
dialog:
  intents:
    - {name: time, examples: ["what time is it"], tool: get_current_time, reply: "It's {result.spoken}."}
"""

WHISPER_AGENT = """
greeting: Hello! Ask me the time.
stt: {engine: whisper, model: tiny.en}
voice: {engine: espeak}
tools: [get_current_time]
dialog:
  intents:
    - {name: time, examples: ["what time is it"], keywords: [time], tool: get_current_time, reply: "It's {result.spoken}."}
"""


def _npm_ready() -> None:
    if (DRIVER / "node_modules" / "playwright-core").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed")
    cmd = [npm, "ci" if (DRIVER / "package-lock.json").exists() else "install", "--no-audit", "--no-fund"]
    subprocess.run(cmd, cwd=DRIVER, check=True, timeout=300, capture_output=True)


@pytest.fixture
async def daemon(tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    if shutil.which(CHROMIUM) is None or shutil.which("node") is None:
        pytest.skip("needs Debian chromium and node")
    await asyncio.to_thread(_npm_ready)
    real = request.node.get_closest_marker("engines") is not None
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "fakey.yaml").write_text(FAKE_AGENT)
    if real:
        (tmp_path / "agents" / "whisper.yaml").write_text(WHISPER_AGENT)
    cfg = VoxdConfig.model_validate({
        "state_dir": str(tmp_path / "state"), "agents_dir": str(tmp_path / "agents"),
        "http": {"port": 0}, "sip": {"enabled": False},
        "engines": {"silero_confirm": real, "preload": real},
    })
    d = Daemon(cfg, tmp_path)
    await d.start()
    yield d
    await d.stop()


def microphone_wav(path: Path, speech: Path) -> Path:
    """48 kHz: silence through the greeting, the utterance, then long silence (Chromium loops the file)."""
    pcm = read_wav_as(speech, 48000)
    write_wav(path, np.concatenate([np.zeros(48000 * 3, np.int16), pcm, np.zeros(48000 * 30, np.int16)]), 48000)
    return path


async def drive(url: str, wav: Path, screenshot: Path) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        "node", str(DRIVER / "drive.mjs"), url, str(wav), str(screenshot), "5", cwd=DRIVER,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={"CHROMIUM": CHROMIUM, "PATH": "/usr/bin:/bin"})
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
    assert lines, f"driver printed nothing (exit {proc.returncode}): {err.decode()[-2000:]}"
    result: dict[str, Any] = json.loads(lines[-1])
    result["stderr"] = err.decode()[-2000:]
    return result


async def test_browser_calls_the_talk_page(daemon: Daemon, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "browser-talk.png"
    wav = microphone_wav(tmp_path / "mic.wav", SPEECH / "flite-slt" / "what_time.16k.wav")
    result = await drive(f"http://127.0.0.1:{daemon.http_port}/talk/fakey", wav, shot)
    assert result["ok"], result
    said = [t for t in result["transcript"] if t["speaker"] == "caller"]
    assert said and said[0]["text"] == "what time is it"
    assert "what time is it" in result["transcriptText"]
    assert result["maxLevel"] > 0.01  # the AnalyserNode heard the bot (fake TTS: a 440 Hz tone at -12 dBFS)
    assert result["dtmf"] == ["5"]
    assert shot.stat().st_size > 1000
    rec = await ended_record(daemon, result["callId"])
    assert rec is not None and rec["transport"] == "webrtc"
    assert rec["end_reason"] == "caller_hangup"
    assert [(d["digit"], d["source"]) for d in rec["dtmf"]] == [("5", "webrtc")]
    assert "Chrome" in rec["metadata"]["user_agent"]
    # the page sent its offer at once and trickled its candidates (8 here; a box whose only
    # interface is loopback gives Chromium none to send), then end-of-candidates
    assert result["trickleDone"] is True
    assert rec["metadata"].get("ice_candidates_trickled", 0) == result["trickled"]


@pytest.mark.engines
async def test_browser_with_the_whisper_agent(daemon: Daemon, tmp_path: Path) -> None:
    """The same call with real recognition: whisper tiny.en hears a flite voice through Opus."""
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "browser-talk-whisper.png"
    wav = microphone_wav(tmp_path / "mic.wav", SPEECH / "flite-slt" / "what_time.16k.wav")
    result = await drive(f"http://127.0.0.1:{daemon.http_port}/talk/whisper", wav, shot)
    assert result["ok"], result
    said = " ".join(t["text"] for t in result["transcript"] if t["speaker"] == "caller").lower()
    assert "time" in said, result["transcript"]
    assert result["maxLevel"] > 0.01 and result["dtmf"] == ["5"]
