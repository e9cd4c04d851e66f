"""Every dialog path between a UAC and a UAS joined in memory (virtual time)."""

from __future__ import annotations

import itertools

import pytest

from voxd.proto.negotiate import SdpNegotiationError, answer, offer
from voxd.proto.sdp import SessionDescription
from voxd.proto.sip import (
    ByeReceived,
    CallCancelled,
    CallEstablished,
    CallFailed,
    CallProgress,
    CallTerminated,
    Credentials,
    DigestServer,
    IncomingCall,
    InfoDtmf,
    OptionsProbe,
    ReferAccepted,
    ReferFailed,
    ReferProgress,
    ReferReceived,
    ReInvite,
    ReofferAnswered,
    ReofferFailed,
    UAConfig,
    UserAgent,
    make_response,
    parse_message,
)

from .pair import UAC_ADDR, UAS_ADDR, Pair

OFFER = offer("127.0.0.1", 40000).serialize()


def dial(pair: Pair, target: str = "sip:agent@127.0.0.1:5060") -> str:
    call_id = pair.uac.invite(target, pair.now, sdp=OFFER, peer=UAS_ADDR)
    pair.flush()
    return call_id


def answer_sdp(incoming: IncomingCall | ReInvite) -> bytes:
    return answer(SessionDescription.parse(incoming.offer), "127.0.0.1", 30000).sdp.serialize()


def established(pair: Pair) -> str:
    call_id = dial(pair)
    (incoming,) = pair.of(IncomingCall)
    pair.uas.ring(call_id, pair.now)
    pair.uas.answer(call_id, answer_sdp(incoming), pair.now)
    pair.flush()
    assert pair.of(CallEstablished, "uas") and pair.of(CallEstablished, "uac")
    return call_id


def test_invite_ringing_answer_ack():
    pair = Pair()
    call_id = dial(pair)
    (incoming,) = pair.of(IncomingCall)
    assert incoming.call_id == call_id
    assert incoming.user == "agent"
    assert incoming.from_.uri.user == "caller"
    assert SessionDescription.parse(incoming.offer).audio() is not None
    pair.uas.ring(call_id, pair.now)
    pair.flush()
    assert [e.status for e in pair.of(CallProgress, "uac")] == [180]
    pair.uas.answer(call_id, answer_sdp(incoming), pair.now)
    pair.flush()
    # voxd's UAC says Supported: 100rel, so the 180 is reliable: PRACKed before the 200 goes
    assert pair.labels() == ["INVITE", "100 INVITE", "180 INVITE", "PRACK", "200 PRACK", "200 INVITE", "ACK"]
    (est,) = pair.of(CallEstablished, "uac")
    assert b"m=audio 30000" in est.answer
    assert pair.of(CallEstablished, "uas") == [CallEstablished(call_id)]
    # the 200 carries a To-tag and a Contact, the ACK echoes the tag
    ok = parse_message(pair.wire[5].data)
    ack = parse_message(pair.wire[6].data)
    assert ok.to.tag and ack.to.tag == ok.to.tag
    assert ok.contact is not None and ok.contact.uri.port == 5060
    pair.advance(60)
    assert pair.labels()[7:] == []  # nothing retransmitted after the ACK


@pytest.mark.parametrize("hangs_up", ["uac", "uas"])
def test_bye_either_way(hangs_up):
    pair = Pair()
    call_id = established(pair)
    ua = pair.uac if hangs_up == "uac" else pair.uas
    ua.bye(call_id, pair.now)
    pair.flush()
    other = "uas" if hangs_up == "uac" else "uac"
    assert pair.of(ByeReceived, other) == [ByeReceived(call_id)]
    assert pair.labels()[-2:] == ["BYE", "200 BYE"]
    assert call_id not in pair.uac.calls and call_id not in pair.uas.calls
    pair.advance(60)
    assert pair.labels()[-1] == "200 BYE"


