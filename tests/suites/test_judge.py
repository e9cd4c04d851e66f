"""`judge:` expectations, answered by an LLM (a local OpenAI-compatible server here), and
skipped with a note when no judge LLM is configured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cloud.fake_openai import FakeOpenAI
from voxd.cli import main

ROOT = Path(__file__).parents[2]

SUITE = """\
agent: {agent}
{judge}
scenarios:
  - name: time, judged
    steps:
      - say: What time is it?
        expect: {{tool: get_current_time}}
        judge: the agent told the caller the time
    judge: the agent was polite
"""


def write(tmp_path: Path, judge: str) -> Path:
    (tmp_path / "tests").mkdir(exist_ok=True)
    suite = tmp_path / "tests" / "minimal.yaml"
    suite.write_text(SUITE.format(agent=ROOT / "agents" / "minimal.yaml", judge=judge))
    (tmp_path / "voxd.yaml").write_text(
        "egress:\n  allow:\n    - {networks: [127.0.0.1/32], uses: [providers]}\n")
    return suite


async def run(tmp_path: Path, suite: Path) -> tuple[int, dict]:
    import asyncio

    report = tmp_path / "r.json"
    args = ["test", str(suite), "--text", "-c", str(tmp_path / "voxd.yaml"), "--junit", "", "--json", str(report)]
    rc = await asyncio.to_thread(main, args)  # main runs its own event loop
    return rc, json.loads(report.read_text())


async def test_judge_verdicts_are_recorded_and_a_fail_fails(tmp_path: Path) -> None:
    fake = await FakeOpenAI([
        '{"verdict": "pass", "reason": "it said the time"}',
        '{"verdict": "fail", "reason": "it never said please"}',
    ]).start()
    try:
        suite = write(tmp_path, f'judge_llm: {{engine: openai-compatible, base_url: "{fake.url}", model: fake-model}}')
        rc, report = await run(tmp_path, suite)
    finally:
        await fake.stop()
    assert rc == 1
    (sc,) = report["scenarios"]
    assert sc["steps"][0]["judge"] == {"statement": "the agent told the caller the time", "verdict": "pass",
                                       "reason": "it said the time"}
    assert sc["judge"]["verdict"] == "fail"
    assert sc["failures"] == ["judge: 'the agent was polite': fail: it never said please"]
    # the judge saw the transcript with the function call
    asked = fake.requests[0]["messages"][-1]["content"]
    assert "caller: What time is it?" in asked and "function get_current_time" in asked
    assert "Statement: the agent told the caller the time" in asked


async def test_without_a_judge_llm_judged_expectations_are_skipped_with_a_note(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, report = await run(tmp_path, write(tmp_path, ""))
    assert rc == 0
    (sc,) = report["scenarios"]
    assert sc["status"] == "passed"
    assert sc["steps"][0]["judge"]["verdict"] == "skipped"
    assert "no judge LLM is configured" in sc["steps"][0]["judge"]["reason"]
    assert "judge skipped: no judge LLM is configured" in capsys.readouterr().out
