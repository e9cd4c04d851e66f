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
