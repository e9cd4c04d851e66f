"""`voxd keys create/list/revoke`: the key is printed once, only its hash is stored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def voxd(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, VOXD_STATE_DIR=str(tmp / "state"))
    return subprocess.run([sys.executable, "-m", "voxd.cli", *args], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, env=env)


def test_create_list_revoke(tmp_path: Path) -> None:
    made = voxd(tmp_path, "keys", "create", "--name", "ops", "--scope", "admin")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("vx_live_") and "shown only once" in made.stderr
    listed = voxd(tmp_path, "keys", "list")
    rows = [json.loads(line) for line in listed.stdout.splitlines() if line.startswith("{")]
    assert [(r["name"], r["scopes"], r["status"]) for r in rows] == [("ops", ["admin"], "active")]
    assert key not in listed.stdout and key not in listed.stderr
    assert key.encode() not in (tmp_path / "state" / "voxd.db").read_bytes()
    assert voxd(tmp_path, "keys", "revoke", rows[0]["id"]).returncode == 0
    again = [json.loads(line) for line in voxd(tmp_path, "keys", "list").stdout.splitlines() if line.startswith("{")]
    assert again[0]["status"] == "revoked"
    bad = voxd(tmp_path, "keys", "create", "--name", "x", "--scope", "everything")
    assert bad.returncode == 2 and "unknown scopes" in bad.stderr


def test_config_before_or_after_the_subcommand(tmp_path: Path) -> None:
    """`-c FILE` goes before or after `create`/`list`/`revoke`; both name the same file."""
    state = tmp_path / "elsewhere"
    cfg = tmp_path / "voxd.yaml"
    state.mkdir()
    cfg.write_text(f"database: {state / 'voxd.db'}\n")
    before = voxd(tmp_path, "keys", "-c", str(cfg), "create", "--name", "one", "--scope", "admin")
    after = voxd(tmp_path, "keys", "create", "--name", "two", "--scope", "admin", "-c", str(cfg))
    assert before.returncode == 0 and after.returncode == 0, (before.stderr, after.stderr)
    assert (state / "voxd.db").exists() and not (tmp_path / "state" / "voxd.db").exists()
    for args in (("keys", "list", "--config", str(cfg)), ("keys", "-c", str(cfg), "list")):
        listed = voxd(tmp_path, *args)
        names = [json.loads(line)["name"] for line in listed.stdout.splitlines() if line.startswith("{")]
        assert sorted(names) == ["one", "two"], listed.stderr
    missing = voxd(tmp_path, "keys", "create", "--name", "x", "--scope", "admin", "-c", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "nope.yaml" in missing.stderr
