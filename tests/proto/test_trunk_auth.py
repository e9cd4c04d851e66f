"""Outbound calls through a trunk, sans-IO: per-call credentials answer 401 and 407 on the
INVITE (a proxy's 407 then the far end's 401), on re-INVITE and on BYE; the outbound
proxy is a pre-loaded Route; caller-ID headers survive the challenge; number formatting."""

from __future__ import annotations

import pytest

from voxd.proto.negotiate import offer
from voxd.proto.sip import UAConfig, UserAgent
from voxd.proto.sip.auth import Credentials, DigestServer
from voxd.proto.sip.challenge import CredentialBook, retry_request
from voxd.proto.sip.events import CallEstablished, CallFailed, ReofferAnswered
from voxd.proto.sip.message import SipRequest, make_response, parse_message
from voxd.proto.sip.numbering import NumberError, format_number

OFFER = offer("127.0.0.1", 40000).serialize()
UAC = ("127.0.0.1", 5062)
PROXY = ("127.0.0.1", 5070)
PROXY_AUTH = DigestServer("proxy.carrier", {"voxd": "pw"}, algorithms=("MD5",))
FAR_AUTH = DigestServer("far.carrier", {"voxd": "pw"}, algorithms=("SHA-256",))


def sent(ua: UserAgent) -> list[SipRequest]:
    return [m for d, _ in ua.data_to_send() if isinstance(m := parse_message(d), SipRequest)]


def place(ua: UserAgent, password: str = "pw") -> str:
    return ua.invite("sip:+15551234567@carrier.example", 0.0, sdp=OFFER, peer=PROXY,
                     from_user="+15550001", display_name="Front Desk", from_host="carrier.example",
                     route="<sip:127.0.0.1:5070;lr>", credentials=Credentials("voxd", password),
                     headers=[("P-Asserted-Identity", "<sip:+15550001@carrier.example>"), ("Privacy", "id")])


def challenge(req: SipRequest, status: int, server: DigestServer, now: float = 0.0) -> bytes:
    name = "Proxy-Authenticate" if status == 407 else "WWW-Authenticate"
    return make_response(req, status, to_tag="c", extra=[(name, c) for c in server.challenges(now)]).serialize()


def established() -> tuple[UserAgent, str, SipRequest]:
    ua = UserAgent(UAConfig(*UAC))
    call_id = place(ua)
    (invite,) = sent(ua)
    ok = make_response(invite, 200, to_tag="far", body=OFFER,
                       extra=[("Contact", "<sip:far@127.0.0.1:5090>")])
    events = ua.receive(ok.serialize(), PROXY, 0.1)
    assert any(isinstance(e, CallEstablished) for e in events)
    sent(ua)  # the ACK
    return ua, call_id, invite


def test_invite_through_proxy_answers_407_then_401_and_keeps_caller_id() -> None:
    ua = UserAgent(UAConfig(*UAC))
    call_id = place(ua)
    (invite,) = sent(ua)
    assert invite.uri == "sip:+15551234567@carrier.example"  # loose routing: R-URI is the target
    assert invite.headers.get_all("Route") == ["<sip:127.0.0.1:5070;lr>"]
    assert invite.from_.uri.user == "+15550001" and invite.from_.uri.host == "carrier.example"
    assert invite.from_.display_name == "Front Desk"
    assert ua.receive(challenge(invite, 407, PROXY_AUTH), PROXY, 0.1) == []
    ack, retry = sent(ua)
    assert ack.method == "ACK" and retry.method == "INVITE"
    assert PROXY_AUTH.verify(retry, 0.2, header="Proxy-Authorization") == ("voxd", False)
    assert retry.cseq.seq == invite.cseq.seq + 1 and retry.top_via.branch != invite.top_via.branch
    assert retry.headers.get("P-Asserted-Identity") == "<sip:+15550001@carrier.example>"
    assert retry.headers.get("Privacy") == "id" and retry.headers.get_all("Route") == invite.headers.get_all("Route")
    assert ua.receive(challenge(retry, 401, FAR_AUTH), PROXY, 0.3) == []
    _, third = sent(ua)
    assert FAR_AUTH.verify(third, 0.4) == ("voxd", False)
    assert PROXY_AUTH.verify(third, 0.4, header="Proxy-Authorization") == ("voxd", False)  # kept
    # a third challenge is not answered: the call fails with it
    events = ua.receive(challenge(third, 401, FAR_AUTH), PROXY, 0.5)
    assert [(type(e), e.status) for e in events if isinstance(e, CallFailed)] == [(CallFailed, 401)]
    assert ua.credential_book.get(call_id) is None


