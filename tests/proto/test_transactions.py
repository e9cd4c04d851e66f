"""Transaction timers directly (RFC 3261 §17), over UDP and over a reliable transport,
and the proto layering rule."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from voxd.proto.negotiate import offer
from voxd.proto.sip import (
    CallEstablished,
    CallFailed,
    CallTerminated,
    ClientTransaction,
    IncomingCall,
    ServerTransaction,
    Timers,
    UAConfig,
    UserAgent,
    make_response,
    parse_message,
)

from .pair import UAC_ADDR, UAS_ADDR, Pair

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


INVITE = (b"INVITE sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5062;branch=z9hG4bKi1\r\n"
          b"From: <sip:b@x>;tag=1\r\nTo: <sip:a@y>\r\nCall-ID: c2\r\nCSeq: 1 INVITE\r\n"
          b"Content-Length: 0\r\n\r\n")


def test_invite_client_timer_a_over_udp_only():
    req = parse_message(INVITE)
    udp = ClientTransaction(req, ("127.0.0.1", 5060), 0.0)
    udp.outbox.clear()
    sent = run_until(udp, 100)
    assert sent == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # A doubles without a cap
    assert udp.terminated and udp.timed_out

    tcp = ClientTransaction(req, ("127.0.0.1", 5060), 0.0, reliable=True)
    assert len(tcp.outbox) == 1  # sent once
    tcp.outbox.clear()
    assert tcp.deadline() == 32.0  # only Timer B is scheduled
    assert tcp.poll(31.99) is None and tcp.outbox == [] and not tcp.terminated
    timeout = tcp.poll(32.0)
    assert timeout is not None and timeout.status == 408
    assert tcp.terminated and tcp.timed_out and tcp.outbox == []


def test_non_invite_client_over_reliable_transport_timer_f_only_and_k_zero():
    req = parse_message(REQ)
    tx = ClientTransaction(req, ("127.0.0.1", 5060), 0.0, reliable=True)
    tx.outbox.clear()
    assert tx.deadline() == 32.0
    assert run_until(tx, 100) == []  # no Timer E
    assert tx.terminated and tx.timed_out

    tx = ClientTransaction(req, ("127.0.0.1", 5060), 0.0, reliable=True)
    tx.outbox.clear()
    trying = make_response(req, 100)
    assert tx.on_response(trying, 1.0) is trying
    assert tx.deadline() == 32.0  # still only F (no E at T2 in Proceeding either)
    ok = make_response(req, 200)
    assert tx.on_response(ok, 2.0) is ok
    assert tx.deadline() == 2.0  # Timer K = 0
    tx.poll(2.0)
    assert tx.terminated and not tx.timed_out and tx.outbox == []


def test_invite_client_non_2xx_over_reliable_transport_timer_d_zero():
    req = parse_message(INVITE)
    tx = ClientTransaction(req, ("127.0.0.1", 5060), 0.0, reliable=True)
    tx.outbox.clear()
    busy = make_response(req, 486, to_tag="t")
    assert tx.on_response(busy, 1.0) is busy
    assert len(tx.outbox) == 1 and tx.outbox[0].startswith(b"ACK ")
    assert tx.deadline() == 1.0  # Timer D = 0 (32 s on UDP)
    tx.poll(1.0)
    assert tx.terminated


@pytest.mark.parametrize("reliable", [False, True])
def test_invite_server_timers_g_h_i(reliable: bool):
    req = parse_message(INVITE)
    tx = ServerTransaction(req, ("127.0.0.1", 5062), reliable=reliable)
    tx.respond(make_response(req, 486, to_tag="x"), 0.0)
    tx.outbox.clear()
    sent = run_until(tx, 100)
    if reliable:
        assert sent == []  # no Timer G
    else:
        assert sent[:5] == [0.5, 1.5, 3.5, 7.5, 11.5] and sent[-1] < 32.0  # G capped at T2
    assert tx.terminated and tx.timed_out  # Timer H = 64*T1 either way

    tx = ServerTransaction(req, ("127.0.0.1", 5062), reliable=reliable)
    tx.respond(make_response(req, 486, to_tag="x"), 0.0)
    assert tx.on_ack(1.0)
    assert tx.deadline() == (1.0 if reliable else 6.0)  # Timer I: 0 or T4
    tx.poll(1.0)
    assert tx.terminated is reliable


def test_non_invite_server_over_reliable_transport_timer_j_zero():
    req = parse_message(REQ)
    tx = ServerTransaction(req, ("127.0.0.1", 5062), reliable=True)
    tx.respond(make_response(req, 200, to_tag="x"), 3.0)
    assert tx.deadline() == 3.0
    tx.poll(3.0)
    assert tx.terminated


def tcp_pair() -> Pair:
    """Two user agents that see each other over a connection (a reliable transport)."""
    return Pair(uac=UserAgent(UAConfig(*UAC_ADDR, user="caller"), reliable=lambda a: a == UAS_ADDR),
                uas=UserAgent(UAConfig(*UAS_ADDR, user="agent"), reliable=lambda a: a == UAC_ADDR))


@pytest.mark.parametrize("reliable", [False, True])
def test_user_agent_invite_timeout_with_and_without_retransmissions(reliable: bool):
    pair = tcp_pair() if reliable else Pair()
    pair.drop = lambda src, dst, data: True  # the callee never answers
    call_id = pair.uac.invite("sip:agent@127.0.0.1:5060", 0.0, sdp=offer("127.0.0.1", 40000).serialize(),
                              peer=UAS_ADDR)
    pair.advance(40)
    assert pair.labels() == ["INVITE"] * (1 if reliable else 7)
    via = parse_message(pair.wire[0].data).top_via
    assert via.transport == ("TCP" if reliable else "UDP")
    (failed,) = pair.of(CallFailed, "uac")
    assert failed.call_id == call_id and failed.status == 408
    assert pair.uac.next_deadline() is None


def test_user_agent_over_reliable_transport_still_retransmits_2xx_until_ack():
    """RFC 3261 §13.3.1.4: the UAS core re-sends its 2xx even on a reliable transport."""
    pair = tcp_pair()
    pair.drop = lambda src, dst, data: data.startswith(b"ACK ")
    call_id = pair.uac.invite("sip:agent@127.0.0.1:5060", 0.0, sdp=offer("127.0.0.1", 40000).serialize(),
                              peer=UAS_ADDR)
    pair.flush()
    (incoming,) = pair.of(IncomingCall)
    pair.uas.answer(call_id, incoming.offer, pair.now)
    pair.advance(40)
    oks = [s.at for s in pair.wire if s.label == "200 INVITE"]
    assert oks[:4] == [0.0, 0.5, 1.5, 3.5] and len(oks) > 5
    assert pair.of(CallEstablished, "uac") and not pair.of(CallEstablished, "uas")
    assert [e.reason for e in pair.of(CallTerminated)] == ["ack-timeout"]
    bye = next(s for s in pair.wire if s.label == "BYE")
    assert parse_message(bye.data).top_via.transport == "TCP"
    assert pair.labels(UAS_ADDR).count("BYE") == 1  # the BYE itself is not retransmitted


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


TCP_OPTIONS = (
    "OPTIONS sip:agent@127.0.0.1:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bKtcp1\r\n"
    "From: <sip:probe@127.0.0.1:5070>;tag=p1\r\nTo: <sip:agent@127.0.0.1:5060>\r\n"
    "Call-ID: tcp-options-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


@pytest.mark.parametrize("reliable", [False, True])
def test_response_goes_back_on_the_connection_over_tcp(reliable: bool) -> None:
    """RFC 3261 §18.2.2: over TCP the response uses the request's connection (source port
    40001), not the Via's listening port (5070), even without ;rport; over UDP, the Via."""
    source = ("127.0.0.1", 40001)
    ua = UserAgent(UAConfig(*UAS_ADDR, user="agent"), reliable=(lambda a: a == source) if reliable else None)
    ua.receive(TCP_OPTIONS.encode(), source, 0.0)
    sent = ua.data_to_send()
    assert [parse_message(d).status for d, _ in sent] == [200]  # type: ignore[union-attr]
    assert sent[0][1] == (source if reliable else ("127.0.0.1", 5070))
    broken = TCP_OPTIONS.replace("Content-Length: 0", "Content-Length: 99").replace("tcp1", "tcp2")
    ua.receive(broken.encode(), source, 0.1)
    (bad,) = ua.data_to_send()  # a malformed request's 400 takes the same way
    assert bad[0].startswith(b"SIP/2.0 400") and bad[1] == (source if reliable else ("127.0.0.1", 5070))
