"""A registration client (RFC 3261 §10), sans-IO: one AOR at one registrar.

Call :meth:`Registration.start`, feed every response whose Call-ID is
:attr:`Registration.call_id` to :meth:`Registration.receive`, run
:meth:`Registration.poll` when :meth:`Registration.next_deadline` passes and send what
:meth:`Registration.data_to_send` returns to :attr:`Registration.peer`.

- 401/407 are answered with digest (MD5, SHA-256, ``qop=auth``; :mod:`.auth`); a second
  challenge for the same credentials (not ``stale``) is a failure.
- The expiry granted is our Contact's ``expires`` parameter in the 200, else its
  ``Expires`` header, else what we asked; the binding is refreshed before it lapses.
- 423 Interval Too Brief is retried at once with its ``Min-Expires``.
- Failures back off as RFC 5626 §4.5 says (base 30 s, or 90 s once a registration has
  worked, doubling to 1800 s, a random 50-100 % of it), or after ``Retry-After``.
- :meth:`Registration.unregister` sends ``Expires: 0`` for every Contact this client
  bound; ``Path`` and ``Service-Route`` of the last 200 are kept (RFC 3327, RFC 3608).
"""

from __future__ import annotations

import enum
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from .auth import Credentials, authorization_for, parse_auth_params
from .dialog import new_branch, new_tag
from .errors import SipParseError, is_digits
from .headers import Headers, split_list
from .message import SipRequest, SipResponse
from .transaction import ClientTransaction, Timers
from .uri import NameAddr, SipUri

Addr = tuple[str, int]

BASE_TIME_ALL_FAILED = 30.0
BASE_TIME_SOME_OK = 90.0
MAX_BACKOFF = 1800.0


class RegState(enum.Enum):
    UNREGISTERED = "unregistered"  # not started, or unregistered
    REGISTERING = "registering"  # a REGISTER is in flight (first one, or after a failure)
    REGISTERED = "registered"
    BACKOFF = "backoff"  # the last attempt failed; the next one is scheduled
    UNREGISTERING = "unregistering"


@dataclass(frozen=True)
class RegistrationSpec:
    name: str
    registrar: str  # Request-URI of the REGISTER
    aor: str  # To/From
    contact_user: str
    credentials: Credentials | None = None
    expires: int = 600
    transport: str = "UDP"
    user_agent: str = "voxd"


@dataclass
class RegStatus:
    """What an operator sees per registration (API, metrics, /readyz)."""

    state: RegState = RegState.UNREGISTERED
    last_status: int | None = None
    last_reason: str = ""
    granted_expires: int | None = None
    registered_at: float | None = None
    expires_at: float | None = None
    refresh_at: float | None = None
    retry_at: float | None = None
    failures: int = 0  # consecutive
    ever_registered: bool = False
    service_route: list[str] = field(default_factory=list)
    path: list[str] = field(default_factory=list)


def refresh_delay(granted: int) -> float:
    """When to refresh a binding granted for ``granted`` s: halfway through for up to
    20 minutes, ten minutes before expiry for longer ones."""
    return granted / 2 if granted <= 1200 else granted - 600.0


def backoff_delay(failures: int, ever_ok: bool, rand: Callable[[], float] = random.random) -> float:
    """RFC 5626 §4.5: min(max-time, base * 2^(failures-1)) scaled by a random 50-100 %."""
    base = BASE_TIME_SOME_OK if ever_ok else BASE_TIME_ALL_FAILED
    wait = min(MAX_BACKOFF, base * float(2 ** max(0, failures - 1)))
    return wait * (0.5 + 0.5 * rand())


def _int_header(value: str | None) -> int | None:
    if not value:
        return None
    head = value.split(";")[0].split("(")[0].strip()
    return int(head) if is_digits(head) else None


