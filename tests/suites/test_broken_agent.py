"""`voxd test` fails the right scenarios of a deliberately broken agent, saying why.

Run as text conversations (tools and slots without audio), so this needs no speech
engine; tests/suites/test_suites_engines.py runs calls."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voxd.cli import main

ROOT = Path(__file__).parents[2]
SUITE = ROOT / "agents" / "tests" / "receptionist.yaml"


def broken_receptionist(tmp_path: Path) -> Path:
    text = (ROOT / "agents" / "receptionist.yaml").read_text()
    # a wrong tool name: the time intent calls the calculator
    text = text.replace("      tool: get_current_time\n", "      tool: calculate\n", 1)
    # a slot re-prompt loop: the time slot can never be filled, so it is asked again and again
    text = text.replace("{name: time, extract: time,", "{name: time, extract: weekday,", 1)
    path = tmp_path / "receptionist.yaml"
    path.write_text(text)
    return path


def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, dict]:
    report = tmp_path / "report.json"
    rc = main(["test", str(SUITE), "--text", "--junit", str(tmp_path / "junit.xml"), "--json", str(report), *extra])
    return rc, capsys.readouterr().out, json.loads(report.read_text())


def test_the_shipped_agent_passes_as_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, report = run(tmp_path, capsys)
    assert rc == 0, out
    assert report["counts"]["failed"] == 0 and report["counts"]["passed"] >= 15, report["counts"]
    junit = (tmp_path / "junit.xml").read_text()
    assert "<testsuite " in junit and 'name="opening hours"' in junit


def test_a_broken_agent_fails_the_right_scenarios(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    agent = broken_receptionist(tmp_path)
    # the breakage is in the dialog block (an intent's tool, a slot's extractor): judged on
    # the dialog engine, which follows it to the letter (the local model only learns from it)
    rc, out, report = run(tmp_path, capsys, "--agent", str(agent), "--llm", "dialog")
    assert rc == 1
    failed = {s["scenario"]: s["failures"] for s in report["scenarios"] if s["status"] == "failed"}
    time_scenarios = {"asks the time", "asks the time, another voice", "asks the time, festival voice",
                      "two questions in one call", "division by zero is a tool error, said politely",
                      "long silence, the call stays up"}
    # (the scenario that never gives a time does not notice the loop, rightly)
    slot_scenarios = {"booking, all in one sentence", "booking, slot by slot", "booking, day given, time asked"}
    assert set(failed) == time_scenarios | slot_scenarios, sorted(failed)
    # the reasons name what went wrong, on the step's line
    why = failed["asks the time"][0]
    line = SUITE.read_text().splitlines().index("      - say: What time is it?") + 1
    assert why.startswith(f"step 1 (say 'What time is it?', line {line}): expected a call to get_current_time, "
                          "the bot called calculate("), why
    loop = failed["booking, slot by slot"]
    assert any("step 3" in f and "reply lacks 'booked'" in f and "And what time on Thursday?" in f for f in loop), loop
    assert "FAIL" in out and "expected a call to get_current_time" in out
    # the scenarios the breakage does not touch still pass
    passed = {s["scenario"] for s in report["scenarios"] if s["status"] == "passed"}
    assert {"opening hours", "multiplication", "says goodbye"} <= passed
