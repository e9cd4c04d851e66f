"""The registration client against an in-memory registrar: digest (MD5, SHA-256, qop),
refresh before expiry, Min-Expires, backoff and Retry-After, unregister, Path and
Service-Route. No sockets, no event loop: time is passed in."""

from __future__ import annotations

import pytest

from voxd.proto.sip.auth import Credentials, DigestServer
from voxd.proto.sip.message import SipRequest, SipResponse, make_response, parse_message
from voxd.proto.sip.registration import (
    Registration,
    RegistrationSpec,
    RegState,
    backoff_delay,
    refresh_delay,
)

PEER = ("127.0.0.1", 5070)
LOCAL = ("127.0.0.1", 5080)


class Registrar:
    """Answers REGISTERs: challenges, then 200 with the bindings it holds."""

    def __init__(self, algorithms: tuple[str, ...] = ("SHA-256", "MD5"), *, password: str = "s3cret",
                 grant: int | None = None, contact_expires: bool = True) -> None:
        self.digest = DigestServer("carrier", {"alice": password}, algorithms=algorithms)
        self.grant = grant
        self.contact_expires = contact_expires
        self.bindings: dict[str, int] = {}
        self.requests: list[SipRequest] = []
        self.script: list[tuple[int, list[tuple[str, str]]]] = []  # responses to send first

    def handle(self, data: bytes, now: float) -> SipResponse:
        req = parse_message(data)
        assert isinstance(req, SipRequest) and req.method == "REGISTER"
        self.requests.append(req)
        if self.script:
            status, extra = self.script.pop(0)
            return make_response(req, status, to_tag="reg", extra=extra)
        user, stale = self.digest.verify(req, now)
        if user is None:
            return make_response(req, 401, to_tag="reg", extra=[
                ("WWW-Authenticate", c) for c in self.digest.challenges(now, stale=stale)])
        expires = int(req.headers.get("Expires") or "3600")
        granted = min(expires, self.grant) if self.grant is not None and expires else expires
        for value in req.headers.get_all("Contact"):
            uri = value.strip("<>")
            if granted:
                self.bindings[uri] = granted
            else:
                self.bindings.pop(uri, None)
        extra = [("Contact", f"<{u}>;expires={e}" if self.contact_expires else f"<{u}>")
                 for u, e in self.bindings.items()]
        if not self.contact_expires:
            extra.append(("Expires", str(granted)))
        extra += [("Service-Route", "<sip:orig@10.0.0.9;lr>"), ("Path", "<sip:edge@10.0.0.8;lr>")]
        return make_response(req, 200, to_tag="reg", extra=extra)


def spec(password: str = "s3cret", expires: int = 600) -> RegistrationSpec:
    return RegistrationSpec("carrier", "sip:127.0.0.1:5070", "sip:alice@carrier.example", "alice",
                            Credentials("alice", password), expires=expires)


def exchange(reg: Registration, registrar: Registrar, now: float, rounds: int = 4) -> None:
    for _ in range(rounds):
        out = reg.data_to_send()
        if not out:
            return
        for data in out:
            reg.receive(registrar.handle(data, now), now)


@pytest.mark.parametrize("algorithms", [("MD5",), ("SHA-256",), ("SHA-256", "MD5")])
def test_digest_registration_and_refresh(algorithms: tuple[str, ...]) -> None:
    registrar = Registrar(algorithms, grant=300)
    reg = Registration(spec(), PEER, LOCAL)
    reg.start(0.0)
    exchange(reg, registrar, 0.0)
    st = reg.status
    assert st.state is RegState.REGISTERED and st.last_status == 200
    assert st.granted_expires == 300  # the registrar's contact expires= wins over the 600 asked
    first, second = registrar.requests
    assert "Authorization" not in first.headers and first.headers.get("Expires") == "600"
    auth = second.headers.get("Authorization") or ""
    assert f"algorithm={algorithms[0]}" in auth and "qop=auth" in auth
    assert second.cseq.seq == first.cseq.seq + 1 and second.call_id == first.call_id
    assert st.service_route == ["<sip:orig@10.0.0.9;lr>"] and st.path == ["<sip:edge@10.0.0.8;lr>"]
    assert registrar.bindings == {"sip:alice@127.0.0.1:5080": 300}
    # refreshed before expiry, same Call-ID, CSeq going up
    t = st.refresh_at
    assert t is not None and 0 < t < 300
    reg.poll(t)
    exchange(reg, registrar, t)
    assert len(registrar.requests) >= 3
    assert registrar.requests[2].call_id == first.call_id
    assert registrar.requests[-1].cseq.seq > second.cseq.seq
    assert reg.status.state is RegState.REGISTERED
    assert reg.status.registered_at == t and reg.status.expires_at == t + 300


