"""What a carrier expects of voxd's SIP, shown with sipp (a third-party SIP client) and
Kamailio: reliable provisional responses (RFC 3262), session timers (RFC 4028), OPTIONS
with the node's state (a Kamailio dispatcher stops sending to a draining node), trunk
OPTIONS keepalives, and Retry-After on a carrier's 503 for an outbound call."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.interop.kamailio import kamailio
from tests.interop.test_sipp import daemon_with, free_udp_port, records, run_sipp, scenario
from voxd.app import Daemon
from voxd.core.errors import AtCapacity
from voxd.net.sip_trunk import dial_trunk
from voxd.proto.sip.session_timer import TimerPolicy

pytestmark = [pytest.mark.interop]

QUIET_AGENT = """
greeting: Hello from voxd.
voice: {engine: espeak}
turn: {detector: silence, max_silence_ms: 600}
sip: {numbers: ["2000"]}
"""


def _label(data: bytes) -> str:
    line = data.split(b"\r\n", 1)[0].decode()
    if line.startswith("SIP/2.0"):
        cseq = next(x for x in data.split(b"\r\n") if x.lower().startswith(b"cseq:"))
        return f"{line.split()[1]} {cseq.split()[-1].decode()}"
    return line.split()[0]


def record_sent(d: Daemon) -> list[str]:
    """Labels ('180 INVITE', 'BYE', ...) of every message voxd's user agent queues."""
    assert d.sip is not None and d.sip.ua is not None
    ua = d.sip.ua
    sent: list[str] = []
    data_to_send = ua.data_to_send

    def recording() -> list[tuple[bytes, tuple[str, int]]]:
        out = data_to_send()
        sent.extend(_label(data) for data, _ in out)
        return out

    ua.data_to_send = recording  # type: ignore[method-assign]
    return sent


@pytest.fixture
async def ringing(tmp_path: Path) -> AsyncIterator[Daemon]:
    d = await daemon_with(tmp_path, {"ring_ms": 300}, QUIET_AGENT)
    yield d
    await d.stop()


async def test_prack_flow_caller_requires_100rel(ringing: Daemon, tmp_path: Path) -> None:
    sent = record_sent(ringing)
    await run_sipp(ringing, scenario(tmp_path, "prack_caller.xml", USER="2000", PRACK_DELAY_MS="1800"), tmp_path,
                   limit_s=30)
    (rec,) = await records(ringing)
    assert rec["end_reason"] == "caller_hangup" and rec["answered_at"] is not None
    # the 180 went again at T1 and 3*T1 (interval doubling) while the PRACK was late; the 200 only after the PRACK's 200
    assert sent.count("180 INVITE") >= 3, sent
    assert sent.index("200 PRACK") < sent.index("200 INVITE"), sent
    assert sent.count("200 INVITE") >= 1


@pytest.fixture
async def short_timers(tmp_path: Path) -> AsyncIterator[Daemon]:
    """A daemon whose user agent accepts session intervals down to 4 s (the configuration
    keeps RFC 4028's 90 s floor; a test cannot wait minutes)."""
    d = await daemon_with(tmp_path, {}, QUIET_AGENT)
    assert d.sip is not None and d.sip.ua is not None
    d.sip.ua.config.session = TimerPolicy(expires=1800, min_se=4)
    yield d
    await d.stop()


async def test_session_timer_refreshed_by_the_caller(short_timers: Daemon, tmp_path: Path) -> None:
    """Interval 8 s, refresher the caller: UPDATE, UPDATE, re-INVITE at 3.5 s steps keep the
    call up for 14 s (without them voxd would have ended it at 5.3 s)."""
    sent = record_sent(short_timers)
    scen = scenario(tmp_path, "session_timer_refresh.xml", USER="2000", SE="8;refresher=uac",
                    EXPECT_SE="8;refresher=uac", HALF_MS="3500")
    await run_sipp(short_timers, scen, tmp_path, limit_s=40)
    (rec,) = await records(short_timers)
    assert rec["end_reason"] == "caller_hangup", rec["end_reason"]
    assert sent.count("200 UPDATE") == 2 and "BYE" not in sent, sent