def test_wrong_password_fails_after_one_answer() -> None:
    ua = UserAgent(UAConfig(*UAC))
    place(ua, password="nope")
    (invite,) = sent(ua)
    ua.receive(challenge(invite, 407, PROXY_AUTH), PROXY, 0.1)
    _, retry = sent(ua)
    assert PROXY_AUTH.verify(retry, 0.2, header="Proxy-Authorization") == (None, False)
    events = ua.receive(challenge(retry, 407, PROXY_AUTH), PROXY, 0.3)
    assert [e.status for e in events if isinstance(e, CallFailed)] == [407]


def test_bye_challenge_is_answered_after_the_dialog_ended() -> None:
    ua, call_id, _ = established()
    ua.bye(call_id, 1.0)
    (bye,) = sent(ua)
    assert bye.uri == "sip:far@127.0.0.1:5090"
    ua.receive(challenge(bye, 407, PROXY_AUTH, 1.0), PROXY, 1.1)
    (retry,) = sent(ua)
    assert retry.method == "BYE" and retry.cseq.seq == bye.cseq.seq + 1
    assert PROXY_AUTH.verify(retry, 1.2, header="Proxy-Authorization") == ("voxd", False)
    ua.receive(make_response(retry, 200).serialize(), PROXY, 1.3)
    assert ua.credential_book.get(call_id) is None


def test_reinvite_challenge_is_answered() -> None:
    ua, call_id, _ = established()
    ua.reoffer(call_id, OFFER, 2.0)
    (reinvite,) = sent(ua)
    ua.receive(challenge(reinvite, 401, FAR_AUTH, 2.0), PROXY, 2.1)
    ack, retry = sent(ua)
    assert ack.method == "ACK" and retry.method == "INVITE" and FAR_AUTH.verify(retry, 2.2)[0] == "voxd"
    events = ua.receive(make_response(retry, 200, body=OFFER).serialize(), PROXY, 2.3)
    assert any(isinstance(e, ReofferAnswered) for e in events)


def test_no_credentials_means_no_retry() -> None:
    ua = UserAgent(UAConfig(*UAC))
    ua.invite("sip:x@127.0.0.1", 0.0, sdp=OFFER, peer=PROXY)
    (invite,) = sent(ua)
    events = ua.receive(challenge(invite, 401, FAR_AUTH), PROXY, 0.1)
    assert [e.status for e in events if isinstance(e, CallFailed)] == [401]
    assert retry_request(invite, parse_message(challenge(invite, 200, FAR_AUTH)),  # type: ignore[arg-type]
                         Credentials("a", "b"), 2) is None


def test_credential_book_is_bounded() -> None:
    book = CredentialBook(limit=2)
    for i in range(3):
        book.remember(f"c{i}", Credentials("u", "p"))
    assert len(book) == 2 and book.get("c0") is None and book.get("c2") is not None


@pytest.mark.parametrize(("number", "kwargs", "expected"), [
    ("+1 (555) 123-4567", {}, "+15551234567"),
    ("555.123.4567", {"country_code": "1"}, "+15551234567"),
    ("0044 20 7946 0018", {}, "+442079460018"),
    ("020 7946 0018", {"country_code": "44"}, "+442079460018"),
    ("+15551234567", {"style": "e164_no_plus", "dial_prefix": "9"}, "915551234567"),
    ("*99#", {"style": "as_dialled"}, "*99#"),
])
def test_number_formatting(number: str, kwargs: dict[str, str], expected: str) -> None:
    assert format_number(number, **kwargs) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("number", ["", "abc", "+", "5551234567", "+0123456789", "+1555;x", "1" * 40])
def test_bad_numbers(number: str) -> None:
    with pytest.raises(NumberError):
        format_number(number)
