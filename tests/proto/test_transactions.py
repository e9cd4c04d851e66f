"""Transaction timers directly (RFC 3261 §17), and the proto layering rule."""

from __future__ import annotations

import ast
from pathlib import Path

from voxd.proto.sip import ClientTransaction, ServerTransaction, Timers, make_response
from voxd.proto.sip.message import parse_message

REQ = (b"BYE sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKt1\r\n"
       b"From: <sip:b@x>;tag=1\r\nTo: <sip:a@y>;tag=2\r\nCall-ID: c1\r\nCSeq: 2 BYE\r\n"
       b"Content-Length: 0\r\n\r\n")


def run_until(tx, end: float, step: float = 0.01) -> list[float]:
    sent_at, t = [], 0.0
    while t <= end and not tx.terminated:
        tx.poll(t)
        sent_at += [round(t, 2)] * len(tx.outbox)
        tx.outbox.clear()
        deadline = tx.deadline()
        t = deadline if deadline is not None else end + 1
    return sent_at


def test_non_invite_client_timers_e_f():
    req = parse_message(REQ)
    tx = ClientTransaction(req, ("127.0.0.1", 5060), 0.0)
    assert len(tx.outbox) == 1
    tx.outbox.clear()
    sent = run_until(tx, 100)
    gaps = [round(b - a, 2) for a, b in zip([0.0, *sent], sent, strict=False)]
    assert gaps[:4] == [0.5, 1.0, 2.0, 4.0] and set(gaps[4:]) == {4.0}  # E capped at T2
    assert tx.terminated and tx.timed_out and sent[-1] < 32.0  # F = 64*T1


def test_non_invite_client_completed_absorbs_and_timer_k():
    req = parse_message(REQ)
    tx = ClientTransaction(req, ("127.0.0.1", 5060), 0.0, Timers(t1=0.1, t2=0.4, t4=1.0))
    ok = make_response(req, 200)
    assert tx.on_response(ok, 0.05) is ok
    assert tx.on_response(ok, 0.06) is None  # retransmitted final absorbed
    tx.poll(1.04)
    assert not tx.terminated
    tx.poll(1.05)
    assert tx.terminated and not tx.timed_out


def test_non_invite_server_timer_j_and_retransmissions():
    req = parse_message(REQ)
    tx = ServerTransaction(req, ("127.0.0.1", 5062))
    tx.on_retransmission()
    assert tx.outbox == []  # nothing to repeat yet
    tx.respond(make_response(req, 200, to_tag="x"), 0.0)
    tx.on_retransmission()
    assert len(tx.outbox) == 2 and tx.outbox[0] == tx.outbox[1]
    tx.poll(31.9)
    assert not tx.terminated
    tx.poll(32.0)
    assert tx.terminated


def test_proto_imports_nothing_from_io_or_voxd():
    root = Path(__file__).resolve().parents[2] / "voxd" / "proto"
    banned = {"asyncio", "socket", "selectors", "threading", "subprocess", "voxd"}
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in banned, f"{path.name} imports {name}"
