from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).parents[2] / "systemd" / "voxd.service"


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_unit_exposure_is_at_most_2() -> None:
    out = subprocess.run(["systemd-analyze", "security", "--offline=true", str(UNIT)],
                         capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for voxd.service: ([0-9.]+)", out.stdout + out.stderr)
    assert m, out.stdout[-2000:] + out.stderr[-2000:]
    assert float(m.group(1)) <= 2.0


def test_unit_is_notify_with_watchdog_and_reload() -> None:
    text = UNIT.read_text()
    for line in ("Type=notify", "WatchdogSec=", "ExecReload=/bin/kill -HUP $MAINPID", "StateDirectory=voxd",
                 "ConfigurationDirectory=voxd", "Restart=on-failure", "DynamicUser=yes"):
        assert line in text
