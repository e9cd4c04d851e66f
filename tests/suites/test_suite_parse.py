"""Suite files: what is accepted, and errors that name the file, the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxd.suites.model import SuiteError, load_suite_file, parse_suite, suite_files

ROOT = Path(__file__).parents[2]

GOOD = """\
agent: receptionist
voice: flite:kal
scenarios:
  - name: time
    steps:
      - say: What time is it?
        expect: {tool: get_current_time, args: {}}
        reply_contains: London
      - dtmf: "12#"
      - say: [What time, is it?]
        pause_ms: 700
      - interrupt: Mm-hmm.
        after_ms: 500
        no_interruption: true
      - silence: 4
        no_reply: true
      - wait: 1.5
        hung_up: false
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(SuiteError) as e:
        parse_suite(text, "s.yaml")
    return [str(x) for x in e.value.errors]


def test_a_good_suite_parses_with_step_lines() -> None:
    loaded = parse_suite(GOOD, "agents/tests/s.yaml")
    sc = loaded.suite.scenarios[0]
    assert [s.action for s in sc.steps] == ["say", "dtmf", "say", "interrupt", "silence", "wait"]
    assert sc.steps[0].tool_expects[0].tool == "get_current_time"
    assert sc.steps[2].words == "What time is it?"
    assert loaded.line_of(0) == 4
    assert [loaded.line_of(0, j) for j in range(6)] == [6, 9, 10, 12, 15, 17]


def test_the_shipped_suites_parse_and_name_their_agents() -> None:
    files = suite_files([ROOT / "agents" / "tests"])
    assert files
    total = 0
    for f in files:
        loaded = load_suite_file(f)
        assert loaded.agent_path().is_file(), f
        total += len(loaded.suite.scenarios)
    assert total >= 30


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("agent: a\nscenarios:\n  - name: x\n    steps:\n      - say: hi\n        dtmf: '1'\n",
         "s.yaml:5: scenarios.0.steps.0: Value error, a step has exactly one of say, audio, dtmf, wait, silence, "
         "interrupt; this one has say, dtmf"),
        ("agent: a\nscenarios:\n  - name: x\n    steps:\n      - expect: {tool: t}\n",
         "s.yaml:5: scenarios.0.steps.0: Value error, a step has exactly one of"),
        ("agent: a\nscenarios:\n  - name: x\n    steps:\n      - say: hi\n        reply_contain: x\n",
         "s.yaml:6: scenarios.0.steps.0.reply_contain: Extra inputs are not permitted"),
        ("agent: a\nscenarios:\n  - name: x\n    steps:\n      - dtmf: '12x'\n",
         "s.yaml:5: scenarios.0.steps.0.dtmf: Value error, digits must be from"),
        ("agent: a\nscenarios:\n  - name: x\n    steps:\n      - say: hi\n        expect: {args: {a: 1}}\n",
         "s.yaml:6: scenarios.0.steps.0.expect.tool: Field required"),
        ("agent: a\nscenarios:\n  - name: x\n    steps:\n      - say: hi\n        reply_matches: '(oops'\n",
         "s.yaml:6: scenarios.0.steps.0.reply_matches: Value error, not a regular expression"),
        ("agent: a\nvoice: robot\nscenarios:\n  - name: x\n    steps: [{say: hi}]\n",
         "s.yaml:2: voice: Value error, voice 'robot': one of flite:slt"),
        ("agent: a\nscenarios:\n  - name: x\n    steps: []\n",
         "s.yaml:4: scenarios.0.steps: List should have at least 1 item"),
        ("agent: a\nscenarios:\n  - {name: x, steps: [{say: a}]}\n  - {name: x, steps: [{say: b}]}\n",
         "s.yaml: Value error, scenario names must be unique: x"),
        ("scenarios:\n  - {name: x, steps: [{say: a}]}\n", "s.yaml: agent: Field required"),
        ("agent: a\nscenarios:\n  - name: x\n    steps:\n      - wait: -1\n",
         "s.yaml:5: scenarios.0.steps.0.wait: Input should be greater than 0"),
        ("agent: a\nscenarios: [\n", "s.yaml:3: YAML syntax"),
        ("- just\n- a list\n", "s.yaml:1: a suite file is a mapping"),
    ],
)
def test_errors_name_file_line_and_field(text: str, expected: str) -> None:
    errors = errors_of(text)
    assert any(e.startswith(expected) for e in errors), errors


def test_hostile_yaml_is_refused_by_the_bounded_loader() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8))
    errors = errors_of(bomb)
    assert "expands to more than" in errors[0]


def test_agent_reference_resolves_next_to_the_suite_folder(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "bot.yaml").write_text("name: bot\n")
    suite = tmp_path / "tests" / "bot.yaml"
    suite.write_text("agent: bot\nscenarios: [{name: x, steps: [{say: hi}]}]\n")
    assert load_suite_file(suite).agent_path() == tmp_path / "bot.yaml"
    assert suite_files([tmp_path / "tests"]) == [suite]


def test_a_missing_agent_is_a_suite_error_on_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from voxd.cli import main

    suite = tmp_path / "s.yaml"
    suite.write_text("# a suite\nagent: nobody\nscenarios: [{name: x, steps: [{say: hi}]}]\n")
    assert main(["test", str(suite), "--text", "--junit", "", "--json", ""]) == 1
    out = capsys.readouterr().out
    assert f"suite error: {suite}:2: agent: no agent file 'nobody'" in out
