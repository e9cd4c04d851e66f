from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from voxd.agents.catalog import AgentCatalog
from voxd.agents.loader import AgentLoadError, load_agent_file, parse_agent
from voxd.agents.schema import AgentConfig

ROOT = Path(__file__).parents[2]


def test_shipped_agents_are_valid() -> None:
    for p in (ROOT / "agents").glob("*.yaml"):
        a = load_agent_file(p)
        assert a.name == p.stem and len(a.version) == 12


def test_exported_schema_is_in_sync() -> None:
    on_disk = json.loads((ROOT / "agents" / "agent.schema.json").read_text())
    assert on_disk["properties"] == AgentConfig.model_json_schema()["properties"], "run: voxd schema -o agents/agent.schema.json"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: x\nturn:\n  max_silence_ms: 5\n", "a.yaml:3: turn.max_silence_ms: Input should be greater than or equal to 100"),
        ("name: x\nvoice: {engine: sam}\n", "a.yaml:2: voice.engine: Input should be 'piper', 'espeak'"),
        ("name: x\nbogus: 1\n", "a.yaml:2: bogus: Extra inputs are not permitted"),
        ("name: x\n  greeting: [\n", "a.yaml:2: YAML syntax"),
        ("name: x\ndtmf:\n  main_menu: nope\n", "a.yaml:2: dtmf: Value error, main_menu 'nope' is not a defined menu"),
        ("name: x\ndialog:\n  intents:\n    - {name: t, examples: [hi], tool: calculate}\n", "tool 'calculate' is not in this agent's tools"),
        ("- a\n- b\n", "must be a mapping"),
    ],
)
def test_errors_name_file_line_and_field(text: str, expected: str) -> None:
    with pytest.raises(AgentLoadError) as e:
        parse_agent(text, "a.yaml")
    assert expected in str(e.value)


def write(p: Path, text: str) -> None:
    p.write_text(text)
    st = p.stat()
    os.utime(p, (st.st_atime, st.st_mtime + 1))  # make the change visible to mtime polling


def test_reload_keeps_last_good_version_and_live_calls_keep_theirs(tmp_path: Path) -> None:
    f = tmp_path / "bob.yaml"
    write(f, "greeting: Version one.\n")
    reg = AgentCatalog(tmp_path)
    reg.reload()
    live_call_agent = reg.get("bob")
    assert live_call_agent is not None and live_call_agent.config.greeting == "Version one."
    write(f, "greeting: [broken\n")
    report = reg.reload()
    assert report.errors and "bob.yaml:2: YAML syntax" in str(report.errors[0])
    assert reg.get("bob") is live_call_agent  # the last good one keeps serving
    write(f, "greeting: Version two.\n")
    report = reg.reload()
    assert report.updated == ["bob"] and not reg.errors
    new = reg.get("bob")
    assert new is not None and new.config.greeting == "Version two." and new.version != live_call_agent.version
    assert live_call_agent.config.greeting == "Version one."  # frozen: a live call is unaffected
    f.unlink()
    assert reg.reload().removed == ["bob"] and reg.get("bob") is None


def test_write_is_atomic_and_validated(tmp_path: Path) -> None:
    reg = AgentCatalog(tmp_path)
    a = reg.write("sue", "name: sue\ngreeting: Hi.\n")
    assert a.path == tmp_path / "sue.yaml" and reg.get("sue") is a
    with pytest.raises(AgentLoadError):
        reg.write("sue", "name: sue\nturn: {max_silence_ms: 1}\n")
    assert (tmp_path / "sue.yaml").read_text() == "name: sue\ngreeting: Hi.\n"
    assert not list(tmp_path.glob(".*tmp"))
    assert reg.for_number("sue") is a


def test_voxd_check_cli(tmp_path: Path) -> None:
    (tmp_path / "ok.yaml").write_text("greeting: Hi.\n")
    (tmp_path / "bad.yaml").write_text("greeting: Hi.\nturn: {min_silence_ms: 1}\n")
    run = lambda: subprocess.run([sys.executable, "-m", "voxd.cli", "check", "--agents", str(tmp_path)],  # noqa: E731
                                 capture_output=True, text=True, timeout=60)
    r = run()
    assert r.returncode == 1 and "bad.yaml:2: turn.min_silence_ms" in r.stderr and "agent=ok" in r.stdout
    (tmp_path / "bad.yaml").unlink()
    assert run().returncode == 0
