"""Reliable provisional responses (RFC 3262) between voxd's UAC and UAS in memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxd.proto.sip import (
    CallEstablished,
    CallProgress,
    CallTerminated,
    IncomingCall,
    SipParseError,
    parse_message,
)
from voxd.proto.sip.reliable import parse_rack, parse_rseq

from .pair import Pair
from .test_dialogs import OFFER, answer_sdp, dial

DATA = Path(__file__).parents[1] / "data" / "sip"


def test_reliable_180_prack_then_200():
    pair = Pair()
    call_id = dial(pair)
    (incoming,) = pair.of(IncomingCall)
    pair.uas.ring(call_id, pair.now)
    pair.uas.answer(call_id, answer_sdp(incoming), pair.now)  # held back until the PRACK
    assert [s.label for s in pair.wire] == ["INVITE", "100 INVITE"]
    pair.flush()
    assert pair.labels() == ["INVITE", "100 INVITE", "180 INVITE", "PRACK", "200 PRACK", "200 INVITE", "ACK"]
    ringing = parse_message(pair.wire[2].data)
    assert ringing.headers.get("Require") == "100rel"
    rseq = parse_rseq(ringing.headers.get("RSeq"))
    prack = parse_message(pair.wire[3].data)
    assert parse_rack(prack.headers.get("RAck")) == (rseq, 1, "INVITE")
    assert prack.to.tag == ringing.to.tag  # sent in the early dialog
    assert pair.of(CallEstablished, "uac") and pair.of(CallEstablished, "uas")
    assert [e.status for e in pair.of(CallProgress, "uac")] == [180]


def test_reliable_1xx_retransmitted_until_prack():
    lost = {"n": 0}

    def drop(src, dst, data):  # the first three PRACKs are lost
        if data.startswith(b"PRACK") and lost["n"] < 3:
            lost["n"] += 1
            return True
        return False

    pair = Pair(drop=drop)
    call_id = dial(pair)
    pair.uas.ring(call_id, pair.now)
    pair.flush()
    pair.advance(10)
    sent = [s for s in pair.wire if s.label == "180 INVITE"]
    assert [round(s.at, 2) for s in sent] == [0.0, 0.5, 1.5, 3.5]  # T1, then doubling
    # one PRACK per distinct RSeq only: retransmissions are absorbed by the PRACK transaction
    assert len({parse_message(s.data).headers.get("RSeq") for s in sent}) == 1
    assert [e.status for e in pair.of(CallProgress, "uac")] == [180]
    assert "200 PRACK" in pair.labels()
    n = len(pair.wire)
    pair.advance(60)
    assert "180 INVITE" not in [s.label for s in pair.wire[n:]]


def test_no_prack_rejects_with_504():
    pair = Pair(drop=lambda src, dst, data: data.startswith(b"PRACK"))
    call_id = dial(pair)
    (incoming,) = pair.of(IncomingCall)
    pair.uas.ring(call_id, pair.now)
    pair.uas.answer(call_id, answer_sdp(incoming), pair.now)
    pair.flush()
    pair.advance(40)
    assert "504 INVITE" in pair.labels()
    assert "200 INVITE" not in pair.labels()
    assert pair.of(CallTerminated) == [CallTerminated(call_id, "protocol_error")]
    assert call_id not in pair.uas.calls


def test_second_ring_waits_for_prack():
    pair = Pair(drop=lambda src, dst, data: data.startswith(b"PRACK"))
    call_id = dial(pair)
    pair.uas.ring(call_id, pair.now)
    pair.uas.ring(call_id, pair.now, sdp=OFFER)
    pair.flush()
    assert pair.labels().count("183 INVITE") == 0


def _raw_invite(extra: str) -> bytes:
    data = (DATA / "sipp_invite.sip").read_bytes()
    head, body = data.split(b"\r\n\r\n", 1)
    return head + b"\r\n" + extra.encode() + b"\r\n\r\n" + body


@pytest.mark.parametrize("extra, reliable", [("", False), ("Supported: 100rel", True),
                                             ("Require: 100rel", True), ("k: timer, 100rel", True)])
def test_which_invites_get_reliable_ringing(extra, reliable):
    pair = Pair()
    ua = pair.uas
    data = _raw_invite(extra) if extra else (DATA / "sipp_invite.sip").read_bytes()
    (incoming,) = [e for e in ua.receive(data, ("127.0.0.1", 5070), 0.0) if isinstance(e, IncomingCall)]
    ua.data_to_send()
    ua.ring(incoming.call_id, 0.0)
    ((out, _),) = ua.data_to_send()
    resp = parse_message(out)
    assert resp.status == 180
    assert (resp.headers.get("RSeq") is not None) is reliable
    assert ("100rel" in (resp.headers.get("Require") or "")) is reliable


def test_prack_with_unknown_rack_gets_481():
    pair = Pair(drop=lambda src, dst, data: data.startswith(b"PRACK"))
    call_id = dial(pair)
    pair.uas.ring(call_id, pair.now)
    pair.flush()
    prack = parse_message(next(s.data for s in pair.wire if s.label == "PRACK"))
    rseq, cseq, _ = parse_rack(prack.headers.get("RAck"))
    prack.headers.set("RAck", f"{rseq + 7} {cseq} INVITE")
    prack.headers.set("Via", "SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKother")
    pair.uas.receive(prack.serialize(), ("127.0.0.1", 5062), pair.now)
    ((out, _),) = pair.uas.data_to_send()
    assert parse_message(out).status == 481


@pytest.mark.parametrize("value", ["", "1", "x 1 INVITE", "1 1", "0 1 INVITE", "4294967296 1 INVITE",
                                   "1 2147483648 INVITE", "1 1 INV@TE", "99999999999 1 INVITE", "\u00b2 1 INVITE"])
def test_bad_rack(value):
    with pytest.raises(SipParseError):
        parse_rack(value)


def test_rack_and_rseq_parse():
    assert parse_rack("  776656 1  prack ") == (776656, 1, "PRACK")
    assert parse_rseq(" 4294967295") == 4294967295
    for bad in (None, "", "0", "-1", "1.0", "4294967296", "\u00b2", "\u0663"):
        with pytest.raises(SipParseError):
            parse_rseq(bad)


