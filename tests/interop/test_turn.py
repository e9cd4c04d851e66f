"""WebRTC through a real TURN server (coturn's turnserver) on 127.0.0.1: the daemon's
`webrtc.ice_servers` reach aiortc, which allocates a relay with the configured user and
the credential read from its environment variable, offers it, and the call still runs."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemons import start_daemon, time_agent
from tests.interop.sipd import free_port
from tests.net.test_webrtc import Browser, token_for
from tests.synth import silence

pytestmark = [pytest.mark.interop,
              pytest.mark.skipif(shutil.which("turnserver") is None, reason="coturn's turnserver is not installed")]

RELAY_PORTS = (47000, 47200)


@pytest.fixture
def turn(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    port = free_port()
    log = tmp_path / "turn.log"
    proc = subprocess.Popen(
        ["turnserver", "-n", "-v", "--listening-ip=127.0.0.1", f"--listening-port={port}", "--relay-ip=127.0.0.1",
         f"--min-port={RELAY_PORTS[0]}", f"--max-port={RELAY_PORTS[1]}", "--lt-cred-mech",
         "--user=voxd:turn-secret", "--realm=voxd.test", "--no-tls", "--no-dtls", "--allow-loopback-peers",
         "--no-cli", f"--log-file={log}", "--simple-log", f"--pidfile={tmp_path / 'turn.pid'}",
         f"--db={tmp_path / 'turn.db'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield port, log
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def call_through_turn(tmp_path: Path, port: int, monkeypatch: pytest.MonkeyPatch, credential: str) -> str:
    """One browser call with the TURN server configured (credential from the environment);
    returns voxd's answer SDP once the call has run and the caller hung up."""
    monkeypatch.setenv("VOXD_TEST_TURN_CREDENTIAL", credential)
    webrtc: dict[str, Any] = {"hosts": ["127.0.0.1"], "ice_servers": [
        {"urls": f"turn:127.0.0.1:{port}?transport=udp", "username": "voxd", "credential_env": "VOXD_TEST_TURN_CREDENTIAL"}]}
    d = await start_daemon(tmp_path, {"fakey": time_agent()}, webrtc=webrtc)
    b = Browser(silence(1.0))
    try:
        url = f"http://127.0.0.1:{d.http_port}"
        status, answer = await b.offer(url, token=await token_for(url, "fakey"))
        assert status == 200, answer
        await b.wait_for(lambda m: m["type"] == "started")  # ICE and DTLS completed: the call runs
        b.send({"type": "hangup"})
        await b.wait_for(lambda m: m["type"] == "end")
    finally:
        await b.close()
        await d.stop()
    return str(answer["sdp"])


async def test_call_offers_a_relay_from_the_configured_turn_server(
        tmp_path: Path, turn: tuple[int, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    port, log = turn
    sdp = await call_through_turn(tmp_path, port, monkeypatch, "turn-secret")
    relays = [int(m.group(1)) for m in re.finditer(r"a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+) typ relay", sdp)]
    assert relays and all(RELAY_PORTS[0] <= p <= RELAY_PORTS[1] for p in relays), sdp
    text = log.read_text()
    assert "user <voxd>: incoming packet ALLOCATE processed, success" in text, text[-2000:]


async def test_a_wrong_turn_credential_still_leaves_a_working_call(
        tmp_path: Path, turn: tuple[int, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """A misconfigured TURN server costs the relay candidate, not the call."""
    port, _ = turn
    sdp = await call_through_turn(tmp_path, port, monkeypatch, "wrong")
    assert "typ relay" not in sdp and "typ host" in sdp
