"""Replaces (RFC 3891) parsing, building and its escaped form inside Refer-To."""

from __future__ import annotations

import pytest

from voxd.proto.sip.errors import SipParseError
from voxd.proto.sip.message import parse_message
from voxd.proto.sip.replaces import Replaces, refer_to_with_replaces, replaces_in_refer_to
from voxd.proto.sip.uri import NameAddr, SipUri


def test_rfc3891_example_parses():
    # RFC 3891 §6.1's example header
    r = Replaces.parse("98732@sip.example.com;from-tag=r33th4x0r;to-tag=ff87ff")
    assert (r.call_id, r.to_tag, r.from_tag, r.early_only) == ("98732@sip.example.com", "ff87ff", "r33th4x0r", False)
    assert Replaces.parse("a@b;to-tag=1;from-tag=2;early-only").early_only


@pytest.mark.parametrize("text", [
    "abc;to-tag=1",                      # from-tag missing
    "abc;from-tag=1",                    # to-tag missing
    ";to-tag=1;from-tag=2",              # no Call-ID
    "abc;to-tag=;from-tag=2",            # empty tag
    "ab c;to-tag=1;from-tag=2",          # space inside the Call-ID
    "ab\x7fc;to-tag=1;from-tag=2",       # a control character (DEL) inside the Call-ID
    "abc;to-tag=1;from-tag=2;early-only=yes",
    "abc;to-tag=1;from-tag=2;=x",
    "x" * 2000 + ";to-tag=1;from-tag=2",
])
def test_malformed_replaces_is_a_parse_error(text):
    with pytest.raises(SipParseError):
        Replaces.parse(text)


def test_round_trip_and_matching_uses_the_recipients_view():
    r = Replaces.for_dialog("c1@10.0.0.1", recipient_local_tag="bob", recipient_remote_tag="alice")
    again = Replaces.parse(r.serialize())
    assert again == r
    assert again.matches("c1@10.0.0.1", local_tag="bob", remote_tag="alice")
    assert not again.matches("c1@10.0.0.1", local_tag="alice", remote_tag="bob")
    assert not again.matches("C1@10.0.0.1", local_tag="bob", remote_tag="alice")


def test_refer_to_carries_the_escaped_replaces_and_survives_a_sip_message():
    r = Replaces("12345@192.168.118.3", "12345", "5FFE-3994")
    uri = refer_to_with_replaces(SipUri.parse("sip:carol@10.0.0.7:5060;transport=udp"), r)
    text = str(uri)
    assert text == ("sip:carol@10.0.0.7:5060;transport=udp"
                    "?Replaces=12345%40192.168.118.3%3Bto-tag%3D12345%3Bfrom-tag%3D5FFE-3994")
    # as a REFER's Refer-To header, through voxd's own SIP parser
    raw = ("REFER sip:bob@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKr1\r\n"
           "From: <sip:a@10.0.0.1>;tag=a\r\nTo: <sip:bob@10.0.0.2>;tag=b\r\nCall-ID: r1\r\n"
           f"CSeq: 2 REFER\r\nRefer-To: <{text}>\r\nContent-Length: 0\r\n\r\n").encode()
    message = parse_message(raw)
    refer_to = NameAddr.parse(message.headers.get("Refer-To") or "")
    assert replaces_in_refer_to(refer_to.uri) == r
    assert refer_to.uri.params == {"transport": "udp"}


def test_blind_transfer_has_no_replaces_and_other_headers_are_kept():
    plain = SipUri.parse("sip:carol@10.0.0.7")
    assert replaces_in_refer_to(plain) is None
    with_other = SipUri.parse("sip:carol@10.0.0.7?Subject=hi%20there")
    uri = refer_to_with_replaces(with_other, Replaces("c", "t", "f"))
    assert uri.headers is not None and uri.headers.startswith("subject=hi%20there&Replaces=")
    assert replaces_in_refer_to(uri) == Replaces("c", "t", "f")


def test_two_replaces_in_one_refer_to_are_refused():
    uri = SipUri.parse("sip:c@h?Replaces=a%3Bto-tag%3D1%3Bfrom-tag%3D2&Replaces=b%3Bto-tag%3D1%3Bfrom-tag%3D2")
    with pytest.raises(SipParseError):
        replaces_in_refer_to(uri)


def test_bad_escapes_are_parse_errors():
    with pytest.raises(SipParseError):
        replaces_in_refer_to(SipUri.parse("sip:c@h?Replaces=%ff%fe"))
    with pytest.raises(SipParseError):
        replaces_in_refer_to(SipUri.parse("sip:c@h?Replaces"))
