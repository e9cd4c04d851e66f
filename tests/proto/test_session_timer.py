"""Session timers (RFC 4028): the header grammar, the negotiation, and refresh/expiry
between voxd's UAC and UAS in memory (virtual time)."""

from __future__ import annotations

import pytest

from voxd.proto.sip import (
    ByeReceived,
    CallEstablished,
    CallTerminated,
    Headers,
    IncomingCall,
    ReInvite,
    SipParseError,
    UAConfig,
    UserAgent,
    parse_message,
)
from voxd.proto.sip.session_timer import (
    SessionExpires,
    SessionTimer,
    TimerPolicy,
    negotiate_uas,
    parse_min_se,
    timer_for,
)

from .pair import UAC_ADDR, UAS_ADDR, Pair
from .test_dialogs import answer_sdp, dial


@pytest.mark.parametrize("value, parsed", [
    ("1800", SessionExpires(1800)), ("90;refresher=uac", SessionExpires(90, "uac")),
    (" 600 ; Refresher = UAS ;x=1", SessionExpires(600, "uas")), ("4000;foo", SessionExpires(4000)),
])
def test_session_expires_parses(value, parsed):
    assert SessionExpires.parse(value) == parsed
    assert SessionExpires.parse(parsed.serialize()) == parsed


@pytest.mark.parametrize("value", ["", "x", "-1", "0", "1.5", "99999999999", "90;refresher=me", "2147483648"])
def test_bad_session_expires(value):
    with pytest.raises(SipParseError):
        SessionExpires.parse(value)


def test_min_se():
    assert parse_min_se("120;lr") == 120
    with pytest.raises(SipParseError):
        parse_min_se("soon")


def _h(**fields: str) -> Headers:
    return Headers([(k.replace("_", "-"), v) for k, v in fields.items()])


def test_uas_negotiation():
    policy = TimerPolicy(expires=1800, min_se=120)
    assert negotiate_uas(_h(), policy).expires is None  # nothing asked, no extension: no timer
    # supported but not asked: we refresh ourselves
    assert negotiate_uas(_h(Supported="timer"), policy).expires == SessionExpires(1800, "uas")
    too_short = negotiate_uas(_h(Supported="timer", Session_Expires="100"), policy)
    assert too_short.status == 422 and too_short.headers() == [("Min-SE", "120")]
    # a longer interval than ours is cut to ours; the refresher defaults to the UAC
    neg = negotiate_uas(_h(Supported="timer", Session_Expires="7200"), policy)
    assert (neg.expires, neg.require) == (SessionExpires(1800, "uac"), True)
    assert ("Require", "timer") in neg.headers() and ("Session-Expires", "1800;refresher=uac") in neg.headers()
    # asked by a proxy for a UAC without the extension: we refresh, no Require
    neg = negotiate_uas(_h(Session_Expires="600;refresher=uac"), policy)
    assert (neg.expires, neg.require) == (SessionExpires(600, "uas"), False)
    # never below the request's own Min-SE
    assert negotiate_uas(_h(k="timer", x="300", Min_SE="1000"), policy).expires == SessionExpires(1000, "uac")


def test_timer_roles_and_deadlines():
    assert timer_for(None, uas=True, now=0) is None
    ours = timer_for(SessionExpires(600, "uas"), uas=True, now=10)
    assert ours == SessionTimer(600, True, 310.0, 610.0)
    theirs = timer_for(SessionExpires(90, "uac"), uas=True, now=0)
    assert theirs is not None and not theirs.we_refresh and theirs.expire_at == 60.0  # 90 - min(32, 30)
    assert timer_for(SessionExpires(600), uas=False, now=0).we_refresh  # no refresher said: the UAC


def _call(pair: Pair) -> str:
    call_id = dial(pair)
    (incoming,) = pair.of(IncomingCall)
    pair.uas.answer(call_id, answer_sdp(incoming), pair.now)
    pair.flush()
    assert pair.of(CallEstablished, "uac")
    return call_id


