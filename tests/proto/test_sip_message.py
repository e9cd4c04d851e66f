"""SIP message parsing/serialization, URIs, headers and malformed input."""

from __future__ import annotations

import pytest

from voxd.proto.sip import (
    Headers,
    NameAddr,
    SipParseError,
    SipRequest,
    SipResponse,
    SipUri,
    StreamParser,
    Via,
    bad_request,
    make_response,
    parse_message,
)

BASIC = (
    b"INVITE sip:+15551234@voxd.example:5080;user=phone SIP/2.0\r\n"
    b"v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;rport, SIP/2.0/TCP [2001:db8::1]:5070"
    b";branch=z9hG4bKb\r\n"
    b"Via: SIP/2.0/UDP proxy.example;branch=z9hG4bKc;received=192.0.2.1\r\n"
    b'f: "Alice, A." <sip:alice@example.com>;tag=abc\r\n'
    b"t: sip:+15551234@voxd.example\r\n"
    b"i: call-1@10.0.0.1\r\n"
    b"CSeq: 42 INVITE\r\n"
    b"m: <sip:alice@10.0.0.1:5060;transport=udp>;expires=60\r\n"
    b"Subject: a long\r\n"
    b"   folded subject\r\n"
    b"k: replaces, timer\r\n"
    b"c: application/sdp\r\n"
    b"l: 5\r\n"
    b"\r\n"
    b"v=0\r\n"
)


def test_compact_forms_folding_and_multiple_via():
    msg = parse_message(BASIC)
    assert isinstance(msg, SipRequest)
    assert msg.method == "INVITE"
    assert msg.request_uri.user == "+15551234"
    assert msg.request_uri.params == {"user": "phone"}
    assert [v.host for v in msg.vias] == ["10.0.0.1", "[2001:db8::1]", "proxy.example"]
    assert [v.transport for v in msg.vias] == ["UDP", "TCP", "UDP"]
    assert msg.vias[0].params == {"branch": "z9hG4bKa", "rport": None}
    assert msg.from_.display_name == "Alice, A." and msg.from_.tag == "abc"
    assert msg.to.tag is None and msg.to.uri.host == "voxd.example"
    assert msg.call_id == "call-1@10.0.0.1"
    assert (msg.cseq.seq, msg.cseq.method) == (42, "INVITE")
    assert msg.contact is not None and msg.contact.params == {"expires": "60"}
    assert msg.contact.uri.params == {"transport": "udp"}
    assert msg.headers.get("Subject") == "a long folded subject"
    assert msg.headers.get_all("Supported") == ["replaces", "timer"]
    assert msg.content_type == "application/sdp"
    assert msg.body == b"v=0\r\n"


def test_serialize_round_trip_uses_full_names():
    msg = parse_message(BASIC)
    data = msg.serialize()
    assert b"\r\nFrom: " in data and b"\r\nContent-Length: 5\r\n" in data
    again = parse_message(data)
    assert again == msg
    assert again.serialize() == data


def test_body_longer_than_content_length_is_truncated():
    msg = parse_message(BASIC + b"trailing junk")
    assert msg.body == b"v=0\r\n"


def test_body_shorter_than_content_length_raises_with_400_possible():
    with pytest.raises(SipParseError) as err:
        parse_message(BASIC.replace(b"l: 5", b"l: 50"))
    assert err.value.can_respond
    resp = bad_request(err.value)
    assert resp is not None and resp.status == 400
    assert resp.call_id == "call-1@10.0.0.1" and len(resp.vias) == 3


def test_missing_content_length_on_udp_takes_rest():
    msg = parse_message(BASIC.replace(b"l: 5\r\n", b"") + b"more")
    assert msg.body == b"v=0\r\nmore"


