"""Real SIP calls from sipp (a third-party SIP client) against the daemon's SIP stack.

The daemon runs in-process with the real offline engines; sipp streams caller
speech, sends RFC 4733 digits (payload types 96 and 101) and SIP INFO, cancels
while ringing, and waits for the bot to hang up. Assertions read the call records.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemons import LOCAL_VENDORS
from voxd.app import Daemon
from voxd.config import VoxdConfig
from voxd.store.calls import CallRepository

ROOT = Path(__file__).parents[2]
SCENARIOS = Path(__file__).parent / "sipp"
SPEECH = ROOT / "tests" / "data" / "speech"

pytestmark = [pytest.mark.interop, pytest.mark.skipif(not shutil.which("sipp"), reason="sipp not installed")]

AGENT = """
greeting: Hello from voxd.
voice: {engine: espeak}
turn: {detector: silence, max_silence_ms: 600}
tools: [get_current_time]
dialog:
  intents:
    - {name: time, examples: ["what time is it"], keywords: [time], tool: get_current_time, reply: "It's {result.spoken}."}
sip: {numbers: ["2000"]}
"""

MENU_AGENT = """
greeting: Press nine to hang up.
voice: {engine: espeak}
dtmf:
  main_menu: main
  menus:
    main:
      prompt: Press nine to hang up.
      options:
        "9": {say: Goodbye., then: hangup}
        "3": {say: Transferring you., then: transfer, target: "sip:sales@127.0.0.1:5999"}