def test_cancel_while_ringing():
    pair = Pair()
    call_id = dial(pair)
    pair.uas.ring(call_id, pair.now)
    pair.flush()
    pair.uac.cancel(call_id, pair.now)
    pair.flush()
    assert pair.of(CallCancelled) == [CallCancelled(call_id)]
    assert [(e.status) for e in pair.of(CallFailed, "uac")] == [487]
    assert pair.labels()[-4:] == ["CANCEL", "200 CANCEL", "487 INVITE", "ACK"]
    assert call_id not in pair.uas.calls and call_id not in pair.uac.calls
    with pytest.raises(KeyError):
        pair.uas.answer(call_id, b"v=0\r\n", pair.now)
    pair.advance(60)
    assert pair.labels()[-1] == "ACK"


def test_cancel_before_provisional_waits_for_it():
    pair = Pair(drop=lambda s, d, data: data.startswith(b"SIP/2.0 100"))
    call_id = dial(pair)
    pair.uac.cancel(call_id, pair.now)
    pair.flush()
    assert "CANCEL" not in pair.labels()
    pair.uas.ring(call_id, pair.now)
    pair.flush()
    assert "CANCEL" in pair.labels()
    assert pair.of(CallCancelled)


def test_200_retransmitted_until_ack_with_losses():
    acks_dropped = []

    def drop(src, dst, data):
        if data.startswith(b"ACK") and len(acks_dropped) < 2:
            acks_dropped.append(True)
            return True
        return False

    pair = Pair(drop=drop)
    call_id = dial(pair)
    (incoming,) = pair.of(IncomingCall)
    pair.uas.answer(call_id, answer_sdp(incoming), pair.now)
    pair.advance(10)
    oks = [s.at for s in pair.wire if s.label == "200 INVITE"]
    assert oks == [0.0, 0.5, 1.5]  # T1, then doubled
    assert pair.labels().count("ACK") == 3
    assert pair.of(CallEstablished) == [CallEstablished(call_id)]
    assert len(pair.of(CallEstablished, "uac")) == 1


def test_no_ack_for_200_ends_call_with_bye():
    pair = Pair(drop=lambda s, d, data: data.startswith(b"ACK"))
    call_id = dial(pair)
    (incoming,) = pair.of(IncomingCall)
    pair.uas.answer(call_id, answer_sdp(incoming), pair.now)
    pair.advance(40)
    oks = [s.at for s in pair.wire if s.label == "200 INVITE"]
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(oks)]
    assert gaps[:4] == [0.5, 1.0, 2.0, 4.0] and set(gaps[3:]) == {4.0}  # capped at T2
    assert pair.of(CallTerminated) == [CallTerminated(call_id, "ack-timeout")]
    assert "BYE" in pair.labels(UAS_ADDR)
    assert oks[-1] < 32.0


def test_retransmitted_invite_is_absorbed():
    pair = Pair()
    call_id = dial(pair)
    pair.uas.ring(call_id, pair.now)
    pair.flush()
    invite = pair.wire[0].data
    events = pair.uas.receive(invite, UAC_ADDR, pair.now)
    assert events == []
    resent = pair.uas.data_to_send()
    assert [d.split(b"\r\n")[0] for d, _ in resent] == [b"SIP/2.0 180 Ringing"]
    assert len(pair.of(IncomingCall)) == 1


def test_timer_h_stops_non_2xx_retransmissions():
    pair = Pair(drop=lambda s, d, data: data.startswith(b"ACK"))
    call_id = dial(pair)
    pair.uas.reject(call_id, 486, pair.now)
    pair.advance(100)
    busy = [s.at for s in pair.wire if s.label == "486 INVITE"]
    assert busy[:5] == [0.0, 0.5, 1.5, 3.5, 7.5]  # timer G: T1 doubling
    assert busy[-1] < 32.0  # timer H = 64*T1
    assert [e.status for e in pair.of(CallFailed, "uac")] == [486]
    assert pair.uas.next_deadline() is None and pair.uac.next_deadline() is None


