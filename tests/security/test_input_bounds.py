"""Findings 3 and 8: a YAML alias bomb expanded on the event loop, a 100k-deep JSON body
gave 500. Through the daemon's real listener and its own loader."""

from __future__ import annotations

import json
import resource
import threading
from pathlib import Path

import aiohttp
import pytest

from tests.daemons import start_daemon, time_agent
from voxd.agents.catalog import AgentCatalog
from voxd.api.keys_cli import create_key
from voxd.app import Daemon


def billion_laughs(levels: int = 9, width: int = 10) -> str:
    """`width`**`levels` list items from a few hundred bytes of anchors and aliases."""
    lines = [f"a0: &a0 [{','.join(['lol'] * width)}]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


BOMB = billion_laughs()  # 10**9 items; the old loader never finished (10**8 took 98 s and 2.3 GB)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.fixture
async def daemon(tmp_path: Path) -> Daemon:
    d = await start_daemon(tmp_path, {"fakey": time_agent()})
    yield d  # type: ignore[misc]
    await d.stop()


async def _post(d: Daemon, path: str, data: bytes | str, key: str) -> tuple[int, str, dict]:
    async with aiohttp.ClientSession() as http, http.post(
            f"http://127.0.0.1:{d.http_port}{path}", data=data,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"}) as r:
        text = await r.text()
        return r.status, r.content_type, json.loads(text) if r.content_type.endswith("json") else {"text": text}


async def test_the_alias_bomb_is_refused_before_expansion(daemon: Daemon) -> None:
    assert daemon.db is not None and len(BOMB) < 500
    key = await create_key(daemon.db, "reader", ["agents:read", "agents:write"])
    before = rss_mb()  # the peak so far: it must not move
    status, _, body = await _post(daemon, "/api/v1/agents/_validate", json.dumps({"yaml": BOMB}), key)
    assert status == 200 and body["valid"] is False
    assert "aliases" in body["errors"][0]["message"], body
    status, _, body = await _post(daemon, "/api/v1/agents", json.dumps({"yaml": "name: bomb\n" + BOMB}), key)
    assert status == 422 and "aliases" in body["detail"]
    assert rss_mb() - before < 50


async def test_a_bomb_on_disk_is_refused_with_its_file_and_line(tmp_path: Path) -> None:
    folder = tmp_path / "agents"
    folder.mkdir()
    (folder / "bomb.yaml").write_text("greeting: hi\n" + BOMB)
    (folder / "deep.yaml").write_text("greeting: " + "[" * 5000 + "]" * 5000 + "\n")
    (folder / "huge.yaml").write_text("greeting: hi\n" + "# padding\n" * 30_000)
    (folder / "loop.yaml").write_text("greeting: &g [*g]\n")
    (folder / "ok.yaml").write_text("stt: &fake {engine: fake}\nvoice: *fake\n")  # aliases in moderation
    cat = AgentCatalog(folder)
    report = await cat.refresh()
    assert cat.names() == ["ok"]
    errs = {Path(e.file).stem: e for e in report.errors}
    assert "aliases" in errs["bomb"].message and errs["bomb"].line is not None
    assert "deeper than" in errs["deep"].message
    assert "bytes" in errs["huge"].message
    assert "refers to itself" in errs["loop"].message


async def test_agent_yaml_is_parsed_off_the_event_loop(daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    from voxd.agents import loader

    assert daemon.db is not None
    seen: list[str] = []
    real = loader.check_bounds

    def spy(text: str) -> None:
        seen.append(threading.current_thread().name)
        real(text)

    monkeypatch.setattr(loader, "check_bounds", spy)
    key = await create_key(daemon.db, "writer", ["agents:read", "agents:write"])
    agent = "name: second\nstt: {engine: fake}\nvoice: {engine: fake}\n"
    assert (await _post(daemon, "/api/v1/agents/_validate", json.dumps({"yaml": agent}), key))[0] == 200
    assert (await _post(daemon, "/api/v1/agents", json.dumps({"yaml": agent}), key))[0] == 201
    loop_thread = threading.main_thread().name
    assert seen and all(name != loop_thread for name in seen), seen


@pytest.mark.parametrize("path", ["/api/v1/agents/_validate", "/api/v1/functions", "/webrtc/offer"])
async def test_deep_json_is_a_400_problem_never_a_500(daemon: Daemon, path: str) -> None:
    assert daemon.db is not None
    key = await create_key(daemon.db, "admin", ["admin"])
    for body in ("[" * 100_000 + "]" * 100_000, '{"a":' * 100 + "1" + "}" * 100, '{"yaml": "x"' + "]" * 10):
        status, ctype, problem = await _post(daemon, path, body, key)
        assert 400 <= status < 500, (path, status, problem)
        assert ctype == "application/problem+json", (path, body[:10], problem)
        assert problem["type"] == "urn:voxd:problem:malformed-request", problem
