"""OPTIONS with the node's state, OPTIONS probes, Max-Forwards, loops and Retry-After."""

from __future__ import annotations

import pytest

from voxd.proto.sip import CallFailed, IncomingCall, OptionsResult, UAConfig, UserAgent, parse_message
from voxd.proto.sip.limits import next_hop_max_forwards, parse_retry_after
from voxd.proto.sip.probe import NodeState

from .pair import UAC_ADDR, UAS_ADDR, Pair
from .test_dialogs import OFFER, dial

OPTIONS = (b"OPTIONS sip:voxd@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKo1\r\n"
           b"Max-Forwards: MF\r\nFrom: <sip:lb@127.0.0.1>;tag=a\r\nTo: <sip:voxd@127.0.0.1>\r\nCall-ID: o1\r\n"
           b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")


def _ask(ua: UserAgent, data: bytes):
    ua.receive(data, ("127.0.0.1", 5070), 0.0)
    ((out, addr),) = ua.data_to_send()
    assert addr == ("127.0.0.1", 5070)
    return parse_message(out)


@pytest.mark.parametrize("state, status, name", [
    (NodeState(active=3, capacity=200), 200, "open"),
    (NodeState(active=200, capacity=200), 200, "full"),
    (NodeState(draining=True, active=1, capacity=200, retry_after=45), 503, "draining"),
])
def test_options_answered_with_node_state(state, status, name):
    ua = UserAgent(UAConfig("127.0.0.1", 5060), node_state=lambda: state)
    resp = _ask(ua, OPTIONS.replace(b"MF", b"70"))
    assert resp.status == status
    assert resp.headers.get("X-Voxd-State") == name
    assert resp.headers.get("X-Voxd-Calls") == str(state.active)
    assert resp.headers.get("X-Voxd-Capacity") == "200"
    assert "INVITE" in (resp.headers.get("Allow") or "")
    assert (resp.headers.get("Retry-After") == "45") is state.draining


def test_options_with_max_forwards_zero_is_still_answered():
    assert _ask(UserAgent(UAConfig("127.0.0.1", 5060)), OPTIONS.replace(b"MF", b"0")).status == 200


@pytest.mark.parametrize("value", [b"many", "\u00b2".encode()])
def test_bad_max_forwards_gets_400(value):
    assert _ask(UserAgent(UAConfig("127.0.0.1", 5060)), OPTIONS.replace(b"MF", value)).status == 400


def test_non_ascii_digits_in_cseq_are_dropped_not_a_crash():
    """str.isdigit() says yes to "²"; int() does not (found by scripts/fuzz_sip.py). A
    CSeq that does not parse leaves nothing to answer with: the request is dropped."""
    ua = UserAgent(UAConfig("127.0.0.1", 5060))
    data = OPTIONS.replace(b"MF", b"70").replace(b"CSeq: 1", "CSeq: \u00b2".encode())
    assert ua.receive(data, ("127.0.0.1", 5070), 0.0) == []
    assert ua.data_to_send() == []


def test_invite_with_no_hops_left_gets_483():
    pair = Pair()
    pair.uac.invite("sip:agent@127.0.0.1:5060", pair.now, sdp=OFFER, peer=UAS_ADDR, max_forwards=0)
    pair.flush()
    assert not pair.of(IncomingCall)
    assert [e.status for e in pair.of(CallFailed, "uac")] == [483]


def test_incoming_call_knows_its_max_forwards():
    pair = Pair()
    pair.uac.invite("sip:agent@127.0.0.1:5060", pair.now, sdp=OFFER, peer=UAS_ADDR, max_forwards=12)
    pair.flush()
    (incoming,) = pair.of(IncomingCall)
    assert incoming.max_forwards == 12 and next_hop_max_forwards(incoming.max_forwards) == 11


def test_our_own_invite_coming_back_gets_482():
    """A trunk that routes voxd's INVITE back to voxd: the Via it carries is ours."""
    pair = Pair()
    pair.uac.invite("sip:bob@127.0.0.1:5062", pair.now, sdp=OFFER, peer=UAC_ADDR)
    pair.flush()
    assert "482 INVITE" in pair.labels()
    assert [e.status for e in pair.of(CallFailed, "uac")] == [482]
    assert not pair.of(IncomingCall, "uac")


def test_options_probe_answered_and_timed_out():
    pair = Pair()
    probe = pair.uac.options("sip:127.0.0.1:5060", UAS_ADDR, pair.now)
    pair.flush()
    (result,) = pair.of(OptionsResult, "uac")
    assert (result.call_id, result.status, result.rtt_s) == (probe, 200, 0.0)
    lost = Pair(drop=lambda src, dst, data: True)
    probe = lost.uac.options("sip:127.0.0.1:5060", UAS_ADDR, lost.now)
    lost.advance(40)
    (result,) = lost.of(OptionsResult, "uac")
    assert (result.call_id, result.status, result.rtt_s) == (probe, 408, None)
    assert not lost.uac._probes


def test_probe_of_a_draining_node():
    pair = Pair(uas=UserAgent(UAConfig(*UAS_ADDR), node_state=lambda: NodeState(draining=True, retry_after=9)))
    pair.uac.options("sip:127.0.0.1:5060", UAS_ADDR, pair.now)
    pair.flush()
    (result,) = pair.of(OptionsResult, "uac")
    assert (result.status, result.retry_after) == (503, 9)


@pytest.mark.parametrize("value, seconds", [
    (None, None), ("", None), ("120", 120), ("18 (maintenance);duration=60", 18), (" 5;x", 5),
    ("soon", None), ("-1", None), ("99999999999", None), ("9999999", 86400),
])
def test_retry_after(value, seconds):
    assert parse_retry_after(value) == seconds


def test_dialled_call_rejected_with_retry_after():
    pair = Pair()
    call_id = dial(pair)
    pair.uas.reject(call_id, 503, pair.now, retry_after=30)
    pair.flush()
    (failed,) = pair.of(CallFailed, "uac")
    assert (failed.status, failed.retry_after) == (503, 30)
