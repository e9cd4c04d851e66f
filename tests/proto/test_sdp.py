"""SDP parse/serialize and offer/answer."""

from __future__ import annotations

import pytest

from voxd.proto.negotiate import SdpNegotiationError, accept_answer, answer, offer
from voxd.proto.sdp import SdpParseError, SessionDescription


def sdp(media: str, conn: str = "c=IN IP4 192.0.2.10", extra: str = "") -> bytes:
    text = f"v=0\no=- 1 1 IN IP4 192.0.2.10\ns=-\n{conn}\nt=0 0\n{extra}{media}"
    return text.replace("\n", "\r\n").encode()


MULTI_RATE = ("m=audio 5004 RTP/AVP 96 8 0 99 100 101\na=rtpmap:96 opus/48000/2\n"
              "a=rtpmap:99 telephone-event/48000\na=rtpmap:100 telephone-event/16000\n"
              "a=rtpmap:101 telephone-event/8000\na=fmtp:101 0-15\n")


def test_prefers_pcmu_keeps_payload_numbers_and_picks_8k_events():
    neg = answer(SessionDescription.parse(sdp(MULTI_RATE)), "10.0.0.2", 30000)
    assert (neg.codec.name, neg.codec.payload_type) == ("PCMU", 0)
    assert neg.telephone_event is not None and neg.telephone_event.payload_type == 101
    assert neg.remote_address == ("192.0.2.10", 5004)
    media = neg.sdp.media[0]
    assert media.formats == ["0", "101"] and media.port == 30000
    assert ("fmtp", "101 0-15") in media.attributes
    assert neg.sdp.connection == "IN IP4 10.0.0.2"


def test_pcma_when_no_pcmu_and_dynamic_rtpmap_numbers_kept():
    media = ("m=audio 5004 RTP/AVP 8 118\na=rtpmap:8 PCMA/8000\n"
             "a=rtpmap:118 telephone-event/8000\n")
    neg = answer(SessionDescription.parse(sdp(media)), "10.0.0.2", 30000)
    assert (neg.codec.name, neg.telephone_event.payload_type) == ("PCMA", 118)


def test_prefs_order_is_respected():
    neg = answer(SessionDescription.parse(sdp(MULTI_RATE)), "10.0.0.2", 1, prefs=["PCMA"])
    assert neg.codec.name == "PCMA"


def test_no_event_at_matching_rate_means_no_dtmf():
    media = "m=audio 5004 RTP/AVP 0 100\na=rtpmap:100 telephone-event/16000\n"
    neg = answer(SessionDescription.parse(sdp(media)), "10.0.0.2", 30000)
    assert neg.telephone_event is None and neg.sdp.media[0].formats == ["0"]


@pytest.mark.parametrize("media", [
    "m=audio 5004 RTP/AVP 96\na=rtpmap:96 opus/48000/2\n",
    "m=audio 0 RTP/AVP 0\n",
    "m=video 5006 RTP/AVP 0\n",
    "m=audio 5004 RTP/SAVP 0\n",
])
def test_nothing_acceptable_is_488(media):
    with pytest.raises(SdpNegotiationError) as err:
        answer(SessionDescription.parse(sdp(media)), "10.0.0.2", 30000)
    assert err.value.status == 488


def test_video_stream_rejected_with_port_zero():
    both = "m=video 5006 RTP/AVP 96\na=rtpmap:96 VP8/90000\nm=audio 5004 RTP/AVP 0\n"
    neg = answer(SessionDescription.parse(sdp(both)), "10.0.0.2", 30000)
    assert [(m.kind, m.port) for m in neg.sdp.media] == [("video", 0), ("audio", 30000)]


@pytest.mark.parametrize(("attr", "conn", "ours", "hold"), [
    ("a=sendrecv\n", "c=IN IP4 192.0.2.10", "sendrecv", False),
    ("a=sendonly\n", "c=IN IP4 192.0.2.10", "recvonly", True),
    ("a=inactive\n", "c=IN IP4 192.0.2.10", "inactive", True),
    ("a=recvonly\n", "c=IN IP4 192.0.2.10", "sendonly", False),
    ("", "c=IN IP4 0.0.0.0", "recvonly", True),
    ("a=inactive\n", "c=IN IP4 0.0.0.0", "inactive", True),
])
def test_hold_directions(attr, conn, ours, hold):
    neg = answer(SessionDescription.parse(sdp("m=audio 5004 RTP/AVP 0\n" + attr, conn)),
                 "10.0.0.2", 30000)
    assert neg.direction == ours and neg.on_hold == hold
    assert neg.sdp.media[0].direction == ours
    if conn.endswith("0.0.0.0"):
        assert neg.remote_address is None