def test_options_probe_answered():
    pair = Pair()
    raw = (b"OPTIONS sip:agent@127.0.0.1:5060 SIP/2.0\r\n"
           b"Via: SIP/2.0/UDP 10.0.0.9:5070;branch=z9hG4bKopt1;rport\r\n"
           b"From: <sip:trunk@10.0.0.9>;tag=t1\r\nTo: <sip:agent@127.0.0.1>\r\n"
           b"Call-ID: opt-1\r\nCSeq: 7 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
    events = pair.uas.receive(raw, ("192.0.2.7", 40123), 0.0)
    assert events == [OptionsProbe("opt-1", ("192.0.2.7", 40123))]
    ((data, dst),) = pair.uas.data_to_send()
    resp = parse_message(data)
    assert resp.status == 200 and "INVITE" in (resp.headers.get("Allow") or "")
    # rport: the answer goes to where the request came from, with received/rport filled in
    assert dst == ("192.0.2.7", 40123)
    assert resp.top_via.params["rport"] == "40123"
    assert resp.top_via.params["received"] == "192.0.2.7"


@pytest.mark.parametrize("method", ["INVITE", "UPDATE"])
def test_reoffer_hold_and_unhold(method):
    pair = Pair()
    call_id = established(pair)
    hold = offer("127.0.0.1", 40000, direction="sendonly").serialize()
    pair.uac.reoffer(call_id, hold, pair.now, method=method)
    pair.flush()
    (reinvite,) = pair.of(ReInvite)
    assert reinvite.hold and reinvite.method == method
    neg = answer(SessionDescription.parse(reinvite.offer), "127.0.0.1", 30000)
    assert neg.direction == "recvonly" and neg.on_hold
    pair.uas.answer_reoffer(call_id, neg.sdp.serialize(), pair.now)
    pair.flush()
    (done,) = pair.of(ReofferAnswered, "uac")
    assert b"a=recvonly" in done.answer
    expected = ([method, "100 INVITE", "200 INVITE", "ACK"] if method == "INVITE"
                else [method, "200 UPDATE"])
    assert pair.labels()[-len(expected):] == expected
    unhold = offer("127.0.0.1", 40000).serialize()
    pair.uac.reoffer(call_id, unhold, pair.now, method=method)
    pair.flush()
    assert not pair.of(ReInvite)[-1].hold
    pair.uas.answer_reoffer(call_id, b"v=0\r\n", pair.now, status=488)
    pair.flush()
    refused = [s for s in pair.wire if s.label == f"488 {method}"]
    assert len(refused) == 1 and parse_message(refused[0].data).body == b""
    assert pair.of(ReofferFailed, "uac") == [ReofferFailed(call_id, 488)]
    pair.advance(40)
    assert call_id in pair.uas.calls  # a failed re-offer keeps the call


def test_info_dtmf():
    pair = Pair()
    call_id = established(pair)
    for digit in "5#":
        pair.uac.send_info_dtmf(call_id, digit, pair.now)
        pair.flush()
    assert pair.of(InfoDtmf) == [InfoDtmf(call_id, "5", 160), InfoDtmf(call_id, "#", 160)]
    assert pair.labels()[-2:] == ["INFO", "200 INFO"]


def test_refer_and_notify():
    pair = Pair()
    call_id = established(pair)
    pair.uas.refer(call_id, "sip:human@10.0.0.5", pair.now)
    pair.flush()
    (received,) = pair.of(ReferReceived, "uac")
    assert received.refer_to == "sip:human@10.0.0.5"
    assert pair.of(ReferAccepted) == [ReferAccepted(call_id)]
    pair.uac.notify_refer(call_id, 200, pair.now)
    pair.flush()
    progress = pair.of(ReferProgress)
    assert [(p.status, p.final) for p in progress] == [(100, False), (200, True)]
    assert pair.labels().count("NOTIFY") == 2


def test_refer_rejected():
    pair = Pair()
    call_id = established(pair)
    pair.uac.refer(call_id, "sip:x@10.0.0.5", pair.now)
    # the peer is gone: REFER times out (timer F)
    pair.drop = lambda s, d, data: True
    pair.advance(40)
    assert pair.of(ReferFailed, "uac") == [ReferFailed(call_id, 408)]


@pytest.mark.parametrize(("status", "retry"), [(486, None), (503, 30), (603, None)])
def test_outbound_rejected(status, retry):
    pair = Pair()
    call_id = dial(pair)
    pair.uas.reject(call_id, status, pair.now, retry_after=retry)
    pair.flush()
    (failed,) = pair.of(CallFailed, "uac")
    assert (failed.status, failed.retry_after) == (status, retry)
    assert pair.labels()[-1] == "ACK"  # the client transaction ACKs the non-2xx
    assert call_id not in pair.uac.calls


def test_488_when_offer_has_no_common_codec():
    pair = Pair()
    opus = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            b"m=audio 4000 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n")
    call_id = pair.uac.invite("sip:agent@127.0.0.1", 0.0, sdp=opus, peer=UAS_ADDR)
    pair.flush()
    (incoming,) = pair.of(IncomingCall)
    with pytest.raises(SdpNegotiationError) as err:
        answer(SessionDescription.parse(incoming.offer), "127.0.0.1", 30000)
    pair.uas.reject(call_id, err.value.status, pair.now)
    pair.flush()
    assert [e.status for e in pair.of(CallFailed, "uac")] == [488]