async def test_session_timer_expiry_when_the_caller_stops_refreshing(short_timers: Daemon, tmp_path: Path) -> None:
    started = time.monotonic()
    scen = scenario(tmp_path, "session_timer_expiry.xml", USER="2000", SE="6;refresher=uac",
                    EXPECT_SE="6;refresher=uac", BYE_TIMEOUT_MS="12000")
    await run_sipp(short_timers, scen, tmp_path, limit_s=30)
    took = time.monotonic() - started
    (rec,) = await records(short_timers)
    assert rec["end_reason"] == "session_expired" and rec["ended_by"] == "system"
    assert 3.0 < took < 12.0  # BYE at 6 - min(32, 6/3) = 4 s after the answer


async def test_voxd_refreshes_when_it_is_the_refresher(short_timers: Daemon, tmp_path: Path) -> None:
    scen = scenario(tmp_path, "session_timer_voxd_refreshes.xml", USER="2000", SE="6;refresher=uas",
                    SE_NUM="6", EXPECT_SE="6;refresher=uas", BYE_TIMEOUT_MS="8000")
    await run_sipp(short_timers, scen, tmp_path, limit_s=30)
    (rec,) = await records(short_timers)
    assert rec["end_reason"] == "caller_hangup"


async def test_options_answered_with_the_node_state(short_timers: Daemon, tmp_path: Path) -> None:
    """What a Kamailio dispatcher's probe sees: 200 and open, then 503 + Retry-After while draining."""
    scen = scenario(tmp_path, "options_probe.xml", STATUS="200", STATE="open", NEEDS_RETRY="false")
    await run_sipp(short_timers, scen, tmp_path, limit_s=15)
    short_timers.draining = True
    try:
        scen = scenario(tmp_path, "options_probe.xml", STATUS="503", STATE="draining", NEEDS_RETRY="true")
        await run_sipp(short_timers, scen, tmp_path, limit_s=15)
        # the probe must fail when voxd says otherwise
        scen = scenario(tmp_path, "options_probe.xml", STATUS="200", STATE="open", NEEDS_RETRY="false")
        with pytest.raises(AssertionError, match="sipp failed"):
            await run_sipp(short_timers, scen, tmp_path, limit_s=5)
    finally:
        short_timers.draining = False


async def sipp_uas(tmp: Path, name: str, port: int, calls: int, **subs: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(scenario(tmp, name, **subs)), "-i", "127.0.0.1", "-p", str(port), "-m", str(calls),
        "-nostdin", "-timeout", "30", "-timeout_error", cwd=tmp,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)