sip: {numbers: ["3000"]}
"""


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def sipd(tmp_path: Path) -> AsyncIterator[Daemon]:
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "front.yaml").write_text(AGENT)
    (agents / "menu.yaml").write_text(MENU_AGENT)
    cfg = VoxdConfig.model_validate({
        "state_dir": str(tmp_path / "state"), "agents_dir": str(agents), "default_agent": "front",
        "http": {"enabled": False},
        "sip": {"port": free_udp_port(), "rtp_port_min": 31000, "rtp_port_max": 31200, "ring_ms": 0},
    })
    d = Daemon(cfg, tmp_path)
    await d.start()
    yield d
    await d.stop()


def scenario(tmp: Path, name: str, **subs: str) -> Path:
    text = (SCENARIOS / name).read_text()
    for k, v in subs.items():
        text = text.replace(f"@{k}@", v)
    out = tmp / name
    out.write_text(text)
    return out


def caller_audio(tmp: Path, codec: str, lead_s: float = 1.5) -> Path:
    """flite speech, headerless G.711 (what sipp's rtp_stream wants)."""
    out = tmp / f"caller.{codec}"
    enc = "u-law" if codec == "ulaw" else "a-law"
    subprocess.run(["sox", str(SPEECH / "flite-slt" / "what_time.8k.wav"), "-t", "raw", "-e", enc, "-b", "8", "-r", "8000",
                    str(out), "pad", str(lead_s), "0"], check=True)
    return out


async def run_sipp(d: Daemon, scen: Path, tmp: Path, *extra: str, limit_s: float = 60) -> None:
    media = free_udp_port()
    proc = await asyncio.create_subprocess_exec(
        "sipp", f"127.0.0.1:{d.sip.port}", "-sf", str(scen), "-i", "127.0.0.1", "-p", str(free_udp_port()),
        "-mi", "127.0.0.1", "-mp", str(media), "-m", "1", "-timeout", str(int(limit_s)), "-timeout_error",
        "-nostdin", "-trace_err", "-error_file", str(tmp / "sipp_errors.log"), *extra,
        cwd=tmp, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), limit_s + 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    errors = (tmp / "sipp_errors.log").read_text() if (tmp / "sipp_errors.log").exists() else ""
    assert proc.returncode == 0, f"sipp failed ({proc.returncode}): {err.decode()[-1000:]} {errors[-2000:]}"


async def records(d: Daemon) -> list[dict[str, Any]]:
    assert d.calls is not None
    for _ in range(50):
        if not d.calls.active:
            break
        await asyncio.sleep(0.1)
    await d.calls.flush()
    repo = CallRepository(d.db)
    rows, _ = await repo.list(limit=50)
    full = [await repo.get(r["id"]) for r in rows]
    return [r for r in full if r is not None]


@pytest.mark.parametrize(("codec", "offer", "pt"), [("ulaw", "0 8", "0"), ("alaw", "8", "8")])
async def test_speech_rfc4733_and_info_digits(sipd: Daemon, tmp_path: Path, codec: str, offer: str, pt: str) -> None:
    scen = scenario(tmp_path, "call_speech_dtmf.xml", USER="2000", CODECS=offer, PT=pt,
                    ULAW=str(caller_audio(tmp_path, codec)), WAIT_MS="7000")
    await run_sipp(sipd, scen, tmp_path)
    (rec,) = await records(sipd)
    assert rec["agent"] == "front" and rec["transport"] == "sip" and rec["end_reason"] == "caller_hangup"
    assert rec["metadata"]["codec"] == ("PCMU" if codec == "ulaw" else "PCMA")
    said = [(t["speaker"], t["text"]) for t in rec["turns"]]
    assert said[0] == ("bot", "Hello from voxd.")
    assert any(s == "caller" and "time" in t.lower() for s, t in said), said
    tools = [tc["name"] for t in rec["turns"] for tc in t["tool_calls"]]
    assert tools == ["get_current_time"]
    assert [(x["digit"], x["source"]) for x in rec["dtmf"]] == [("1", "rfc4733"), ("2", "rfc4733"), ("5", "sip-info")]
    rtp = rec["metadata"]["rtp"]
    assert rtp["received"] > 100 and rtp["sent"] > 300


async def test_rfc4733_on_payload_type_101_from_capture(sipd: Daemon, tmp_path: Path) -> None:
    scen = scenario(tmp_path, "bot_hangs_up.xml", USER="3000", PCAP="/usr/share/sip-tester/dtmf_2833_9.pcap")
    await run_sipp(sipd, scen, tmp_path)
    (rec,) = await records(sipd)
    assert rec["agent"] == "menu" and rec["metadata"]["codec"] == "PCMA"
    assert [(x["digit"], x["source"]) for x in rec["dtmf"]] == [("9", "rfc4733")]
    # the bot said goodbye and hung up (sipp received our BYE and answered it)
    assert rec["end_reason"] == "menu_hangup" and rec["ended_by"] == "agent"
    assert [t["text"] for t in rec["turns"] if t["speaker"] == "bot"][-1] == "Goodbye."


@pytest.mark.parametrize("transport", ["u1", "t1"])
async def test_bye_retransmitted_over_udp_only(sipd: Daemon, tmp_path: Path, transport: str) -> None:
    """sipp calls over UDP or TCP and is slow to answer voxd's BYE; voxd's user agent
    queues the BYE again on UDP only (RFC 3261 §17.1.2.2: no Timer E on TCP)."""
    ua = sipd.sip.ua
    byes: list[bool] = []  # one entry per BYE queued: whether it went to a TCP connection
    data_to_send = ua.data_to_send

    def recording() -> list[tuple[bytes, tuple[str, int]]]:
        out = data_to_send()
        byes.extend(addr in sipd.sip.tcp_peers for data, addr in out if data.startswith(b"BYE "))
        return out

    ua.data_to_send = recording
    scen = scenario(tmp_path, "bot_hangs_up_slow_200.xml", USER="3000", PCAP="/usr/share/sip-tester/dtmf_2833_9.pcap")
    await run_sipp(sipd, scen, tmp_path, "-t", transport)
    (rec,) = await records(sipd)
    assert rec["end_reason"] == "menu_hangup" and rec["ended_by"] == "agent"
    if transport == "t1":
        assert byes == [True]
    else:
        assert len(byes) >= 3 and not any(byes)  # at 0, 0.5 and 1.5 s, before sipp's 200 at 2.2 s


async def test_cancel_while_ringing(tmp_path: Path) -> None:
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "front.yaml").write_text(AGENT)
    cfg = VoxdConfig.model_validate({
        "state_dir": str(tmp_path / "state"), "agents_dir": str(agents), "http": {"enabled": False},
        "engines": {"preload": False},
        "sip": {"port": free_udp_port(), "rtp_port_min": 31300, "rtp_port_max": 31400, "ring_ms": 3000},
    })
    d = Daemon(cfg, tmp_path)
    await d.start()
    try:
        await run_sipp(d, scenario(tmp_path, "cancel_ringing.xml", USER="2000"), tmp_path, limit_s=20)
        (rec,) = await records(d)
        assert rec["end_reason"] == "caller_cancelled" and rec["answered_at"] is None
        assert not rec["turns"]  # nobody spoke: the call was never answered
        assert d.sip.ports.in_use == 0 and not d.sip.sip_calls  # media port released
    finally:
        await d.stop()


async def run_dial(target: str, *extra: str) -> dict[str, Any]:
    import json
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voxd.cli", "dial", target, "--agent", str(ROOT / "agents" / "minimal.yaml"),
        "--json", *extra, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 90)
    return dict(json.loads(out))


