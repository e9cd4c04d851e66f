"""The SIP tracer's bookkeeping: per-call buffers, the cap per call, unattached Call-IDs
dropped, traces written when a call ends, read back, and deleted after the retention."""

from __future__ import annotations

import os
import time
from pathlib import Path

from voxd.config.sip import SipTraceConfig
from voxd.net import sip_trace
from voxd.net.sip_trace import SipTracer

LOCAL, PEER = ("127.0.0.1", 5080), ("127.0.0.1", 5070)


def msg(call_id: str, n: int = 1) -> bytes:
    return (f"OPTIONS sip:x SIP/2.0\r\nCall-ID: {call_id}\r\nCSeq: {n} OPTIONS\r\n"
            'Proxy-Authorization: Digest username="u", response="feedface"\r\nContent-Length: 0\r\n\r\n').encode()


async def test_written_when_ended_read_back_and_pruned(tmp_path: Path) -> None:
    tracer = SipTracer(SipTraceConfig(max_messages=10, retention_hours=1), tmp_path, is_active=lambda cid: True)
    for n in range(12):
        tracer.record("in" if n % 2 == 0 else "out", msg("c1", n), LOCAL, PEER, "udp")
    live = await tracer.entries("call_1", "c1")
    assert live is not None and len(live) == 10 and b"feedface" not in live[0].data  # masked on the way in
    tracer.finish("c1", "call_1")
    await tracer.sweep(time.monotonic())  # still lingering: nothing written
    assert not (tmp_path / "call_1.jsonl").exists()
    await tracer.sweep(float("inf"))
    path = tmp_path / "call_1.jsonl"
    assert path.is_file() and '"dropped": 2' in path.read_text()
    again = await tracer.entries("call_1", "c1")
    assert again == live
    text = await tracer.render("call_1", None, "text")
    assert text is not None and text.count(b"OPTIONS sip:x SIP/2.0") == 10
    assert await tracer.render("call_2", None, "pcap") is None
    assert await tracer.entries("../etc/passwd", None) is None
    old = time.time() - 2 * 3600
    os.utime(path, (old, old))
    assert tracer.prune() == 1 and not path.exists()


async def test_unattached_call_ids_are_dropped_active_ones_kept(tmp_path: Path, monkeypatch) -> None:
    active = {"busy"}
    tracer = SipTracer(SipTraceConfig(), tmp_path, is_active=lambda cid: cid in active)
    tracer.record("in", msg("probe"), LOCAL, PEER, "udp")
    tracer.record("in", msg("busy"), LOCAL, PEER, "udp")
    tracer.record("in", b"no call id at all\r\n\r\n", LOCAL, PEER, "udp")
    await tracer.sweep(time.monotonic() + sip_trace.UNATTACHED_IDLE_S + 1)
    assert await tracer.entries("call_x", "probe") is None
    assert await tracer.entries("call_x", "busy")
    monkeypatch.setattr(sip_trace, "MAX_BUFFERS", 2)
    tracer.record("in", msg("a"), LOCAL, PEER, "udp")
    tracer.record("in", msg("b"), LOCAL, PEER, "udp")  # full: idle unattached ones make room
    assert await tracer.entries("call_x", "b") and await tracer.entries("call_x", "busy")


async def test_disabled_keeps_nothing(tmp_path: Path) -> None:
    tracer = SipTracer(SipTraceConfig(enabled=False), tmp_path)
    tracer.record("in", msg("c"), LOCAL, PEER, "udp")
    assert await tracer.entries("call_c", "c") is None


async def test_a_flood_of_call_ids_costs_bounded_memory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sip_trace, "MAX_BYTES", 20000)
    tracer = SipTracer(SipTraceConfig(), tmp_path, is_active=lambda cid: cid == "real")
    for n in range(50):  # one Call-ID no call has: a few messages only
        tracer.record("in", msg("junk", n), LOCAL, PEER, "udp")
    junk = await tracer.entries("call_x", "junk")
    assert junk is not None and len(junk) == sip_trace.UNATTACHED_MAX
    for n in range(50):  # a call in progress keeps up to max_messages
        tracer.record("in", msg("real", n), LOCAL, PEER, "udp")
    real = await tracer.entries("call_x", "real")
    assert real is not None and len(real) == 50
    for n in range(1000):  # distinct Call-IDs until the byte budget is spent
        tracer.record("in", msg(f"flood{n}"), LOCAL, PEER, "udp")
    assert tracer._bytes <= 20000
    tracer.finish("real", "call_real")
    await tracer.sweep(float("inf"))
    assert (tmp_path / "call_real.jsonl").is_file()