class Registration:
    def __init__(self, spec: RegistrationSpec, peer: Addr, local: Addr, *,
                 timers: Timers | None = None, rand: Callable[[], float] = random.random) -> None:
        self.spec = spec
        self.peer = peer
        self.local = local  # the host:port put in Via and Contact
        self.timers = timers or Timers()
        self.call_id = f"{secrets.token_hex(10)}@{local[0]}"
        self.status = RegStatus()
        self._rand = rand
        self._tag = new_tag()
        self._cseq = 0
        self._expires = spec.expires
        self._tx: ClientTransaction | None = None
        self._outbox: list[bytes] = []
        self._auth_headers: list[tuple[str, str]] = []
        self._challenges = 0  # challenges answered in the current attempt
        self._contacts: set[str] = set()  # every Contact URI we bound (cleared by unregister)
        self.stopped = False

    # -- outputs -----------------------------------------------------------------
    @property
    def contact_uri(self) -> str:
        host, port = self.local
        host = f"[{host}]" if ":" in host else host
        transport = "" if self.spec.transport == "UDP" else f";transport={self.spec.transport.lower()}"
        return f"sip:{self.spec.contact_user}@{host}:{port}{transport}"

    def data_to_send(self) -> list[bytes]:
        if self._tx is not None and self._tx.outbox:
            self._outbox.extend(self._tx.outbox)
            self._tx.outbox.clear()
        out, self._outbox = self._outbox, []
        return out

    def next_deadline(self) -> float | None:
        st = self.status
        times = [t for t in (st.refresh_at, st.retry_at, st.expires_at) if t is not None]
        if self._tx is not None and (t := self._tx.deadline()) is not None:
            times.append(t)
        return min(times) if times else None

    # -- actions -------------------------------------------------------------------
    def start(self, now: float) -> None:
        self.stopped = False
        self._send_register(now, self._expires)

    def unregister(self, now: float) -> bool:
        """REGISTER with Expires: 0 for our Contacts; False when nothing is bound."""
        self.stopped = True
        self.status.refresh_at = self.status.retry_at = None
        if not self._contacts:  # nothing bound (a lost 200 lapses by itself)
            self.status.state = RegState.UNREGISTERED
            return False
        self._send_register(now, 0)
        return True

    @property
    def settled(self) -> bool:
        """Unregistering is over (answered, failed or timed out)."""
        return self.stopped and self.status.state is not RegState.UNREGISTERING

    def _send_register(self, now: float, expires: int, *, new_attempt: bool = True) -> None:
        if new_attempt:
            self._challenges = 0
        self._cseq += 1
        local_host, local_port = self.local
        host = f"[{local_host}]" if ":" in local_host else local_host
        h = Headers()
        h.add("Via", f"SIP/2.0/{self.spec.transport} {host}:{local_port};branch={new_branch()};rport")
        h.add("Max-Forwards", "70")
        h.add("From", NameAddr(SipUri.parse(self.spec.aor), None, {"tag": self._tag}).serialize())
        h.add("To", NameAddr(SipUri.parse(self.spec.aor)).serialize())
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{self._cseq} REGISTER")
        contacts = sorted(self._contacts | {self.contact_uri}) if expires == 0 else [self.contact_uri]
        for uri in contacts:
            h.add("Contact", f"<{uri}>")
        h.add("Expires", str(expires))
        h.add("Supported", "path")
        h.add("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY")
        h.add("User-Agent", self.spec.user_agent)
        for name, value in self._auth_headers:
            h.add(name, value)
        h.add("Content-Length", "0")
        req = SipRequest("REGISTER", self.spec.registrar, h)
        self._tx = ClientTransaction(req, self.peer, now, self.timers,
                                     reliable=self.spec.transport != "UDP")
        if expires == 0:
            self.status.state = RegState.UNREGISTERING
        elif self.status.state is not RegState.REGISTERED:
            self.status.state = RegState.REGISTERING
        self.status.refresh_at = self.status.retry_at = None

    # -- inputs ---------------------------------------------------------------------
    def poll(self, now: float) -> None:
        if self._tx is not None:
            timeout = self._tx.poll(now)
            if timeout is not None:
                self._final(timeout, now)
            elif self._tx.terminated:
                self._tx = None
        st = self.status
        if st.state is RegState.REGISTERED and st.expires_at is not None and now >= st.expires_at:
            st.state, st.expires_at = RegState.BACKOFF, None  # lapsed while refreshes failed
        if not self.stopped and st.refresh_at is not None and now >= st.refresh_at:
            self._send_register(now, self._expires)
        elif not self.stopped and st.retry_at is not None and now >= st.retry_at:
            self._auth_headers = []
            self._send_register(now, self._expires)

    def receive(self, resp: SipResponse, now: float) -> None:
        tx = self._tx
        try:
            if tx is None or resp.call_id != self.call_id or resp.cseq.method != "REGISTER":
                return
            if (resp.top_via.branch or "") != tx.branch:
                return
        except SipParseError:
            return
        deliver = tx.on_response(resp, now)
        if deliver is not None and deliver.status >= 200:
            self._final(deliver, now)

    def _final(self, resp: SipResponse, now: float) -> None:
        st = self.status
        st.last_status, st.last_reason = resp.status, resp.reason
        unregistering = st.state is RegState.UNREGISTERING
        if resp.status in (401, 407) and self._answer_challenge(resp, now):
            return
        if unregistering:
            if 200 <= resp.status < 300:
                self._contacts.clear()
            st.state = RegState.UNREGISTERED
            st.expires_at = st.refresh_at = None
            return
        if 200 <= resp.status < 300:
            self._registered(resp, now)
        elif resp.status == 423 and (min_exp := _int_header(resp.headers.get("Min-Expires"))):
            if min_exp > self._expires:
                self._expires = min_exp
                self._send_register(now, self._expires)
                return
            self._failed(resp, now)
        else:
            self._failed(resp, now)

    def _answer_challenge(self, resp: SipResponse, now: float) -> bool:
        creds = self.spec.credentials
        if creds is None:
            return False
        header = "WWW-Authenticate" if resp.status == 401 else "Proxy-Authenticate"
        answer = "Authorization" if resp.status == 401 else "Proxy-Authorization"
        challenges = sorted(resp.headers.get_all(header),
                            key=lambda c: 0 if "SHA-256" in c.upper() else 1)
        for challenge in challenges:
            stale = parse_auth_params(challenge).get("stale", "").lower() == "true"
            if self._challenges >= (2 if stale else 1):
                return False  # our answer was refused: wrong credentials
            value = authorization_for(challenge, creds, "REGISTER", self.spec.registrar)
            if value is None:
                continue
            self._auth_headers = [(n, v) for n, v in self._auth_headers if n != answer]
            self._auth_headers.append((answer, value))
            self._challenges += 1
            self._send_register(now, 0 if self.stopped else self._expires, new_attempt=False)
            return True
        return False

    def _registered(self, resp: SipResponse, now: float) -> None:
        st = self.status
        granted = self._granted(resp)
        if granted <= 0:  # the registrar dropped our binding: treat as failure
            self._failed(resp, now)
            return
        self._contacts.add(self.contact_uri)
        st.state = RegState.REGISTERED
        st.failures = 0
        st.ever_registered = True
        st.granted_expires = granted
        st.registered_at = now
        st.expires_at = now + granted
        st.refresh_at = now + refresh_delay(granted)
        st.retry_at = None
        st.service_route = [v for h in resp.headers.get_all("Service-Route") for v in split_list(h)]
        st.path = [v for h in resp.headers.get_all("Path") for v in split_list(h)]

    def _granted(self, resp: SipResponse) -> int:
        mine = SipUri.parse(self.contact_uri)
        header_exp = _int_header(resp.headers.get("Expires"))
        for value in resp.headers.get_all("Contact"):
            for item in split_list(value):
                try:
                    na = NameAddr.parse(item)
                except SipParseError:
                    continue
                u = na.uri
                if (u.user, u.host.lower(), u.port or 5060) != (mine.user, mine.host.lower(), mine.port or 5060):
                    continue
                exp = _int_header(na.params.get("expires"))
                if exp is not None:
                    return exp
                return header_exp if header_exp is not None else self._expires
        # no Contact of ours listed: an RFC-ignoring registrar; take what it says
        return header_exp if header_exp is not None else self._expires

    def _failed(self, resp: SipResponse, now: float) -> None:
        st = self.status
        st.failures += 1
        retry_after = _int_header(resp.headers.get("Retry-After"))
        delay = float(retry_after) if retry_after is not None else backoff_delay(
            st.failures, st.ever_registered, self._rand)
        # a binding that still holds stays usable until it lapses
        still_bound = st.expires_at is not None and now < st.expires_at
        st.state = RegState.REGISTERED if still_bound else RegState.BACKOFF
        if not still_bound:
            st.expires_at = None
        st.retry_at = now + delay
        st.refresh_at = None
        self._auth_headers = []
