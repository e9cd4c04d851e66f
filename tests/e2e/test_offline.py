"""The default daemon answers a call inside a network namespace that has only
loopback: proof that nothing on the call path needs the network."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
pytestmark = pytest.mark.engines


def can_unshare() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not can_unshare(), reason="needs root, unshare and ip (CI runs as root)")
def test_default_daemon_completes_a_call_without_network(tmp_path: Path) -> None:
    script = f"ip link set lo up && ip -o link show | wc -l && exec {sys.executable} tests/e2e/offline_call.py 18089 {tmp_path}"
    proc = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True, timeout=400, cwd=ROOT)
    log = (tmp_path / "daemon.log").read_text() if (tmp_path / "daemon.log").exists() else ""
    assert proc.returncode == 0, proc.stderr[-2000:] + log[-3000:]
    links, summary = proc.stdout.strip().splitlines()[0], json.loads(proc.stdout.strip().splitlines()[-1])
    assert links.strip() == "1"  # only lo exists in this namespace
    said = summary["transcripts"]
    assert said[0][0] == "bot" and "Acme" in said[0][1]
    assert any(s == "caller" and "time" in t.lower() for s, t in said), said
    assert any(s == "bot" and "here in London" in t for s, t in said), said
    assert summary["bot_audio_bytes"] > 16000 * 2 and summary["end"] == "caller_hangup"
