"""The README and config/voxd.yaml claims test: every example they give is run against a
real daemon started from config/voxd.yaml and the checkout's agents, so a claim that stops
holding fails CI. Examples that cannot run here carry a marker in the source saying why
(tests/promises/claims.py); this test lists them.

The examples run as a reader would type them, in order, in one shell session: `voxd` and
`.venv/bin/voxd` are this checkout's, `curl` fails on HTTP errors (``--fail-with-body``),
127.0.0.1:8080 is the daemon under test, and a placeholder such as ``vx_live_…`` or
``conv_…`` stands for the last such value an earlier example printed (the key
``voxd keys create`` printed, the conversation the previous `curl` started).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import stat
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.promises.claims import (
    Example,
    api_paths,
    concrete,
    local_urls,
    markdown_examples,
    path_pattern,
    yaml_comment_examples,
)
from voxd.api.app import SPECS_KEY
from voxd.app import Daemon
from voxd.config import load_config

ROOT = Path(__file__).parents[2]
README = ROOT / "README.md"
CONFIG = ROOT / "config" / "voxd.yaml"
VALUES = re.compile(r"\b(vx_live_[A-Za-z0-9]{38}|conv_[0-9a-f]{20}|call_[0-9a-f]{20})\b")
TIMEOUT_S = 180  # `voxd test` runs real engines; on a busy box it takes a while
CURL = shutil.which("curl") or "/usr/bin/curl"  # scripts/setup.sh installs it


def examples() -> list[Example]:
    return markdown_examples(README) + yaml_comment_examples(CONFIG)


class Session:
    """One reader's shell: a working folder holding the checkout's agents and config, this
    checkout's `voxd`, a `curl` that fails on HTTP errors, and the values printed so far."""

    def __init__(self, tmp: Path, port: int, state_dir: Path) -> None:
        self.port = port
        self.work = tmp / "work"
        bin_dir = self.work / ".venv" / "bin"
        bin_dir.mkdir(parents=True)
        for name in ("agents", "config", "scripts", "docs"):
            (self.work / name).symlink_to(ROOT / name)
        self._script(bin_dir / "voxd", f'exec "{sys.executable}" -m voxd.cli "$@"')
        self._script(bin_dir / "curl", f'exec "{CURL}" --fail-with-body -sS -m 60 "$@"')
        self.env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}", "PYTHONPATH": str(ROOT),
                    "VOXD_STATE_DIR": str(state_dir)}
        self.values: dict[str, str] = {}

    @staticmethod
    def _script(path: Path, body: str) -> None:
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)

    def prepare(self, command: str) -> str:
        command = command.replace("127.0.0.1:8080", f"127.0.0.1:{self.port}")
        for prefix in ("vx_live_", "conv_", "call_"):
            placeholder = prefix + "…"
            if placeholder in command:
                if prefix not in self.values:
                    raise AssertionError(f"no earlier example printed a {placeholder}")
                command = command.replace(placeholder, self.values[prefix])
        return command

    async def run(self, example: Example) -> tuple[int, str]:
        command = self.prepare(example.command)
        proc = await asyncio.create_subprocess_exec(
            "bash", "-c", command, cwd=self.work, env=self.env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return -1, f"timed out after {TIMEOUT_S} s"
        text = out.decode(errors="replace")
        for value in VALUES.findall(text):
            prefix = "vx_live_" if value.startswith("vx_live_") else value.split("_")[0] + "_"
            self.values[prefix] = value
        return proc.returncode or 0, text


async def daemon_from_the_config(tmp_path: Path) -> Daemon:
    cfg, base = load_config(CONFIG)
    cfg = cfg.model_copy(update={
        "state_dir": str(tmp_path / "state"),
        "http": cfg.http.model_copy(update={"port": 0}),
        "sip": cfg.sip.model_copy(update={"enabled": False}),
        "engines": cfg.engines.model_copy(update={"preload": False, "silero_confirm": False}),
    })
    d = Daemon(cfg, base)
    await d.start()
    return d


def test_every_example_runs_or_says_why_not() -> None:
    found = examples()
    assert len(found) >= 20
    skipped = [e for e in found if e.mode == "skip"]
    assert all(e.reason for e in skipped)
    run = [e for e in found if e.mode == "run"]
    assert any(e.command.startswith("curl") for e in run) and any("voxd" in e.command for e in run)
    assert any(e.source == "config/voxd.yaml" for e in run)
    print("\nskipped on purpose:\n" + "\n".join(f"  {e}  -- {e.reason}" for e in skipped))


@pytest.mark.timeout(400)  # every command of the README, one after another, against one daemon
async def test_readme_and_config_examples_against_a_daemon(tmp_path: Path) -> None:
    d = await daemon_from_the_config(tmp_path)
    try:
        session = Session(tmp_path, d.http_port or 0, tmp_path / "state")
        failures = []
        for example in (e for e in examples() if e.mode == "run"):
            status, out = await session.run(example)
            if status != 0:
                failures.append(f"{example}\n  exit {status}: {out.strip()[-600:]}")
        assert not failures, "examples that no longer hold:\n" + "\n".join(failures)
        assert (session.work / "agent.schema.json").exists()  # voxd schema -o wrote it
        assert set(session.values) >= {"vx_live_", "conv_"}
    finally:
        await d.stop()


async def test_every_path_and_page_named_exists(tmp_path: Path) -> None:
    text = README.read_text() + CONFIG.read_text()
    d = await daemon_from_the_config(tmp_path)
    try:
        routes = [path_pattern(s.path) for s in d._runner.app[SPECS_KEY]]  # type: ignore[union-attr]
        named = sorted(p for p in api_paths(text) if p != "/api/v1/…")
        assert "/api/v1/calendar.ics" in named and "/api/v1/conversations" in named
        missing = [p for p in named if not any(re.match(r, concrete(p)) for r in routes)]
        assert not missing, f"paths the docs name that the API does not serve: {missing}"
        async with aiohttp.ClientSession() as http:
            for page in sorted(local_urls(text)):
                async with http.get(f"http://127.0.0.1:{d.http_port}{page}") as r:
                    assert r.status == 200, f"{page}: {r.status}"
    finally:
        await d.stop()


@pytest.mark.engines
async def test_engine_examples(tmp_path: Path) -> None:
    """The WAV-file call: flite and sox make the caller, `voxd call` runs whisper and piper."""
    session = Session(tmp_path, 0, tmp_path / "state")
    for example in (e for e in examples() if e.mode == "engines"):
        status, out = await session.run(example)
        assert status == 0, f"{example}\n{out[-2000:]}"
    assert "bot   : Thanks for calling Acme Dental" in out
    assert (session.work / "bot.wav").stat().st_size > 10_000