def test_expires_header_when_contact_has_none() -> None:
    registrar = Registrar(grant=120, contact_expires=False)
    reg = Registration(spec(), PEER, LOCAL)
    reg.start(0.0)
    exchange(reg, registrar, 0.0)
    assert reg.status.granted_expires == 120


def test_wrong_password_backs_off_and_does_not_loop() -> None:
    registrar = Registrar(password="other")
    reg = Registration(spec(), PEER, LOCAL, rand=lambda: 1.0)
    reg.start(0.0)
    exchange(reg, registrar, 0.0)
    assert len(registrar.requests) == 2  # one answer to the challenge, not a loop
    st = reg.status
    assert st.state is RegState.BACKOFF and st.last_status == 401 and st.failures == 1
    assert st.retry_at == pytest.approx(30.0)  # RFC 5626 base time, nothing registered yet
    reg.poll(30.0)
    exchange(reg, registrar, 30.0)
    assert reg.status.failures == 2 and reg.status.retry_at == pytest.approx(30.0 + 60.0)


def test_retry_after_is_honoured() -> None:
    registrar = Registrar()
    registrar.script.append((503, [("Retry-After", "42")]))
    reg = Registration(spec(), PEER, LOCAL)
    reg.start(0.0)
    exchange(reg, registrar, 0.0)
    assert reg.status.state is RegState.BACKOFF and reg.status.retry_at == 42.0
    reg.poll(42.0)
    exchange(reg, registrar, 42.0)
    assert reg.status.state is RegState.REGISTERED


def test_interval_too_brief_retries_with_min_expires() -> None:
    registrar = Registrar()
    registrar.script.append((423, [("Min-Expires", "1800")]))
    reg = Registration(spec(expires=300), PEER, LOCAL)
    reg.start(0.0)
    exchange(reg, registrar, 0.0)
    assert reg.status.state is RegState.REGISTERED
    assert registrar.requests[1].headers.get("Expires") == "1800"


def test_timeout_backs_off() -> None:
    reg = Registration(spec(), PEER, LOCAL, rand=lambda: 0.0)
    reg.start(0.0)
    assert len(reg.data_to_send()) == 1
    now = 0.0
    while reg.status.state is RegState.REGISTERING and now < 100:
        now = reg.next_deadline() or 100
        reg.poll(now)
        reg.data_to_send()
    assert reg.status.state is RegState.BACKOFF and reg.status.last_status == 408
    assert reg.status.retry_at == pytest.approx(now + 15.0)


def test_failed_refresh_keeps_binding_until_it_lapses() -> None:
    registrar = Registrar(grant=100)
    reg = Registration(spec(), PEER, LOCAL, rand=lambda: 1.0)
    reg.start(0.0)
    exchange(reg, registrar, 0.0)
    t = reg.status.refresh_at
    assert t is not None
    registrar.script.append((500, []))
    reg.poll(t)
    exchange(reg, registrar, t)
    assert reg.status.state is RegState.REGISTERED and reg.status.failures == 1
    reg.poll(100.0)
    assert reg.status.state is RegState.BACKOFF  # lapsed: the retry is still 90 s out


def test_unregister_clears_every_contact_bound() -> None:
    registrar = Registrar()
    reg = Registration(spec(), PEER, LOCAL)
    reg.start(0.0)
    exchange(reg, registrar, 0.0)
    reg.local = ("127.0.0.1", 5090)  # re-bound to another port: a second binding
    reg.poll(400.0)
    exchange(reg, registrar, 400.0)
    assert len(registrar.bindings) == 2
    assert reg.unregister(500.0)
    assert reg.status.state is RegState.UNREGISTERING
    exchange(reg, registrar, 500.0)
    last = registrar.requests[-1]
    assert last.headers.get("Expires") == "0" and len(last.headers.get_all("Contact")) == 2
    assert registrar.bindings == {} and reg.status.state is RegState.UNREGISTERED and reg.settled
    assert reg.next_deadline() is None or reg.status.refresh_at is None


def test_unregister_before_anything_bound_sends_nothing() -> None:
    reg = Registration(spec(), PEER, LOCAL)
    assert not reg.unregister(0.0) and reg.settled and reg.data_to_send() == []


def test_stray_responses_are_ignored() -> None:
    reg = Registration(spec(), PEER, LOCAL)
    reg.start(0.0)
    data = reg.data_to_send()[0]
    req = parse_message(data)
    assert isinstance(req, SipRequest)
    other = make_response(req, 200)
    other.headers.set("Call-ID", "someone-else")
    reg.receive(other, 0.0)
    assert reg.status.state is RegState.REGISTERING


def test_delays() -> None:
    assert refresh_delay(3600) == 3000 and refresh_delay(600) == 300 and refresh_delay(60) == 30
    assert backoff_delay(1, False, lambda: 1.0) == 30 and backoff_delay(1, True, lambda: 0.0) == 45
    assert backoff_delay(20, False, lambda: 1.0) == 1800