def test_offer_and_accept_answer_round_trip():
    ours = offer("10.0.0.2", 30000, ["PCMA", "PCMU"], dtmf_payload_type=100)
    parsed = SessionDescription.parse(ours.serialize())
    assert parsed.media[0].formats == ["8", "0", "100"]
    theirs = answer(parsed, "192.0.2.10", 5004)
    assert theirs.codec.name == "PCMU"  # the answerer's preference wins on its side
    neg = accept_answer(ours, SessionDescription.parse(theirs.sdp.serialize()))
    assert neg.codec.name == "PCMU" and neg.telephone_event.payload_type == 100
    assert neg.remote_address == ("192.0.2.10", 5004)


def test_ipv6_and_session_attributes_round_trip():
    text = sdp("m=audio 5004 RTP/AVP 0\na=ptime:20\nb=AS:64\n", "c=IN IP6 ::1",
               extra="a=tool:x\n")
    parsed = SessionDescription.parse(text)
    assert parsed.attributes == [("tool", "x")]
    assert SessionDescription.parse(parsed.serialize()) == parsed
    neg = answer(parsed, "::1", 30000)
    assert neg.sdp.connection == "IN IP6 ::1" and neg.remote_address == ("::1", 5004)


@pytest.mark.parametrize("bad", [b"", b"x=1\r\n", b"v=1\r\n", b"o=x\r\nv=0\r\n",
                                 b"v=0\r\nm=audio\r\n", b"v=0\r\nm=audio x RTP/AVP 0\r\n",
                                 b"v=0\r\nc=IN\r\n", b"v=0\r\nnot a line\r\n"])
def test_malformed_sdp(bad):
    with pytest.raises(SdpParseError):
        SessionDescription.parse(bad)


@pytest.mark.parametrize(("attrs", "mux", "rtcp"), [
    ("", False, ("192.0.2.10", 5005)),  # RTP port + 1 (RFC 3550 §11)
    ("a=rtcp-mux\n", True, ("192.0.2.10", 5004)),  # RFC 5761: on the RTP port
    ("a=rtcp:6001\n", False, ("192.0.2.10", 6001)),  # RFC 3605, media address
    ("a=rtcp:6001 IN IP4 198.51.100.7\n", False, ("198.51.100.7", 6001)),
    ("a=rtcp:6001\na=rtcp-mux\n", True, ("192.0.2.10", 5004)),
])
def test_rtcp_address_and_mux(attrs, mux, rtcp):
    neg = answer(SessionDescription.parse(sdp("m=audio 5004 RTP/AVP 0\n" + attrs)), "10.0.0.2", 30000)
    assert neg.rtcp_mux is mux
    assert (neg.sdp.media[0].attribute("rtcp-mux") is not None) is mux  # echoed when accepted
    assert neg.rtcp_address(neg.remote_address) == rtcp
    assert neg.rtcp_address(None) is None
    if not mux and "rtcp:" not in attrs:  # follows a latched RTP address
        assert neg.rtcp_address(("203.0.113.5", 7000)) == ("203.0.113.5", 7001)


def test_accept_answer_reads_a_rtcp_but_no_unoffered_mux():
    ours = offer("10.0.0.2", 30000, rtcp_mux=False)
    assert ours.media[0].attribute("rtcp-mux") is None
    theirs = sdp("m=audio 5004 RTP/AVP 0\na=rtcp:5011\na=rtcp-mux\n")
    neg = accept_answer(ours, SessionDescription.parse(theirs))
    assert not neg.rtcp_mux and neg.rtcp_address(neg.remote_address) == ("192.0.2.10", 5011)


@pytest.mark.parametrize(("attrs", "mux", "rtcp"), [
    ("a=rtcp-mux\n", True, ("192.0.2.10", 5004)),  # taken: RTCP on the RTP port
    ("", False, ("192.0.2.10", 5005)),  # declined: the next port (RFC 3550 §11)
    ("a=rtcp:5011\n", False, ("192.0.2.10", 5011)),
])
def test_our_offer_proposes_rtcp_mux_and_the_answer_decides(attrs, mux, rtcp):
    ours = offer("10.0.0.2", 30000)
    assert ours.media[0].attribute("rtcp-mux") is not None
    assert b"a=rtcp-mux\r\n" in ours.serialize()
    neg = accept_answer(ours, SessionDescription.parse(sdp("m=audio 5004 RTP/AVP 0\n" + attrs)))
    assert neg.rtcp_mux is mux and neg.rtcp_address(neg.remote_address) == rtcp
