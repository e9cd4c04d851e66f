"""Offer/answer with G.722 and Opus by preference (RFC 3551 §4.5.2, RFC 7587)."""

from __future__ import annotations

import pytest

from voxd.proto.negotiate import OPUS_FMTP, SdpNegotiationError, accept_answer, answer, canonical, offer
from voxd.proto.sdp import SessionDescription


def sdp(media: str) -> SessionDescription:
    text = f"v=0\no=- 1 1 IN IP4 192.0.2.10\ns=-\nc=IN IP4 192.0.2.10\nt=0 0\n{media}"
    return SessionDescription.parse(text.replace("\n", "\r\n").encode())


# what linphone offers (opus, speex, G.722, G.711, events at three rates), trimmed
LINPHONE = ("m=audio 7078 RTP/AVP 96 97 98 9 0 8 101 100 99\n"
            "a=rtpmap:96 opus/48000/2\na=fmtp:96 useinbandfec=1\n"
            "a=rtpmap:97 speex/16000\na=rtpmap:98 speex/8000\n"
            "a=rtpmap:101 telephone-event/48000\na=rtpmap:100 telephone-event/16000\n"
            "a=rtpmap:99 telephone-event/8000\n")
# baresip with g722.so and g711.so: G.722 on its static number, no rtpmap needed
BARESIP = "m=audio 10000 RTP/AVP 9 0 101\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-15\n"


@pytest.mark.parametrize(("prefs", "name", "pt", "event_pt"), [
    (["opus", "G722", "PCMU"], "opus", 96, 101),
    (["G722", "opus", "PCMU"], "G722", 9, 99),
    (["PCMU", "G722"], "PCMU", 0, 99),
    (["PCMA"], "PCMA", 8, 99),
])
def test_answer_follows_our_preference_and_keeps_the_offered_numbers(
        prefs: list[str], name: str, pt: int, event_pt: int) -> None:
    neg = answer(sdp(LINPHONE), "10.0.0.2", 30000, prefs)
    assert (neg.codec.name, neg.codec.payload_type) == (name, pt)
    # the event at the codec's own RTP clock: 48000 for Opus, 8000 for G.722 (not 16000)
    assert neg.telephone_event is not None and neg.telephone_event.payload_type == event_pt
    media = neg.sdp.media[0]
    assert media.formats == [str(pt), str(event_pt)]


def test_g722_answer_says_8000_and_opus_answer_carries_its_fmtp() -> None:
    g722 = answer(sdp(BARESIP), "10.0.0.2", 30000, ["G722", "PCMU"])
    assert g722.codec.clock_rate == 8000  # the RFC 3551 quirk: 16 kHz audio, 8 kHz RTP clock
    assert ("rtpmap", "9 G722/8000") in g722.sdp.media[0].attributes
    assert not [v for k, v in g722.sdp.media[0].attributes if k == "fmtp" and v and v.startswith("9 ")]
    opus = answer(sdp(LINPHONE), "10.0.0.2", 30000, ["opus"])
    attrs = opus.sdp.media[0].attributes
    assert ("rtpmap", "96 opus/48000/2") in attrs  # always /2 (RFC 7587 §7)
    assert ("fmtp", f"96 {OPUS_FMTP}") in attrs
    assert "stereo=0" in OPUS_FMTP and "maxplaybackrate=16000" in OPUS_FMTP


def test_a_preference_without_the_offered_codecs_is_488() -> None:
    with pytest.raises(SdpNegotiationError):
        answer(sdp(BARESIP), "10.0.0.2", 30000, ["opus"])
    # an Opus at the wrong clock is not Opus as RFC 7587 signals it
    with pytest.raises(SdpNegotiationError):
        answer(sdp("m=audio 1000 RTP/AVP 96\na=rtpmap:96 opus/16000\n"), "10.0.0.2", 30000, ["opus"])
    # G.722 with a 16000 rtpmap (a common mistake) is not taken for the RFC 3551 one
    with pytest.raises(SdpNegotiationError):
        answer(sdp("m=audio 1000 RTP/AVP 9\na=rtpmap:9 G722/16000\n"), "10.0.0.2", 30000, ["G722"])


def test_the_default_preference_stays_g711() -> None:
    assert answer(sdp(LINPHONE), "10.0.0.2", 30000).codec.name == "PCMU"
    with pytest.raises(SdpNegotiationError):
        answer(sdp("m=audio 1000 RTP/AVP 9\n"), "10.0.0.2", 30000)


def test_offer_lists_codecs_in_order_with_static_and_dynamic_numbers() -> None:
    o = offer("10.0.0.2", 30000, ["opus", "G722", "PCMU", "PCMA"])
    media = o.media[0]
    assert media.formats == ["111", "9", "0", "8", "101", "110"]
    attrs = media.attributes
    for line in ("111 opus/48000/2", "9 G722/8000", "0 PCMU/8000", "8 PCMA/8000",
                 "101 telephone-event/8000", "110 telephone-event/48000"):
        assert ("rtpmap", line) in attrs, line
    assert ("fmtp", f"111 {OPUS_FMTP}") in attrs
    # G.711 only: exactly what voxd offered before wideband
    plain = offer("10.0.0.2", 30000, ["PCMU", "PCMA"]).media[0]
    assert plain.formats == ["0", "8", "101"]
    assert [v for k, v in plain.attributes if k == "rtpmap"] == ["0 PCMU/8000", "8 PCMA/8000",
                                                                 "101 telephone-event/8000"]


def test_offer_round_trips_through_our_own_answer() -> None:
    ours = offer("10.0.0.2", 30000, ["G722", "opus", "PCMU"])
    reparsed = SessionDescription.parse(ours.serialize())
    for prefs, name, rate in ((["opus"], "opus", 48000), (["G722"], "G722", 8000), (["PCMU"], "PCMU", 8000)):
        ans = answer(reparsed, "10.0.0.3", 40000, prefs)
        got = accept_answer(ours, SessionDescription.parse(ans.sdp.serialize()))
        assert (got.codec.name, got.codec.clock_rate) == (name, rate)
        assert got.telephone_event is not None and got.telephone_event.clock_rate == rate
        assert got.remote_address == ("10.0.0.3", 40000)


def test_accept_answer_refuses_a_codec_we_did_not_offer() -> None:
    ours = offer("10.0.0.2", 30000, ["PCMU"])
    with pytest.raises(SdpNegotiationError):
        accept_answer(ours, sdp("m=audio 4000 RTP/AVP 9\na=rtpmap:9 G722/8000\n"))


def test_canonical_names() -> None:
    assert [canonical(n) for n in ("g722", "OPUS", "pcmu", "Pcma")] == ["G722", "opus", "PCMU", "PCMA"]
    with pytest.raises(ValueError, match=r"unknown codec 'g729'.*known: PCMU, PCMA, G722, opus"):
        canonical("g729")
