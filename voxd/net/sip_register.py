"""Registrations (`sip.registrations[]`) driven over the SIP endpoint's sockets.

One task per registration runs its sans-IO :class:`~voxd.proto.sip.registration.Registration`:
resolve the registrar, send what it queues (UDP, or a TCP connection voxd opens and
keeps alive with CRLF pings, RFC 5626 §4.4.1), sleep until its next deadline or a
response. REGISTER responses reach it through the endpoint's response taps. INVITEs for
a registered AOR that come from its registrar go to the registration's agent. Stopping
unregisters (Expires: 0) and waits a few seconds for the answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from voxd.config.sip import RegistrationConfig, SipDnsConfig
from voxd.core.secrets import SecretBook
from voxd.net.sip_dns import SipResolver, address_types
from voxd.proto.sip import events as ev
from voxd.proto.sip.auth import Credentials
from voxd.proto.sip.errors import SipParseError
from voxd.proto.sip.locate import Failover, Target, Transport, fails_over
from voxd.proto.sip.message import SipResponse
from voxd.proto.sip.registration import Registration, RegistrationSpec, RegState
from voxd.proto.sip.uri import SipUri

if TYPE_CHECKING:
    from voxd.net.sip import SipEndpoint

log = logging.getLogger("voxd.sip.register")

Addr = tuple[str, int]
KEEPALIVE_S = 30.0
UNREGISTER_WAIT_S = 4.0


class RegistrationClient:
    def __init__(self, cfg: RegistrationConfig, book: SecretBook) -> None:
        self.cfg = cfg
        self.registrar = SipUri.parse(cfg.registrar)
        self.aor = SipUri.parse(cfg.aor)
        self.peer: Addr | None = None
        self.failover: Failover | None = None  # the registrar name's targets (RFC 3263)
        self.seen_failures = 0
        self.reg: Registration | None = None
        self.problem = ""  # why it cannot even try (DNS, password)
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.credentials: Credentials | None = None
        if cfg.has_password:
            password = cfg.read_password(book, self.registrar.host)
            if password is None:
                self.problem = f"password unavailable ({cfg.password_where()})"
                log.error("registration %s: %s", cfg.name, self.problem)
            else:
                self.credentials = Credentials(cfg.username or self.aor.user or "", password)

    @property
    def transport(self) -> Transport:
        t = self.cfg.transport.upper()
        return "TLS" if t == "TLS" else "TCP" if t == "TCP" else "UDP"

    def spec(self) -> RegistrationSpec:
        return RegistrationSpec(self.cfg.name, self.registrar.serialize(), self.aor.serialize(),
                                self.aor.user or "voxd", self.credentials, self.cfg.expires,
                                self.transport)

    def matches(self, e: ev.IncomingCall) -> bool:
        """An INVITE to our Contact or to the AOR (the caller checks where it came from)."""
        if e.user is not None and e.user == self.aor.user:
            return True
        to = e.to.uri
        return (to.user, to.host.lower()) == (self.aor.user, self.aor.host.lower())

    def status(self, now: float) -> dict[str, Any]:
        st = self.reg.status if self.reg is not None else None

        def rel(t: float | None) -> float | None:
            return None if t is None else round(max(0.0, t - now), 1)

        state = st.state.value if st is not None else RegState.UNREGISTERED.value
        return {
            "name": self.cfg.name, "registrar": self.cfg.registrar, "aor": self.cfg.aor,
            "transport": self.cfg.transport, "agent": self.cfg.agent, "state": state,
            "registered": st is not None and st.state is RegState.REGISTERED,
            "contact": self.reg.contact_uri if self.reg is not None else None,
            "target": None if self.peer is None else (
                f"[{self.peer[0]}]:{self.peer[1]}" if ":" in self.peer[0] else f"{self.peer[0]}:{self.peer[1]}"),
            "last_status": st.last_status if st else None,
            "last_reason": (st.last_reason if st else "") or self.problem,
            "granted_expires_s": st.granted_expires if st else None,
            "expires_in_s": rel(st.expires_at) if st else None,
            "refresh_in_s": rel(st.refresh_at) if st else None,
            "retry_in_s": rel(st.retry_at) if st else None,
            "failures": st.failures if st else 0,
            "service_route": list(st.service_route) if st else [],
            "path": list(st.path) if st else [],
        }


class Registrations:
    """Every configured registration of one daemon; follows the current SIP endpoint."""

    def __init__(self, cfgs: list[RegistrationConfig], endpoint: Callable[[], SipEndpoint | None],
                 book: SecretBook) -> None:
        self._endpoint = endpoint
        self.book = book
        self.clients = [RegistrationClient(c, book) for c in cfgs]
        self._attached: SipEndpoint | None = None
        self._stopping = False
        self._changed = asyncio.Event()  # a response or a timer moved some registration on
        self._fallback = SipResolver(SipDnsConfig())  # before the endpoint exists

    # -- endpoint hooks ---------------------------------------------------------
    def _attach(self) -> SipEndpoint | None:
        ep = self._endpoint()
        if ep is not None and ep is not self._attached:
            if self._attached is not None:
                self._detach()
            ep.response_taps.append(self._tap)
            ep.inbound_router = self.route
            self._attached = ep
        return ep

    def _detach(self) -> None:
        ep, self._attached = self._attached, None
        if ep is not None:
            if self._tap in ep.response_taps:
                ep.response_taps.remove(self._tap)
            if ep.inbound_router == self.route:
                ep.inbound_router = None

    def _tap(self, resp: SipResponse, addr: Addr) -> bool:
        try:
            call_id, method = resp.call_id, resp.cseq.method
        except SipParseError:
            return False
        if method != "REGISTER":
            return False
        for c in self.clients:
            if c.reg is not None and c.reg.call_id == call_id:
                c.reg.receive(resp, time.monotonic())
                c.wake.set()
                self._changed.set()
                return True
        return False

    def route(self, e: ev.IncomingCall) -> str | None:
        """The agent for an INVITE to a registered AOR ("" for the default agent), or None.
        Only from the registrar's address, or from a source sip.trunks admit anyway
        (a carrier sending calls from other networks than its registrar's)."""
        ep = self._attached
        for c in self.clients:
            if not c.matches(e):
                continue
            from_registrar = c.peer is not None and e.source[0] == c.peer[0]
            if from_registrar or (ep is not None and ep.cfg.trunks and ep.source_allowed(e.source)):
                return c.cfg.agent or ""
        return None

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        self._stopping = False
        self._attach()
        for c in self.clients:
            if c.task is None:
                c.task = asyncio.create_task(self._run(c), name=f"sip-register-{c.cfg.name}")

    async def configure(self, cfgs: list[RegistrationConfig]) -> None:
        """A reloaded `sip.registrations`: unchanged ones (same settings, same password)
        carry on; removed or changed ones are unregistered; new ones start."""
        old = {c.cfg.name: c for c in self.clients}
        clients: list[RegistrationClient] = []
        for cfg in cfgs:
            fresh = RegistrationClient(cfg, self.book)
            kept = old.get(cfg.name)
            same = kept is not None and kept.cfg == cfg and kept.credentials == fresh.credentials
            clients.append(kept if same and kept is not None else fresh)
        retired = [c for c in self.clients if c not in clients]
        await self._retire(retired)
        self.clients = clients
        if not self._stopping:
            await self.start()
        if retired or len(clients) != len(old):
            log.info("reload: registrations %s", ", ".join(c.cfg.name for c in clients) or "none")

    async def stop(self) -> None:
        """Unregister every binding (Expires: 0) and wait up to a few seconds for answers."""
        self._stopping = True
        await self._retire(self.clients)
        self._detach()

    async def _retire(self, clients: list[RegistrationClient]) -> None:
        now = time.monotonic()
        waiting = [c for c in clients if c.reg is not None and c.reg.unregister(now)]
        for c in waiting:
            c.wake.set()
        try:
            async with asyncio.timeout(UNREGISTER_WAIT_S):
                while any(c.reg is not None and not c.reg.settled for c in waiting):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            log.warning("registrations: no answer to Expires: 0 from %s",
                        ", ".join(c.cfg.name for c in waiting if c.reg is not None and not c.reg.settled))
        for c in clients:
            if c.task is not None:
                c.task.cancel()
                try:
                    await c.task
                except asyncio.CancelledError:
                    pass
                c.task = None

    def ready(self) -> bool:
        return all(c.reg is not None and c.reg.status.state is RegState.REGISTERED for c in self.clients)

    def status(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [c.status(now) for c in self.clients]

    # -- one registration's loop ------------------------------------------------------
    async def _run(self, c: RegistrationClient) -> None:
        loop = asyncio.get_running_loop()
        retry = 5.0
        while c.peer is None:
            try:
                c.failover = await self._locate(c)
                c.peer = c.failover.targets[0].addr
                c.problem = c.problem if c.problem.startswith("password") else ""
            except (OSError, ValueError) as e:
                c.problem = f"cannot resolve {c.registrar.host}: {e}"
                log.warning("registration %s: %s (retry in %.0f s)", c.cfg.name, c.problem, retry)
                await asyncio.sleep(retry)
                retry = min(retry * 2, 300.0)
        last_ping = loop.time()
        while True:
            ep = self._attach()
            if ep is not None and ep.ua is not None:
                local = (ep.host, ep.tls_port or ep.port) if c.transport == "TLS" else (ep.host, ep.port)
                if c.reg is None:
                    if local[0] in ("0.0.0.0", "::"):
                        log.warning("registration %s: the Contact would be %s; set sip.public_host to the "
                                    "address the registrar reaches", c.cfg.name, local[0])
                    c.reg = Registration(c.spec(), c.peer, local)
                    c.reg.start(time.monotonic())
                    log.info("registration %s: registering %s at %s:%d (%s)", c.cfg.name, c.cfg.aor,
                             c.peer[0], c.peer[1], c.cfg.transport)
                elif c.reg.local != local and not c.reg.stopped:
                    c.reg.local = local  # re-bound: the next REGISTER binds the new Contact
                    c.reg.start(time.monotonic())
                await self._send(c, ep)
                if c.transport != "UDP" and loop.time() - last_ping >= KEEPALIVE_S:
                    if (conn := ep.tcp_peers.get(c.peer)) is not None:
                        conn.write(b"\r\n\r\n")
                    last_ping = loop.time()
            deadline = c.reg.next_deadline() if c.reg is not None else None
            timeout = KEEPALIVE_S if deadline is None else max(0.0, deadline - time.monotonic())
            if c.transport != "UDP":
                timeout = min(timeout, KEEPALIVE_S)
            c.wake.clear()
            try:
                async with asyncio.timeout(timeout):
                    await c.wake.wait()
            except TimeoutError:
                pass
            if c.reg is not None:
                before = c.reg.status.state
                c.reg.poll(time.monotonic())
                self._log_change(c, before)
                await self._after_failure(c)
                self._changed.set()

    async def _after_failure(self, c: RegistrationClient) -> None:
        """A REGISTER that timed out or got 503 goes at once to the registrar name's next
        target (RFC 3263 §4.3); once none is left the backoff runs and the next attempt
        starts again from the best target."""
        assert c.reg is not None
        st = c.reg.status
        if st.failures <= c.seen_failures or c.reg.stopped:
            c.seen_failures = st.failures
            return
        c.seen_failures = st.failures
        if st.last_status is None or not fails_over(st.last_status) or c.failover is None:
            return
        why = f"{st.last_status} {st.last_reason}"[:80]
        if c.failover.next(why) is not None:
            self._move(c, c.failover.current, f"{c.peer[0]}:{c.peer[1]} answered {why}" if c.peer else why)
            return
        log.warning("registration %s: every target failed (%s)", c.cfg.name, c.failover.summary())
        try:  # from the cache while the TTLs hold: the preferred target first again
            c.failover = await self._locate(c)
            c.peer = c.reg.peer = c.failover.targets[0].addr
        except (OSError, ValueError) as e:
            c.problem = f"cannot resolve {c.registrar.host}: {e}"

    def _move(self, c: RegistrationClient, target: Target | None, why: str) -> None:
        assert c.reg is not None and target is not None
        log.info("registration %s: %s; REGISTER to %s:%d", c.cfg.name, why, target.address, target.port)
        c.peer = c.reg.peer = target.addr
        c.reg.start(time.monotonic())

    def _log_change(self, c: RegistrationClient, before: RegState) -> None:
        assert c.reg is not None
        st = c.reg.status
        if st.state is not before and st.state in (RegState.REGISTERED, RegState.BACKOFF):
            if st.state is RegState.REGISTERED:
                log.info("registration %s: registered for %s s", c.cfg.name, st.granted_expires)
            else:
                log.warning("registration %s: failed (%s %s), retry in %.0f s", c.cfg.name, st.last_status,
                            st.last_reason, (st.retry_at or 0) - time.monotonic())

    async def _send(self, c: RegistrationClient, ep: SipEndpoint) -> None:
        assert c.reg is not None and c.peer is not None
        data = c.reg.data_to_send()
        if not data:
            return
        while c.transport != "UDP":
            try:  # the connection to the registrar, shared with calls to it (TLS: verified)
                await ep.connector.ensure(c.peer, c.transport, c.registrar.host)
                break
            except OSError as e:
                c.problem = str(e)
                if c.failover is None or c.failover.next(f"unreachable ({e})") is None:
                    return  # the transaction's timer reports the failure
                self._move(c, c.failover.current, f"{c.peer[0]}:{c.peer[1]} unreachable")
                data = c.reg.data_to_send()
        c.problem = c.problem if c.problem.startswith("password") else ""
        for d in data:
            ep.send_raw(d, c.peer)

    async def _locate(self, c: RegistrationClient) -> Failover:
        """The registrar's targets (NAPTR/SRV/A unless its URI has a port or an address)."""
        ep = self._endpoint()
        resolver = ep.resolver if ep is not None else self._fallback
        types = address_types(ep.cfg.host) if ep is not None else ("A",)
        return Failover(await resolver.locate(SipUri(c.registrar.host, None, c.registrar.port,
                                                     scheme=c.registrar.scheme,
                                                     params=dict(c.registrar.params)),
                                              [c.transport], types))