async def test_outbound_call_answered_then_agent_hangs_up(tmp_path: Path) -> None:
    port = free_udp_port()
    callee = await asyncio.create_subprocess_exec(
        "sipp", "-sn", "uas", "-i", "127.0.0.1", "-p", str(port), "-mi", "127.0.0.1", "-mp", str(free_udp_port()),
        "-m", "1", "-nostdin", "-timeout", "60", "-timeout_error", cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        rec = await run_dial(f"sip:bob@127.0.0.1:{port}", "--max-seconds", "4")
        assert await asyncio.wait_for(callee.wait(), 20) == 0  # sipp saw INVITE/ACK and our BYE
    finally:
        if callee.returncode is None:
            callee.kill()
            await callee.wait()
    assert rec["direction"] == "outbound" and rec["answered_at"] is not None
    assert rec["end_reason"] == "max_duration" and rec["turns"][0]["text"] == "Hello! Ask me the time."
    assert rec["metadata"]["codec"] == "PCMU" and rec["metadata"]["rtp"]["sent"] > 50


async def test_outbound_call_to_busy_callee(tmp_path: Path) -> None:
    port = free_udp_port()
    callee = await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(SCENARIOS / "uas_busy.xml"), "-i", "127.0.0.1", "-p", str(port), "-m", "1", "-nostdin",
        "-timeout", "30", cwd=tmp_path, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        rec = await run_dial(f"sip:bob@127.0.0.1:{port}", "--max-seconds", "10")
        assert await asyncio.wait_for(callee.wait(), 20) == 0
    finally:
        if callee.returncode is None:
            callee.kill()
            await callee.wait()
    assert rec["answered_at"] is None and rec["end_reason"] == "busy" and rec["metadata"]["sip_status"] == 486
    assert not rec["turns"]


async def test_blind_transfer_with_refer_and_notify(sipd: Daemon, tmp_path: Path) -> None:
    await run_sipp(sipd, scenario(tmp_path, "transfer.xml", USER="3000"), tmp_path)
    (rec,) = await records(sipd)
    assert [(x["digit"], x["source"]) for x in rec["dtmf"]] == [("3", "rfc4733")]
    assert rec["end_reason"] == "transferred" and rec["ended_by"] == "agent"
    assert [t["text"] for t in rec["turns"] if t["speaker"] == "bot"][-1] == "Transferring you."


async def daemon_with(tmp_path: Path, sip: dict[str, Any], agent: str = AGENT) -> Daemon:
    agents = tmp_path / "agents"
    agents.mkdir(exist_ok=True)
    (agents / "front.yaml").write_text(agent)
    cfg = VoxdConfig.model_validate({
        "state_dir": str(tmp_path / "state"), "agents_dir": str(agents), "http": {"enabled": False},
        "engines": {"preload": False, "silero_confirm": False},
        "sip": {"port": free_udp_port(), "rtp_port_min": 31500, "rtp_port_max": 31600, **sip},
    })
    d = Daemon(cfg, tmp_path)
    await d.start()
    return d


async def test_digest_authentication_on_a_trunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXD_TEST_TRUNK_PW", "s3cret-pw")
    d = await daemon_with(tmp_path, {"trunks": [{"name": "lab", "allow": ["127.0.0.0/8"], "username": "alice",
                                                 "password_env": "VOXD_TEST_TRUNK_PW", "realm": "voxd",
                                                 "algorithms": ["MD5"]}]})  # sipp speaks MD5 only
    try:
        await run_sipp(d, scenario(tmp_path, "auth.xml", USER="2000"), tmp_path, "-au", "alice", "-ap", "s3cret-pw",
                       limit_s=30)
        (rec,) = await records(d)
        assert rec["metadata"]["auth_user"] == "alice" and rec["end_reason"] == "caller_hangup"
        # a wrong password is refused: sipp expects the 200 and fails
        with pytest.raises(AssertionError, match="sipp failed"):
            await run_sipp(d, scenario(tmp_path, "auth.xml", USER="2000"), tmp_path, "-au", "alice", "-ap", "nope",
                           limit_s=15)
        assert len(await records(d)) == 1
    finally:
        await d.stop()


async def test_garbage_flood_then_a_normal_call(tmp_path: Path) -> None:
    """Random datagrams and broken SIP at the SIP port: no crash, no leak, calls still work."""
    import os
    import random

    d = await daemon_with(tmp_path, {})
    try:
        rng = random.Random(7)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        target = ("127.0.0.1", d.sip.port)
        junk = [b"INVITE sip:x SIP/2.0\r\nVia: bogus\r\n\r\n", b"SIP/2.0 200\r\n\r\n", b"\x00" * 50,
                b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 99999\r\n\r\n"]
        for i in range(5000):
            sock.sendto(junk[i % len(junk)] if i % 3 == 0 else os.urandom(rng.randint(1, 1400)), target)
            if i % 200 == 0:
                await asyncio.sleep(0.01)  # bounded rate: about 20k datagrams/s at most
        sock.close()
        await asyncio.sleep(0.5)
        assert not d.sip.sip_calls and d.sip.ports.in_use == 0
        scen = scenario(tmp_path, "call_speech_dtmf.xml", USER="2000", CODECS="0", PT="0",
                        ULAW=str(caller_audio(tmp_path, "ulaw")), WAIT_MS="2000")
        await run_sipp(d, scen, tmp_path)
        (rec,) = await records(d)
        assert rec["end_reason"] == "caller_hangup" and [x["digit"] for x in rec["dtmf"]] == ["1", "2", "5"]
    finally:
        await d.stop()


async def test_outbound_call_with_early_media(tmp_path: Path) -> None:
    port = free_udp_port()
    callee = await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(SCENARIOS / "uas_early_media.xml"), "-i", "127.0.0.1", "-p", str(port), "-mi", "127.0.0.1",
        "-mp", str(free_udp_port()), "-m", "1", "-nostdin", "-timeout", "40", "-timeout_error", cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        rec = await run_dial(f"sip:bob@127.0.0.1:{port}", "--max-seconds", "4")
        assert await asyncio.wait_for(callee.wait(), 20) == 0
    finally:
        if callee.returncode is None:
            callee.kill()
            await callee.wait()
    assert rec["metadata"]["early_media"] is True and rec["answered_at"] is not None
    assert rec["end_reason"] == "max_duration" and rec["metadata"]["rtp"]["sent"] > 50


DEEPGRAM_AGENT = """
greeting: Hi.
voice: {{engine: espeak}}
stt: {{engine: deepgram, base_url: "{url}", options: {{finalize_timeout_s: 2.0}}}}
turn: {{detector: silence, max_silence_ms: 600}}
sip: {{numbers: ["2000"]}}
"""


def matched_run_bytes(got: bytes, chunks: set[bytes], size: int = 160) -> int:
    """How many bytes of `got` are whole packets the caller sent (found wherever they sit)."""
    n, p = 0, 0
    while p + size <= len(got):
        if got[p : p + size] in chunks:
            n, p = n + size, p + size
        else:
            p += 1
    return n


@pytest.mark.parametrize(("codec", "offer", "pt"), [("ulaw", "0", "0"), ("alaw", "8", "8")])
async def test_deepgram_encoding_follows_the_negotiated_codec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              codec: str, offer: str, pt: str) -> None:
    """Deepgram's default encoding is `auto`: a PCMU call's payloads go to Deepgram as
    sipp sent them (mu-law, 8 kHz, no decode and re-encode); a PCMA call is sent as
    16 kHz linear16."""
    from tests.cloud.fake_deepgram import FakeDeepgram

    monkeypatch.setenv("DEEPGRAM_API_KEY", "dg-k")
    dg = await FakeDeepgram({170: "What time is it?"}).start()
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "front.yaml").write_text(DEEPGRAM_AGENT.format(url=dg.url))
    cfg = VoxdConfig.model_validate({
        "state_dir": str(tmp_path / "state"), "agents_dir": str(agents), "http": {"enabled": False},
        "sip": {"port": free_udp_port(), "rtp_port_min": 31500, "rtp_port_max": 31600, "ring_ms": 0},
        **LOCAL_VENDORS,
    })
    d = Daemon(cfg, tmp_path)
    await d.start()
    audio = caller_audio(tmp_path, codec)
    try:
        scen = scenario(tmp_path, "call_speech_dtmf.xml", USER="2000", CODECS=offer, PT=pt, ULAW=str(audio),
                        WAIT_MS="5000")
        await run_sipp(d, scen, tmp_path)
        (rec,) = await records(d)
    finally:
        await d.stop()
        await dg.stop()
    assert rec["metadata"]["codec"] == ("PCMU" if codec == "ulaw" else "PCMA")
    assert dg.conns, "voxd never connected to Deepgram"
    q = dg.conns[0].query
    got = bytes(dg.conns[0].audio)
    if codec == "ulaw":
        assert (q["encoding"], q["sample_rate"]) == ("mulaw", "8000")
        data = audio.read_bytes()
        speech = {data[i : i + 160] for i in range(0, len(data) - 159, 160)} - {b"\xff" * 160, b"\x7f" * 160}
        assert len(got) >= 8000  # at least a second of the caller's speech
        assert matched_run_bytes(got, speech) >= 8000, "Deepgram got re-encoded audio, not the call's own"
    else:
        assert (q["encoding"], q["sample_rate"]) == ("linear16", "16000")
        assert len(got) >= 32000
