"""The systemd unit leaves MemoryDenyWriteExecute= off because of whisper; this keeps that
claim true. Each engine runs in a child process under the kernel's per-process form of
the rule, prctl(PR_SET_MDWE) (Linux 6.3+), through scripts/check_mdwe.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_mdwe.py"

pytestmark = pytest.mark.engines


def run(engine: str, mdwe: bool) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(SCRIPT), "--engine", engine] + (["--mdwe"] if mdwe else [])
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.fixture(scope="module", autouse=True)
def _kernel_has_mdwe() -> None:
    if run("webrtcvad", mdwe=True).returncode == 2:
        pytest.skip("this kernel has no PR_SET_MDWE")


@pytest.mark.parametrize("engine", ["webrtcvad", "silero", "smart_turn", "piper", "espeak"])
def test_engine_runs_with_memory_deny_write_execute(engine: str) -> None:
    proc = run(engine, mdwe=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_whisper_needs_writable_executable_memory() -> None:
    """CTranslate2 compiles its kernels at run time (oneDNN's JIT). If this starts to pass,
    a CTranslate2 update made MemoryDenyWriteExecute=yes possible: turn it on in the unit."""
    assert run("whisper", mdwe=False).returncode == 0
    proc = run("whisper", mdwe=True)
    assert proc.returncode == 1 and "FAILED" in proc.stdout, proc.stdout + proc.stderr