async def stopped(proc: asyncio.subprocess.Process, within_s: float = 20) -> int:
    try:
        return await asyncio.wait_for(proc.wait(), within_s)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def until(pred: Callable[[], bool], seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


def trunk_config(port: int, **extra: Any) -> dict[str, Any]:
    return {"trunks": [{"name": "carrier", **extra,
                        "outbound": {"domain": "127.0.0.1", "port": port, "from_user": "+15550001"}}]}


async def test_trunk_keepalive_up_then_down(tmp_path: Path) -> None:
    port = free_udp_port()
    d = await daemon_with(tmp_path, trunk_config(port, options_interval_s=0.3), QUIET_AGENT)
    try:
        assert d.trunk_probes is not None
        carrier = await sipp_uas(tmp_path, "uas_options.xml", port, 3, STATUS="200", REASON="OK")
        assert await stopped(carrier) == 0  # three keepalives answered
        (state,) = d.trunk_probes.status()
        assert (state["state"], state["last_status"], state["failures"]) == ("up", 200, 0)
        assert state["rtt_ms"] is not None and state["checked_at"] is not None
        carrier = await sipp_uas(tmp_path, "uas_options.xml", port, 2, STATUS="503", REASON="Service Unavailable")
        assert await stopped(carrier) == 0
        await until(lambda: d.trunk_probes is not None and d.trunk_probes.status()[0]["failures"] >= 2)
        (state,) = d.trunk_probes.status()
        assert (state["state"], state["last_status"]) == ("down", 503)
    finally:
        await d.stop()


async def test_carrier_503_retry_after_holds_the_trunk(tmp_path: Path) -> None:
    port = free_udp_port()
    d = await daemon_with(tmp_path, trunk_config(port), QUIET_AGENT)
    try:
        assert d.sip is not None
        carrier = await sipp_uas(tmp_path, "uas_503_retry_after.xml", port, 1, RETRY="30")
        trunk = d.cfg.sip.trunks[0]
        agent = d.agents.get("front")
        assert agent is not None
        session = await dial_trunk(d.sip, agent, trunk, "+15551234567", secrets=d.outbound.secrets)
        await asyncio.wait_for(session.ended.wait(), 20)
        assert await stopped(carrier) == 0  # sipp got its ACK
        (rec,) = await records(d)
        assert rec["end_reason"] == "failed" and rec["metadata"]["sip_status"] == 503
        assert rec["metadata"]["end_detail"] == "SIP 503 Service Unavailable (Retry-After 30 s) via trunk carrier"
        # the trunk waits: the next call is refused before anything is sent
        with pytest.raises(AtCapacity, match="Retry-After 30 s") as refused:
            await dial_trunk(d.sip, agent, trunk, "+15551234567", secrets=d.outbound.secrets)
        assert 25 <= refused.value.retry_after <= 30
        assert d.trunk_probes is not None
        (state,) = d.trunk_probes.status()
        assert 25 < state["blocked_for_s"] <= 30 and state["state"] == "unprobed"
    finally:
        await d.stop()


async def sipp_via(port: int, scen: Path, tmp: Path, limit_s: float = 20) -> int:
    """sipp as a caller to ``port`` (a proxy in front of voxd); its exit status."""
    proc = await asyncio.create_subprocess_exec(
        "sipp", f"127.0.0.1:{port}", "-sf", str(scen), "-i", "127.0.0.1", "-p", str(free_udp_port()),
        "-mi", "127.0.0.1", "-mp", str(free_udp_port()), "-m", "1", "-nostdin", "-timeout", str(int(limit_s)),
        "-timeout_error", cwd=tmp, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    return await stopped(proc, limit_s + 10)


@pytest.mark.skipif(not shutil.which("kamailio") and not Path("/usr/sbin/kamailio").exists(),
                    reason="kamailio not installed")
async def test_kamailio_dispatcher_stops_sending_to_a_draining_node(tmp_path: Path) -> None:
    """Kamailio's dispatcher probes voxd with OPTIONS every second: calls go through while
    voxd answers 200; once it drains (503 + Retry-After) the node is marked down and the
    next call is refused by Kamailio without reaching voxd; back to 200, calls flow again."""
    d = await daemon_with(tmp_path, {}, QUIET_AGENT)
    assert d.sip is not None
    ds_list = tmp_path / "dispatcher.list"
    ds_list.write_text(f"1 sip:127.0.0.1:{d.sip.port}\n")
    call = scenario(tmp_path, "short_call.xml", USER="2000", HOLD_MS="1000")
    refused = scenario(tmp_path, "refused_call.xml", USER="2000")
    try:
        async with kamailio(tmp_path, "dispatcher.cfg", LIST=str(ds_list)) as k:
            await asyncio.sleep(1.5)  # a probe or two answered 200
            assert await sipp_via(k.port, call, tmp_path) == 0
            assert len(await records(d)) == 1
            d.draining = True
            await until(lambda: bool(k.grep("destination down")), 10)
            assert await sipp_via(k.port, refused, tmp_path) == 0  # Kamailio's own 503
            assert k.grep("no destination") and len(await records(d)) == 1  # voxd saw no INVITE
            d.draining = False
            await until(lambda: bool(k.grep("destination up")), 10)
            assert await sipp_via(k.port, call, tmp_path) == 0
            assert len(await records(d)) == 2
    finally:
        d.draining = False
        await d.stop()


async def test_early_media_greeting_plays_before_the_answer(tmp_path: Path) -> None:
    """sip.early_media: the 183 carries SDP and the agent's greeting starts during the ring,
    before voxd sends its 200 (the call's SIP trace has the 200's time)."""
    d = await daemon_with(tmp_path, {"ring_ms": 2500, "early_media": True}, QUIET_AGENT)
    try:
        await run_sipp(d, scenario(tmp_path, "early_media_caller.xml", USER="2000", HOLD_MS="1500"), tmp_path,
                       limit_s=30)
        (rec,) = await records(d)
        assert rec["metadata"]["early_media"] is True and rec["end_reason"] == "caller_hangup"
        greeting = rec["turns"][0]
        assert greeting["speaker"] == "bot" and greeting["source"] == "greeting"
        assert d.sip_tracer is not None
        entries = await d.sip_tracer.entries(rec["id"], rec["metadata"]["sip_call_id"])
        assert entries is not None
        ok = next(e for e in entries if e.direction == "out" and e.data.startswith(b"SIP/2.0 200")
                  and b" INVITE\r\n" in e.data)
        assert greeting["started_at"] < ok.at - 1.5  # spoken while ringing, well before the answer
        assert rec["metadata"]["rtp"]["sent"] > 50
    finally:
        await d.stop()
