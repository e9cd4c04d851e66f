"""voxd against Kamailio as its carrier (tests/interop/kamailio/carrier.cfg), all on
loopback: voxd registers with digest, refreshes before the (capped) expiry, a sipp
caller calls the AOR through Kamailio and reaches the registration's agent with audio
both ways, the drain unregisters (Expires: 0); voxd's outbound call through the trunk
answers Kamailio's 407 and reaches a sipp callee."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from tests.interop.kamailio import free_port, kamailio
from tests.interop.test_sipp import AGENT, caller_audio, records, scenario
from voxd.api.keys_cli import create_key
from voxd.app import Daemon
from voxd.config import VoxdConfig

pytestmark = [pytest.mark.interop,
              pytest.mark.skipif(not shutil.which("sipp"), reason="sipp not installed"),
              pytest.mark.skipif(not shutil.which("kamailio") and not Path("/usr/sbin/kamailio").exists(),
                                 reason="kamailio not installed")]

DOMAIN = "carrier.example"
PASSWORD = "kam-test-pw"
SALES = AGENT.replace("Hello from voxd.", "Sales, hello.").replace('sip: {numbers: ["2000"]}', "")


async def until(pred: Callable[[], bool], seconds: float) -> None:
    for _ in range(int(seconds / 0.1)):
        if pred():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


async def start(tmp: Path, sip: dict[str, object], monkeypatch: pytest.MonkeyPatch, **extra: object) -> Daemon:
    monkeypatch.setenv("VOXD_TEST_CARRIER_PW", PASSWORD)
    agents = tmp / "agents"
    agents.mkdir(exist_ok=True)
    (agents / "front.yaml").write_text(AGENT)
    (agents / "sales.yaml").write_text(SALES)
    cfg = VoxdConfig.model_validate({
        "state_dir": str(tmp / "state"), "agents_dir": str(agents), "default_agent": "front",
        "sip": {"port": free_port(), "rtp_port_min": 33000, "rtp_port_max": 33200, **sip}, **extra})
    d = Daemon(cfg, tmp)
    await d.start()
    return d


@pytest.mark.timeout(180)
@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_register_refresh_inbound_call_and_unregister(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            transport: str) -> None:
    async with kamailio(tmp_path, DOMAIN=DOMAIN, USER="alice", PASSWORD=PASSWORD, MAX_EXPIRES="6",
                        CALLEE="127.0.0.1:9") as k:
        d = await start(tmp_path, {"registrations": [{
            "name": "kam", "registrar": f"sip:127.0.0.1:{k.port}", "aor": f"sip:alice@{DOMAIN}",
            "password_env": "VOXD_TEST_CARRIER_PW", "transport": transport, "expires": 600, "agent": "sales"}]},
            monkeypatch, http={"enabled": False})
        stopped = False
        try:
            regs = d.registrations
            await until(regs.ready, 15)
            assert k.grep("challenged REGISTER"), k.lines()[-20:]
            (state,) = regs.status()
            assert state["granted_expires_s"] == 6  # Kamailio's max_expires beat the 600 asked
            registered = len(k.grep("REGISTER sip:alice@"))
            await until(lambda: len(k.grep("REGISTER sip:alice@")) > registered, 10)  # refreshed at ~3 s
            assert regs.ready()
            # a caller on the carrier's side calls the AOR: Kamailio forwards to voxd's Contact
            scen = scenario(tmp_path, "call_aor.xml", USER="alice", DOMAIN=DOMAIN,
                            ULAW=str(caller_audio(tmp_path, "ulaw")), WAIT_MS="9000")
            proc = await asyncio.create_subprocess_exec(
                "sipp", f"127.0.0.1:{k.port}", "-sf", str(scen), "-i", "127.0.0.1", "-p", str(free_port()),
                "-mi", "127.0.0.1", "-mp", str(free_port()), "-m", "1", "-timeout", "60", "-timeout_error",
                "-nostdin", "-trace_err", "-error_file", str(tmp_path / "sipp_errors.log"),
                cwd=tmp_path, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
            _, err = await asyncio.wait_for(proc.communicate(), 90)
            errors = (tmp_path / "sipp_errors.log").read_text() if (tmp_path / "sipp_errors.log").exists() else ""
            assert proc.returncode == 0, f"sipp: {err.decode()[-800:]} {errors[-1500:]} {k.lines()[-15:]}"
            assert k.grep("inbound INVITE for sip:alice@carrier.example")
            (rec,) = await records(d)
            assert rec["agent"] == "sales" and rec["end_reason"] == "caller_hangup"
            said = [(t["speaker"], t["text"]) for t in rec["turns"]]
            assert said[0] == ("bot", "Sales, hello.")
            assert any(s == "caller" and "time" in t.lower() for s, t in said), said  # caller audio reached STT
            rtp = rec["metadata"]["rtp"]
            assert rtp["received"] > 100 and rtp["sent"] > 100  # audio both ways
            before = len(k.grep("expires=0"))
            await d.stop()
            stopped = True
            await until(lambda: len(k.grep("expires=0")) > before, 5)
            assert regs.status()[0]["state"] == "unregistered"
        finally:
            if not stopped:
                await d.stop()


@pytest.mark.timeout(120)
async def test_outbound_call_through_kamailio_answers_407(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    callee_port = free_port()
    callee = await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(Path(__file__).parent / "sipp" / "uas_answer_rr.xml"), "-i", "127.0.0.1", "-p", str(callee_port), "-mi", "127.0.0.1", "-mp", str(free_port()),
        "-m", "1", "-nostdin", "-timeout", "60", "-timeout_error", cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        async with kamailio(tmp_path, DOMAIN=DOMAIN, USER="voxd-out", PASSWORD=PASSWORD, MAX_EXPIRES="60",
                            CALLEE=f"127.0.0.1:{callee_port}") as k:
            d = await start(tmp_path, {"trunks": [{"name": "kam", "outbound": {
                "domain": DOMAIN, "proxy": f"sip:127.0.0.1:{k.port}", "username": "voxd-out",
                "password_env": "VOXD_TEST_CARRIER_PW", "from_user": "+15550001",
                "asserted_identity": f"sip:+15550001@{DOMAIN}"}}]}, monkeypatch, http={"port": 0},
                engines={"preload": False})
            try:
                key = await create_key(d.db, "t", ["calls:write", "calls:read"])
                url = f"http://127.0.0.1:{d.http_port}/api/v1/calls"
                async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:
                    async with http.post(url, json={"agent": "front", "to": "+1 555 123 4567", "trunk": "kam"}) as r:
                        assert r.status == 202, await r.text()
                        call_id = (await r.json())["id"]
                    await until(lambda: bool(d.calls and d.calls.active and any(
                        s.record.answered_at for s in d.calls.active.values())), 20)
                    await asyncio.sleep(3)  # the agent greets the callee
                    async with http.post(f"{url}/{call_id}/end") as r:
                        assert r.status == 202
                try:
                    code = await asyncio.wait_for(callee.wait(), 20)
                except TimeoutError:
                    code = None
                assert code == 0, k.lines()[-30:]  # sipp got INVITE, ACK and our BYE
                (rec,) = await records(d)
                assert rec["direction"] == "outbound" and rec["answered_at"] is not None
                assert rec["metadata"]["trunk"] == "kam" and rec["metadata"]["rtp"]["sent"] > 50
                assert k.grep("challenged outbound INVITE to sip:+15551234567@carrier.example")
                (authorized,) = k.grep("authorized outbound INVITE")
                assert "as voxd-out" in authorized and "pai=<sip:+15550001@carrier.example>" in authorized
                assert k.grep("in-dialog BYE")  # the BYE followed Kamailio's Record-Route
            finally:
                await d.stop()
    finally:
        if callee.returncode is None:
            callee.kill()
            await callee.wait()


@pytest.mark.timeout(120)
async def test_voxd_dial_with_a_trunk_and_a_plain_number(tmp_path: Path) -> None:
    """`voxd dial +1... --trunk kam`: the CLI formats the number, answers the 407 and talks."""
    import json
    import os
    import sys

    callee_port = free_port()
    callee = await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(Path(__file__).parent / "sipp" / "uas_answer_rr.xml"), "-i", "127.0.0.1",
        "-p", str(callee_port), "-mi", "127.0.0.1", "-mp", str(free_port()), "-m", "1", "-nostdin",
        "-timeout", "60", "-timeout_error", cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    root = Path(__file__).parents[2]
    try:
        async with kamailio(tmp_path, DOMAIN=DOMAIN, USER="voxd-out", PASSWORD=PASSWORD, MAX_EXPIRES="60",
                            CALLEE=f"127.0.0.1:{callee_port}") as k:
            cfg = tmp_path / "voxd.yaml"
            cfg.write_text(f"""
sip:
  rtp_port_min: 33400
  rtp_port_max: 33500
  trunks:
    - name: kam
      outbound:
        domain: {DOMAIN}
        proxy: sip:127.0.0.1:{k.port}
        username: voxd-out
        password_env: VOXD_TEST_CARRIER_PW
        country_code: "1"
""")
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "voxd.cli", "dial", "(555) 123-4567", "--trunk", "kam", "-c", str(cfg),
                "--agent", str(root / "agents" / "minimal.yaml"), "--max-seconds", "3", "--json",
                cwd=root, env={**os.environ, "VOXD_TEST_CARRIER_PW": PASSWORD},
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), 90)
            assert proc.returncode == 0, err.decode()[-2000:]
            rec = json.loads(out)
            assert rec["answered_at"] is not None and rec["metadata"]["trunk"] == "kam"
            assert rec["to_uri"] == "sip:+15551234567@carrier.example;user=phone"
            assert k.grep("challenged outbound INVITE") and k.grep("authorized outbound INVITE")
        assert await asyncio.wait_for(callee.wait(), 20) == 0
    finally:
        if callee.returncode is None:
            callee.kill()
            await callee.wait()