def test_uac_refreshes_with_update_at_half_interval():
    pair = Pair()
    call_id = _call(pair)
    ok = parse_message(next(s.data for s in pair.wire if s.label == "200 INVITE"))
    assert ok.headers.get("Session-Expires") == "1800;refresher=uac" and ok.headers.get("Require") == "timer"
    pair.advance(4000)
    updates = [s for s in pair.wire if s.label == "UPDATE"]
    assert [round(s.at) for s in updates] == [900, 1800, 2700, 3600]
    assert parse_message(updates[0].data).headers.get("Session-Expires") == "1800;refresher=uac"
    assert pair.labels().count("200 UPDATE") == 4
    assert not pair.of(CallTerminated) and not pair.of(ByeReceived, "uac")
    assert call_id in pair.uas.calls


def test_peer_stops_refreshing_gets_bye_at_expiry():
    pair = Pair()
    call_id = _call(pair)
    pair.uac.calls[call_id].session_timer = None  # a UAC that agreed to refresh and never does
    pair.advance(2000)
    (bye,) = [s for s in pair.wire if s.label == "BYE"]
    assert bye.src == UAS_ADDR and round(bye.at) == 1800 - 32
    assert 'text="Session expired"' in (parse_message(bye.data).headers.get("Reason") or "")
    assert pair.of(CallTerminated) == [CallTerminated(call_id, "session_expired")]
    assert pair.of(ByeReceived, "uac") == [ByeReceived(call_id)]


def test_uas_refreshes_with_reinvite_when_peer_has_no_update():
    pair = Pair(uac=UserAgent(UAConfig(*UAC_ADDR, user="caller", session=TimerPolicy(expires=0))))
    call_id = _call(pair)
    ok = parse_message(next(s.data for s in pair.wire if s.label == "200 INVITE"))
    assert ok.headers.get("Session-Expires") == "1800;refresher=uas"  # supported, not asked: voxd refreshes
    pair.uas.calls[call_id].peer_allow = frozenset()  # a peer that does not allow UPDATE
    pair.advance(901)
    (reoffer,) = pair.of(ReInvite, "uac")
    pair.uac.answer_reoffer(call_id, answer_sdp(reoffer), pair.now)
    pair.advance(99)
    reinvites = [s for s in pair.wire if s.label == "INVITE" and s.src == UAS_ADDR]
    assert [round(s.at) for s in reinvites] == [900]
    assert parse_message(reinvites[0].data).body == pair.uas.calls[call_id].local_sdp
    assert "ACK" in [s.label for s in pair.wire if s.src == UAS_ADDR]
    assert pair.uas.calls[call_id].session_timer.refresh_at == pytest.approx(901 + 900)


def test_422_then_retry_with_min_se():
    pair = Pair(uac=UserAgent(UAConfig(*UAC_ADDR, user="caller", session=TimerPolicy(expires=100))),
                uas=UserAgent(UAConfig(*UAS_ADDR, user="agent", session=TimerPolicy(min_se=600))))
    call_id = dial(pair)
    assert pair.labels()[:3] == ["INVITE", "422 INVITE", "ACK"]
    retry = parse_message(pair.wire[3].data)
    assert (retry.headers.get("Session-Expires"), retry.headers.get("Min-SE"), retry.cseq.seq) == ("600", "600", 2)
    (incoming,) = pair.of(IncomingCall)
    pair.uas.answer(call_id, answer_sdp(incoming), pair.now)
    pair.flush()
    assert pair.of(CallEstablished, "uac")
    assert pair.uac.calls[call_id].session_timer.interval == 600


def test_refresh_answered_481_ends_the_call():
    pair = Pair()
    call_id = _call(pair)
    uas_call = pair.uas.calls.pop(call_id)  # the far end forgot the dialog: 481 to the refresh
    pair.advance(1000)
    assert "481 UPDATE" in pair.labels()
    assert pair.of(CallTerminated, "uac") == [CallTerminated(call_id, "session_expired")]
    assert uas_call.call_id == call_id
