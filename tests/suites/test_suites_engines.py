"""`voxd test agents/tests/` is green as calls through the real engines (whisper tiny.en,
piper/espeak, Silero, Smart Turn), and a broken agent fails with a readable reason."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from tests.suites.test_broken_agent import broken_receptionist

pytestmark = [pytest.mark.engines, pytest.mark.timeout(1800)]
ROOT = Path(__file__).parents[2]


def voxd_test(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    report = tmp_path / "report.json"
    r = subprocess.run([sys.executable, "-m", "voxd.cli", "test", *args, "--junit", str(tmp_path / "junit.xml"),
                        "--json", str(report)], cwd=ROOT, capture_output=True, text=True, timeout=1500)
    return r, json.loads(report.read_text())


def test_the_shipped_suites_pass_as_calls(tmp_path: Path) -> None:
    r, report = voxd_test(tmp_path, "agents/tests/")
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    counts = report["counts"]
    assert counts["failed"] == counts["error"] == 0
    assert sum(counts.values()) >= 30 and counts["passed"] >= 28, counts
    cases = ET.parse(tmp_path / "junit.xml").getroot().iter("testcase")
    assert len(list(cases)) == sum(counts.values())


def test_a_broken_agent_fails_its_calls_with_a_reason(tmp_path: Path) -> None:
    agent = broken_receptionist(tmp_path)
    r, report = voxd_test(tmp_path, "agents/tests/receptionist.yaml", "--agent", str(agent), "-k", "booking, slot")
    assert r.returncode == 1, r.stdout
    (sc,) = report["scenarios"]
    assert sc["status"] == "failed"
    assert any("step 3" in f and "reply lacks 'booked'" in f for f in sc["failures"]), sc["failures"]
    assert "FAIL" in r.stdout and "transcript:" in r.stdout
