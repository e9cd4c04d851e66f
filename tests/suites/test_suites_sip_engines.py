"""`voxd test --transport sip`: shipped scenarios as real SIP/RTP calls to an in-process
voxd endpoint with the real engines (whisper tiny.en hears the caller and, on the
caller's side, the bot; piper/espeak speak; RFC 4733 digits, REFER, BYE), and a broken
expectation failing with a readable reason."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from voxd.agents.loader import _plain, load_yaml

pytestmark = [pytest.mark.engines, pytest.mark.timeout(900)]
ROOT = Path(__file__).parents[2]


def voxd_test(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    report = tmp_path / "report.json"
    r = subprocess.run([sys.executable, "-m", "voxd.cli", "test", "--transport", "sip", *args,
                        "--junit", str(tmp_path / "junit.xml"), "--json", str(report)],
                       cwd=ROOT, capture_output=True, text=True, timeout=800)
    return r, json.loads(report.read_text())


def shipped(tmp_path: Path, suite: str, names: list[str]) -> Path:
    """A suite of the named scenarios of a shipped one, as they are, for one process."""
    data = _plain(load_yaml((ROOT / "agents" / "tests" / suite).read_text(), suite))
    data["agent"] = str(ROOT / "agents" / f"{data['agent']}.yaml")
    data["scenarios"] = [s for s in data["scenarios"] if s["name"] in names]
    assert [s["name"] for s in data["scenarios"]] == names
    path = tmp_path / suite
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_shipped_scenarios_pass_over_sip(tmp_path: Path) -> None:
    # a function call and a number in the reply, a keypad transfer (REFER), a keypad hangup
    # (BYE), a latency bound: observed from the SIP caller's side (tools from the daemon's record)
    names = ["asks the time", "keypad 3, transfer to sales", "keypad 9, hang up", "replies fast enough"]
    r, report = voxd_test(tmp_path, str(shipped(tmp_path, "receptionist.yaml", names)))
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    by = {sc["scenario"]: sc for sc in report["scenarios"]}
    assert sorted(by) == sorted(names) and all(sc["mode"] == "sip" for sc in by.values())
    step = by["asks the time"]["steps"][0]
    assert [t["name"] for t in step["tools"]] == ["get_current_time"]
    assert step["replies"] and step["texts"]  # heard on the line, and the bot's own text
    assert by["keypad 3, transfer to sales"]["steps"][0]["transfers"] == ["sip:sales@127.0.0.1"]
    assert by["keypad 9, hang up"]["steps"][0]["hung_up"] is True
    (latency,) = by["replies fast enough"]["steps"][0]["latencies_ms"]
    assert latency > 0


def test_a_broken_expectation_fails_over_sip_with_its_reason(tmp_path: Path) -> None:
    suite = tmp_path / "broken.yaml"
    suite.write_text(f"""
agent: {ROOT / "agents" / "minimal.yaml"}
scenarios:
  - name: expects the wrong tool and words
    steps:
      - say: What time is it?
        expect: {{tool: calculate}}
        reply_contains: bananas
""")
    r, report = voxd_test(tmp_path, str(suite))
    assert r.returncode == 1, r.stdout
    (sc,) = report["scenarios"]
    assert sc["status"] == "failed"
    fails = sc["failures"]
    assert any("expected a call to calculate, the bot called get_current_time({})" in f for f in fails), fails
    assert any("reply lacks 'bananas': the bot said" in f for f in fails), fails
    assert "FAIL" in r.stdout and "expects the wrong tool and words" in r.stdout