def test_response_parse():
    data = (b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\n"
            b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\n"
            b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
    msg = parse_message(data)
    assert isinstance(msg, SipResponse)
    assert (msg.status, msg.reason, msg.to.tag) == (180, "Ringing", "2")
    assert msg.serialize() == data


def test_make_response_copies_headers_and_adds_tag():
    req = parse_message(BASIC)
    assert isinstance(req, SipRequest)
    resp = make_response(req, 200, to_tag="xyz", body=b"v=0\r\n")
    assert resp.to.tag == "xyz" and resp.headers.get_all("Via") == req.headers.get_all("Via")
    assert resp.headers.get("Content-Type") == "application/sdp"
    trying = make_response(req, 100, to_tag="xyz")
    assert trying.to.tag is None  # 100 Trying carries no To-tag


@pytest.mark.parametrize(
    ("text", "user", "host", "port", "params"),
    [
        ("sip:alice@example.com", "alice", "example.com", None, {}),
        ("sips:bob:pw@[::1]:5061;transport=tls;lr", "bob", "[::1]", 5061,
         {"transport": "tls", "lr": None}),
        ("sip:10.0.0.1:5080", None, "10.0.0.1", 5080, {}),
        ("tel:+15551234;phone-context=x", "+15551234", "", None, {"phone-context": "x"}),
    ],
)
def test_uri_parse_and_round_trip(text, user, host, port, params):
    uri = SipUri.parse(text)
    assert (uri.user, uri.host, uri.port, uri.params) == (user, host, port, params)
    assert SipUri.parse(uri.serialize()) == uri
    assert "pw" not in repr(uri)


def test_name_addr_forms():
    plain = NameAddr.parse("sip:bob@x;tag=9")
    assert plain.uri.params == {} and plain.tag == "9"
    bracket = NameAddr.parse("Bob <sip:bob@x;lr>;tag=9")
    assert bracket.display_name == "Bob" and bracket.uri.params == {"lr": None}
    assert NameAddr.parse(bracket.serialize()) == bracket


def test_via_rport_and_received():
    via = Via.parse("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport")
    via.stamp_received(("203.0.113.5", 40000))
    assert via.params == {"branch": "z9hG4bK1", "rport": "40000", "received": "203.0.113.5"}
    assert via.response_address(("203.0.113.5", 40000)) == ("203.0.113.5", 40000)
    no_rport = Via.parse("SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1")
    no_rport.stamp_received(("203.0.113.5", 40000))
    assert no_rport.response_address(("203.0.113.5", 40000)) == ("203.0.113.5", 5070)


def test_headers_set_and_split():
    h = Headers([("Route", "<sip:a;lr>, <sip:b,c;lr>"), ("Route", "<sip:d>"), ("X-A", "1")])
    assert h.get_all("route") == ["<sip:a;lr>", "<sip:b,c;lr>", "<sip:d>"]
    h.set("Route", "<sip:z>")
    assert list(h) == [("Route", "<sip:z>"), ("X-A", "1")]


def test_stream_parser_frames_messages():
    one = parse_message(BASIC).serialize()
    parser = StreamParser()
    out = []
    data = b"\r\n\r\n" + one + one
    for i in range(0, len(data), 7):
        out += parser.feed(data[i : i + 7])
    assert len(out) == 2 and out[0].body == b"v=0\r\n"


def test_stream_parser_requires_content_length():
    with pytest.raises(SipParseError):
        StreamParser().feed(BASIC.replace(b"l: 5\r\n", b""))


MALFORMED = [
    b"",
    b"\r\n\r\n",
    b"\x00\xff\xfe junk",
    bytes(range(256)),
    b"INVITE\r\n\r\n",
    b"INVITE sip:x SIP/3.0\r\n\r\n",
    b"SIP/2.0 99 Odd\r\n\r\n",
    b"SIP/2.0 abc Odd\r\n\r\n",
    BASIC[:40],
    BASIC.replace(b"CSeq: 42 INVITE", b"CSeq: x INVITE"),
    BASIC.replace(b"CSeq: 42 INVITE", b"CSeq: 42 BYE"),
    BASIC.replace(b"i: call-1@10.0.0.1\r\n", b""),
    BASIC.replace(b"v: ", b"x-v: ").replace(b"Via: ", b"X-Via: "),
    BASIC.replace(b"l: 5", b"l: -1"),
    BASIC.replace(b"f: ", b"f : <<<"),
    BASIC.replace(b"t: sip:", b"t: ftp:"),
    b"INVITE sip:x SIP/2.0\r\n  continuation first\r\nVia: SIP/2.0/UDP h\r\n\r\n",
    BASIC.replace(b"10.0.0.1:5060", b"10.0.0.1:99999"),
    b"INVITE sip:x SIP/2.0\r\nBad Header Line\r\n\r\n",
]


@pytest.mark.parametrize("data", MALFORMED)
def test_malformed_input_raises_only_typed_error(data):
    with pytest.raises(SipParseError) as err:
        parse_message(data)
    assert isinstance(err.value, ValueError)
    resp = bad_request(err.value)
    if err.value.can_respond:
        assert resp is not None and parse_message(resp.serialize()).status == 400
    else:
        assert resp is None


def test_which_errors_allow_a_400():
    def can_respond(data: bytes) -> bool:
        with pytest.raises(SipParseError) as err:
            parse_message(data)
        return err.value.can_respond

    assert can_respond(BASIC.replace(b"l: 5", b"l: 99"))
    assert can_respond(BASIC.replace(b"l: 5", b"l: five"))
    assert not can_respond(BASIC.replace(b"i: call-1@10.0.0.1\r\n", b""))
    assert not can_respond(BASIC[:40])
    ack = BASIC.replace(b"INVITE sip", b"ACK sip").replace(b"l: 5", b"l: 99")
    assert not can_respond(ack.replace(b"42 INVITE", b"42 ACK"))  # never answer an ACK


def test_user_agent_survives_garbage_and_answers_400():
    from voxd.proto.sip import UAConfig, UserAgent

    ua = UserAgent(UAConfig("127.0.0.1", 5060))
    for data in MALFORMED:
        assert ua.receive(data, ("127.0.0.1", 9999), 0.0) == []
    sent = ua.data_to_send()
    assert sent and all(parse_message(d).status == 400 for d, _ in sent)
    assert not ua.calls


def test_user_agent_stamps_received_in_place():
    from voxd.proto.sip import UAConfig, UserAgent

    ua = UserAgent(UAConfig("127.0.0.1", 5060))
    (event,) = ua.receive(BASIC, ("198.51.100.4", 6000), 0.0)
    req = event.request
    assert [name for name, _ in req.headers][:2] == ["Via", "Via"]
    vias = req.vias
    assert len(vias) == 3 and vias[0].params["rport"] == "6000"
    assert vias[0].params["received"] == "198.51.100.4" and vias[1].host == "[2001:db8::1]"
    ((data, dst),) = ua.data_to_send()
    assert dst == ("198.51.100.4", 6000)
    assert len(parse_message(data).vias) == 3


def test_user_agent_accepts_stream_framed_messages():
    from voxd.proto.sip import UAConfig, UserAgent

    ua = UserAgent(UAConfig("127.0.0.1", 5060))
    parser = StreamParser()
    (msg,) = parser.feed(parse_message(BASIC).serialize())
    (event,) = ua.receive_message(msg, ("127.0.0.1", 7000), 0.0)
    assert event.call_id == "call-1@10.0.0.1"
