"""Issue 12, finding 5: descriptor exhaustion. The daemon under `prlimit --nofile=1024`
holds 1,100 idle connections from one source (HTTP and SIP over TCP) while /healthz,
/readyz and a SIP call from another source still succeed; the systemd unit's
LimitNOFILE covers what the shipped caps can use."""

from __future__ import annotations

import asyncio
import configparser
import re
import resource
import shutil
import socket
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml

from tests.interop.sipd import free_udp_tcp_port
from tests.security.test_media_sources import ATTACKER, CALLER, answered_call, count_packets, udp
from voxd.config import VoxdConfig
from voxd.ops.descriptors import budget

ROOT = Path(__file__).parents[2]

AGENT = """
greeting: "Hello, this greeting is long enough to keep sending audio for a couple of seconds."
stt: {engine: fake, options: {transcripts: ["hello"]}}
llm: {engine: dialog}
voice: {engine: fake}
turn: {detector: silence, max_silence_ms: 400}
"""


def test_the_unit_limit_covers_the_shipped_caps() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(ROOT / "systemd" / "voxd.service")
    limit = int(unit["Service"]["LimitNOFILE"])
    cfg = VoxdConfig.model_validate(yaml.safe_load((ROOT / "config" / "voxd.yaml").read_text()))
    assert budget(cfg) <= limit, (budget(cfg), limit)


async def _hold(host: str, port: int, n: int) -> list[socket.socket]:
    loop = asyncio.get_running_loop()
    held = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.bind((host, 0))
        try:
            await loop.sock_connect(s, ("127.0.0.1", port))
        except OSError:
            s.close()
            continue
        held.append(s)
    return held


@pytest.mark.skipif(not shutil.which("prlimit"), reason="prlimit (util-linux) not installed")
async def test_1100_idle_connections_from_one_source_under_1024_descriptors(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2400:  # the attacker (this test) needs its 1,100 sockets too
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    http_port, sip_port = free_udp_tcp_port(), free_udp_tcp_port()
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "front.yaml").write_text(AGENT)
    cfg = tmp_path / "voxd.yaml"
    cfg.write_text(
        f"agents_dir: {tmp_path / 'agents'}\nstate_dir: {tmp_path / 'state'}\ndefault_agent: front\n"
        f"http: {{port: {http_port}}}\nengines: {{silero_confirm: false, preload: false}}\ndrain_timeout_s: 0\n"
        f"sip: {{port: {sip_port}, allow_any: true, rtp_port_min: 34000, rtp_port_max: 34100}}\n"
    )
    log = tmp_path / "daemon.log"
    with log.open("w") as err:
        proc = await asyncio.create_subprocess_exec(
            "prlimit", "--nofile=1024:1024", sys.executable, "-m", "voxd.cli", "run", "-c", str(cfg),
            cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=err,
        )
    held: list[socket.socket] = []
    url = f"http://127.0.0.1:{http_port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with asyncio.timeout(60):
                while True:
                    assert proc.returncode is None, log.read_text()[-3000:]
                    try:
                        async with http.get(url + "/readyz") as r:
                            if r.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.2)
            held += await _hold(ATTACKER, http_port, 200)
            held += await _hold(ATTACKER, sip_port, 900)
            assert len(held) == 1100  # the kernel completes them; the daemon closes those over the caps
            await asyncio.sleep(1.0)
            async with http.get(url + "/healthz") as r:
                assert r.status == 200
            async with http.get(url + "/readyz") as r:
                ready = await r.json()
            assert r.status == 200 and ready["checks"]["descriptors"], ready
            assert ready["descriptors"]["limit"] == 1024
            assert ready["descriptors"]["open"] < 400, ready  # 64 HTTP + 32 SIP held, not 1,100
        sip, caller = udp(CALLER), udp(CALLER)
        try:
            media = await answered_call(sip_port, sip, caller, "under-flood-1")
            caller.sendto(b"\x80\x00\x00\x01" + b"\x00" * 8 + b"\xff" * 160, ("127.0.0.1", media))
            assert await count_packets(caller, 1.0) >= 40  # the greeting's audio arrives
        finally:
            sip.close()
            caller.close()
        assert "file descriptor limit 1024 is below" in log.read_text()
        assert re.search(r"SIP/TCP connection from 127\.0\.0\.3 refused", log.read_text())
    finally:
        for s in held:
            s.close()
        if proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(15):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
