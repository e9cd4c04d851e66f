"""MOS from a real call: sipp calls the daemon once over a clean path and once through a
UDP relay on loopback that drops 5 % of the RTP both ways; the post-call analysis's
E-model MOS of the lossy call is the lower one.

Two loopback hosts stand for two machines: the daemon binds 127.0.0.1 and advertises
127.0.0.2 (``sip.public_host``) in its SDP and Contact; sipp's SDP names 127.0.0.2 too.
The relay holds 127.0.0.2 for the daemon's SIP and RTP ports and sipp's media ports and
forwards to the same ports on 127.0.0.1, so every RTP packet and the in-dialog requests
cross it (the INVITE goes to 127.0.0.1 directly)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.interop.test_sipp import SPEECH, free_udp_port, pytestmark, scenario
from tests.interop.udp_relay import UdpRelay
from voxd.app import Daemon
from voxd.config import VoxdConfig

__all__ = ["pytestmark"]

AGENT = """
greeting: Hello from voxd.
stt: {engine: fake, options: {transcripts: ["what time is it"]}}
voice: {engine: espeak}
turn: {detector: silence, max_silence_ms: 600}
sip: {numbers: ["2000"]}
"""
RTP_MIN = 31640
RELAY_HOST = "127.0.0.2"


def caller_audio(tmp: Path) -> Path:
    out = tmp / "caller.ulaw"  # 4 s of quiet, then speech: ~300 packets to lose from
    subprocess.run(["sox", str(SPEECH / "flite-slt" / "what_time.8k.wav"), "-t", "raw", "-e", "u-law", "-b", "8",
                    "-r", "8000", str(out), "pad", "4", "1"], check=True)
    return out


def folder(tmp: Path) -> None:
    (tmp / "agents").mkdir(parents=True)
    (tmp / "agents" / "front.yaml").write_text(AGENT)


async def one_call(tmp: Path, lossy: bool) -> dict[str, Any]:
    folder(tmp)
    sip_port, media = free_udp_port(), free_udp_port()
    sip: dict[str, Any] = {"port": sip_port, "rtp_port_min": RTP_MIN, "rtp_port_max": RTP_MIN + 3, "ring_ms": 0}
    if lossy:
        sip["public_host"] = RELAY_HOST
    cfg = VoxdConfig.model_validate({
        "state_dir": str(tmp / "state"), "agents_dir": str(tmp / "agents"), "default_agent": "front",
        "http": {"enabled": False}, "engines": {"preload": False, "silero_confirm": False}, "sip": sip})
    d = Daemon(cfg, tmp)
    relay = None
    if lossy:
        ports = [sip_port, media, media + 1, *range(RTP_MIN, RTP_MIN + 4)]
        relay = await UdpRelay(RELAY_HOST, "127.0.0.1", ports, lossy=set(ports) - {sip_port}, drop=0.05).start()
    await d.start()
    try:
        scen = scenario(tmp, "call_speech_bye.xml", USER="2000", ULAW=str(caller_audio(tmp)), WAIT_MS="8000",
                        MEDIA_HOST=RELAY_HOST if lossy else "127.0.0.1")
        proc = await asyncio.create_subprocess_exec(
            "sipp", f"127.0.0.1:{sip_port}", "-sf", str(scen), "-i", "127.0.0.1", "-p", str(free_udp_port()),
            "-mi", "127.0.0.1", "-mp", str(media), "-m", "1", "-timeout", "40", "-timeout_error", "-nostdin",
            cwd=tmp, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            _, err = await asyncio.wait_for(proc.communicate(), 50)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode == 0, err.decode()[-1000:]
        assert d.calls is not None and d.db is not None
        await d.calls.flush()
        await d.analysis.wait_idle()
        rows, _ = await d.db.calls().list()
        (row,) = rows
        call = await d.db.calls().get(row["id"])
        assert call is not None and call["analysis"] is not None
        if relay is not None:
            assert relay.counts.dropped > 10 and relay.counts.passed > 200
        registry = d.metrics.registry  # the MOS histogram of /metrics saw this call
        assert registry.get_sample_value("voxd_call_mos_count", {"agent": "front"}) == 1
        assert registry.get_sample_value("voxd_call_mos_sum", {"agent": "front"}) == call["analysis"]["quality"]["mos"]
        return call
    finally:
        await d.stop()
        if relay is not None:
            relay.close()


@pytest.mark.timeout(240)
async def test_lossy_path_scores_a_lower_mos(tmp_path: Path) -> None:
    clean = await one_call(tmp_path / "clean", lossy=False)
    lossy = await one_call(tmp_path / "lossy", lossy=True)
    cq, lq = clean["analysis"]["quality"], lossy["analysis"]["quality"]
    assert clean["metadata"]["rtp"]["received"] > 250 and cq["loss_pct"] == 0
    assert 2.0 < lq["loss_pct"] < 10.0, lq  # 5 % dropped on the way in
    assert cq["codec"] == lq["codec"] == "PCMU" and cq["method"] == "ITU-T G.107 E-model"
    assert cq["mos"] > 4.3 and lq["mos"] < cq["mos"] - 0.3, (cq, lq)
    assert lossy["analysis"]["quality"]["r_factor"] < clean["analysis"]["quality"]["r_factor"] - 10
    print(f"clean: loss {cq['loss_pct']} % R {cq['r_factor']} MOS {cq['mos']}; "
          f"lossy: loss {lq['loss_pct']} % (in {lq['loss_in_pct']}, out {lq['loss_out_pct']}) "
          f"R {lq['r_factor']} MOS {lq['mos']}")