def test_invite_timeout_timer_b():
    pair = Pair(drop=lambda s, d, data: True)
    call_id = dial(pair)
    pair.advance(40)
    invites = [s.at for s in pair.wire if s.label == "INVITE"]
    assert invites == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert pair.of(CallFailed, "uac") == [CallFailed(call_id, 408, "Request Timeout")]


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
@pytest.mark.parametrize("password", ["s3cret", "wrong"])
def test_digest_challenge(algorithm, password):
    server = DigestServer("voxd.test", {"trunk1": "s3cret"}, algorithms=(algorithm,))
    uas = UserAgent(UAConfig(*UAS_ADDR), auth=lambda src, req: server)
    uac = UserAgent(UAConfig(*UAC_ADDR, credentials=Credentials("trunk1", password)))
    pair = Pair(uac=uac, uas=uas)
    call_id = dial(pair)
    assert pair.labels()[:3] == ["INVITE", "401 INVITE", "ACK"]
    assert f"algorithm={algorithm}" in pair.wire[1].data.decode()
    if password == "s3cret":
        (incoming,) = pair.of(IncomingCall)
        assert incoming.auth_user == "trunk1"
        assert incoming.call_id == call_id
        assert pair.labels()[3:] == ["INVITE", "100 INVITE"]
    else:
        assert pair.of(IncomingCall) == []
        assert [e.status for e in pair.of(CallFailed, "uac")] == [401]
    assert "s3cret" not in repr(server) and "s3cret" not in repr(uac.config)


def test_in_dialog_request_for_unknown_call_gets_481():
    pair = Pair()
    call_id = established(pair)
    pair.uac.bye(call_id, pair.now)
    pair.flush()
    bye = next(s.data for s in pair.wire if s.label == "BYE")
    forged = bye.replace(b"z9hG4bK", b"z9hG4bKx")  # a new transaction for the ended dialog
    pair.uas.receive(forged, UAC_ADDR, pair.now)
    ((data, _),) = pair.uas.data_to_send()
    assert parse_message(data).status == 481


def test_183_early_media_then_answer():
    pair = Pair()
    call_id = dial(pair)
    (incoming,) = pair.of(IncomingCall)
    early = answer_sdp(incoming)
    pair.uas.ring(call_id, pair.now, sdp=early)
    pair.flush()
    (progress,) = pair.of(CallProgress, "uac")
    assert (progress.status, progress.sdp) == (183, early)
    pair.uas.answer(call_id, early, pair.now)
    pair.flush()
    assert pair.labels() == ["INVITE", "100 INVITE", "183 INVITE", "PRACK", "200 PRACK", "200 INVITE", "ACK"]


def test_uac_answers_proxy_407_challenge():
    proxy = DigestServer("proxy.test", {"bob": "pw"}, algorithms=("MD5",))
    uac = UserAgent(UAConfig(*UAC_ADDR, credentials=Credentials("bob", "pw")))
    call_id = uac.invite("sip:x@127.0.0.1:5060", 0.0, sdp=OFFER, peer=UAS_ADDR)
    ((first, _),) = uac.data_to_send()
    invite = parse_message(first)
    challenge = make_response(invite, 407, to_tag="p1",
                              extra=[("Proxy-Authenticate", c) for c in proxy.challenges(0.0)])
    assert uac.receive(challenge.serialize(), UAS_ADDR, 0.1) == []
    sent = [parse_message(d) for d, _ in uac.data_to_send()]
    assert [getattr(m, "method", None) for m in sent] == ["ACK", "INVITE"]
    retry = sent[1]
    assert retry.cseq.seq == invite.cseq.seq + 1 and retry.call_id == call_id
    assert retry.from_.tag == invite.from_.tag
    assert proxy.verify(retry, 0.2, header="Proxy-Authorization") == ("bob", False)
    assert proxy.verify(retry, 1000.0, header="Proxy-Authorization") == (None, True)  # stale


def test_cancel_crossing_200_is_acked_then_byed():
    pair = Pair()
    call_id = dial(pair)
    (incoming,) = pair.of(IncomingCall)
    pair.uas.ring(call_id, pair.now)
    pair.flush()
    pair.uac.cancel(call_id, pair.now)  # CANCEL and 200 cross on the wire
    pair.uas.answer(call_id, answer_sdp(incoming), pair.now)
    pair.flush()
    assert pair.of(CallCancelled) == []  # too late to cancel: 200 to CANCEL, no 487
    assert "487 INVITE" not in pair.labels()
    assert [e.status for e in pair.of(CallFailed, "uac")] == [487]
    assert pair.of(ByeReceived) == [ByeReceived(call_id)]
    assert pair.labels(UAC_ADDR)[-3:] == ["CANCEL", "ACK", "BYE"]
    assert not pair.uac.calls and not pair.uas.calls


@pytest.mark.parametrize("pattern", [(0,), (1,), (2, 3), (0, 2, 4), (1, 3, 5, 7)])
def test_whole_call_survives_loss_patterns(pattern):
    """Drop the n-th datagrams on the wire; retransmissions must still complete the
    call and the hang-up, and leave no state or timers behind."""
    counter = [0]

    def drop(src, dst, data):
        counter[0] += 1
        return counter[0] - 1 in pattern

    pair = Pair(drop=drop)
    call_id = dial(pair)
    pair.advance(5)
    (incoming,) = pair.of(IncomingCall)
    pair.uas.answer(call_id, answer_sdp(incoming), pair.now)
    pair.advance(5)
    assert pair.of(CallEstablished) == [CallEstablished(call_id)]
    assert len(pair.of(CallEstablished, "uac")) == 1
    pair.uac.bye(call_id, pair.now)
    pair.advance(5)
    assert pair.of(ByeReceived) == [ByeReceived(call_id)]
    pair.advance(60)
    assert not pair.uac.calls and not pair.uas.calls
    assert pair.uac.next_deadline() is None and pair.uas.next_deadline() is None
    assert any(s.dropped for s in pair.wire)


def test_unknown_required_extension_gets_420_with_unsupported():
    """RFC 3261 §8.2.2.3: a UAS that does not understand a Require option tag answers 420."""
    pair = Pair()
    pair.uac.invite("sip:agent@127.0.0.1:5060", pair.now, sdp=OFFER, peer=UAS_ADDR,
                    headers=[("Require", "x-foo, x-bar")])
    pair.flush()
    assert not pair.of(IncomingCall)
    rejected = next(s for s in pair.wire if s.label == "420 INVITE")
    assert parse_message(rejected.data).headers.get("Unsupported") == "x-foo, x-bar"
    assert [e.status for e in pair.of(CallFailed, "uac")] == [420]
