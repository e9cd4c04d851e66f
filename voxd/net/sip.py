"""The SIP endpoint: UDP and TCP listeners around the sans-IO UserAgent, and the glue
that turns SIP dialogs into call sessions with RTP media.

The transport only moves bytes: datagrams and TCP-framed messages go into
`UserAgent`, whatever it queues goes out, and its earliest timer deadline is kept
scheduled. Events (new call, ACK, BYE, INFO digits, REFER progress...) are mapped
onto the calls of its `SipCallTable` (voxd.net.sip_calls): each `SipCall` is the wire
(RTP) and the TransportControl (BYE, REFER, RFC 4733) of a `CallLeg`, which owns the
call's life. The endpoint implements the table's `Signalling` (BYE, REFER, INVITE,
CANCEL through the user agent).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from voxd.agents.catalog import AgentCatalog
from voxd.agents.loader import LoadedAgent
from voxd.call.lookup import REJECT_STATUSES
from voxd.call.manager import CallManager
from voxd.call.ports import TransferOutcome
from voxd.call.reply import Voice
from voxd.call.session import CallSession
from voxd.config import SipListenConfig, TrunkConfig
from voxd.core.endreason import end_reason
from voxd.media import codecs
from voxd.media.hold import HoldAudio
from voxd.net.clock import MediaClock
from voxd.net.leg import CallLeg, LegEnv, Refused
from voxd.net.rtp import PortPool
from voxd.net.sip_attended import attended_transfer, consult_event
from voxd.net.sip_calls import SipCall, SipCallTable
from voxd.net.sip_connect import SipConnector
from voxd.net.sip_dns import SipResolver, address_types
from voxd.net.sip_hold import caller_hold_changed, reoffer_answered, replace_dialog
from voxd.net.sip_taps import tap_datagram
from voxd.net.sip_tcp import TcpPeers
from voxd.net.sip_trace import SipTracer
from voxd.proto import negotiate, secure_sdp
from voxd.proto.sdes import Policy
from voxd.proto.sdp import SdpParseError, SessionDescription
from voxd.proto.sip import events as ev
from voxd.proto.sip.agent import UAConfig, UserAgent, parse_target
from voxd.proto.sip.auth import DigestServer
from voxd.proto.sip.errors import SipParseError
from voxd.proto.sip.locate import Failover, fails_over
from voxd.proto.sip.message import SipMessage, SipRequest, SipResponse
from voxd.proto.sip.probe import NodeState
from voxd.proto.sip.session_timer import TimerPolicy
from voxd.proto.sip.uri import SipUri

log = logging.getLogger("voxd.sip")

Addr = tuple[str, int]


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, endpoint: SipEndpoint) -> None:
        self.endpoint = endpoint
        self.closed = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.endpoint.on_datagram(data, (addr[0], addr[1]))


class SipEndpoint:
    def __init__(
        self,
        cfg: SipListenConfig,
        agents: AgentCatalog,
        calls: CallManager,
        clock: MediaClock,
        accepting: Callable[[], bool] = lambda: True,
    ) -> None:
        self.cfg = cfg
        self.agents = agents
        self.calls = calls
        self.clock = clock
        self.accepting = accepting
        self.env = LegEnv(calls, clock, agents, accepting)
        self.host = cfg.public_host or cfg.host
        self.ports = PortPool(cfg.rtp_port_min, cfg.rtp_port_max)
        self.ua: UserAgent | None = None
        self.table = SipCallTable(self.env, self.ports, self, cfg.host, rtp_timeout_s=cfg.rtp_timeout_s)
        self.tcp_peers = TcpPeers(cfg, self.on_message, self._carries_call)
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp_server: asyncio.Server | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._digest = {t.name: self._digest_for(t) for t in cfg.trunks if t.username}
        self.port = cfg.port
        self.tls_port: int | None = None  # the TLS listener's, once it listens (voxd/net/sip_tls.py)
        self.connector = SipConnector(self)  # outbound TCP/TLS connections, one per peer
        self.resolver = SipResolver(cfg.dns)  # RFC 3263 for trunk and registrar names (sip_dns.py)
        self.malformed = 0
        # carrier hooks (voxd/net/sip_register.py, sip_trunk.py): responses the UA does not
        # own (REGISTER), and inbound calls routed by registration (agent name or None)
        self.response_taps: list[Callable[[SipResponse, Addr], bool]] = []
        self.inbound_router: Callable[[ev.IncomingCall], str | None] | None = None
        self.options_results: list[Callable[[ev.OptionsResult], None]] = []  # trunk keepalives (sip_options.py)
        self.tracer: SipTracer | None = None  # per-call SIP traces (sip_trace.py)
        self.table.on_cleanup = self._traced
        self._looking_up: dict[str, asyncio.Task[None]] = {}  # INVITEs waiting for their agent's inbound lookup
        self._hold = HoldAudio.load(cfg.hold_audio)  # what a caller we hold hears (sip_hold.py)

    def configure(self, cfg: SipListenConfig) -> None:
        """A reloaded `sip:` block with the same listener and RTP ports: trunks (sources,
        digest credentials), limits, codecs, ringing and the public address apply to
        the next call; calls in progress keep what they negotiated."""
        self.cfg = cfg
        self.tcp_peers.cfg = cfg
        self.host = cfg.public_host or cfg.host
        self.table.bind_host = cfg.host
        self.table.rtp_timeout_s = cfg.rtp_timeout_s
        self._digest = {t.name: self._digest_for(t) for t in cfg.trunks if t.username}
        self.resolver.configure(cfg.dns)
        self._hold = HoldAudio.load(cfg.hold_audio)
        if self.ua is not None:
            self.ua.config.session = TimerPolicy(cfg.session_timers.expires_s, cfg.session_timers.min_se_s)

    def transport_to(self, addr: Addr) -> tuple[str, int]:
        """The transport a peer is reached over, and our port as it should see it (Via,
        Contact): TLS on a TLS connection (the TLS listener's port), TCP, else UDP."""
        conn = self.tcp_peers.get(addr)
        if conn is None:
            return "UDP", self.port
        if conn.tls:
            return "TLS", self.tls_port or self.port
        return "TCP", self.port

    def _carries_call(self, addr: Addr) -> bool:
        return any(c.source == addr and not c.ended for c in self.sip_calls.values())

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), local_addr=(self.cfg.host, self.cfg.port))
        self._udp = transport
        self.port = transport.get_extra_info("sockname")[1]
        if self.cfg.tcp:
            self._tcp_server = await loop.create_server(self.tcp_peers.protocol, self.cfg.host, self.port)
        # _flush writes to a peer's TCP connection when it has one: no retransmissions there
        timers = self.cfg.session_timers
        self.ua = UserAgent(UAConfig(self.host, self.port, user="voxd", user_agent="voxd",
                                     session=TimerPolicy(timers.expires_s, timers.min_se_s)),
                            auth=self._auth, reliable=lambda addr: addr in self.tcp_peers, transport=self.transport_to,
                            node_state=self.node_state)
        log.info("SIP listening on %s:%d (udp%s)", self.cfg.host, self.port, "+tcp" if self.cfg.tcp else "")

    def node_state(self) -> NodeState:
        """What an OPTIONS is answered with (voxd/proto/sip/probe.py): 503 while draining."""
        return NodeState(draining=not self.accepting(), active=self.table.active, capacity=self.cfg.max_calls)

    def probe(self, target: str, peer: Addr) -> str:
        """Send an OPTIONS (a trunk keepalive); the answer comes to ``options_results``."""
        assert self.ua is not None
        call_id = self.ua.options(target, peer, time.monotonic())
        self._flush()
        return call_id

    @property
    def sip_calls(self) -> dict[str, SipCall]:
        return self.table.calls

    async def stop(self) -> None:
        for task in list(self._looking_up.values()):
            task.cancel()
        await self.table.close_all()
        self._flush()
        if self._timer is not None:
            self._timer.cancel()
        if self._udp is not None:
            self._udp.close()  # the socket goes on the next loop turn: wait, so its port can be bound again
            proto = self._udp.get_protocol()
            if isinstance(proto, _Udp):
                await proto.closed
        if self._tcp_server is not None:
            self._tcp_server.close()
            self.tcp_peers.close_all()
            await self._tcp_server.wait_closed()
        self.table.cancel_tasks()

    # ------------------------------------------------------------ bytes in/out
    def _traced(self, call: SipCall) -> None:
        if self.tracer is not None and call.session is not None:
            self.tracer.finish(call.call_id, call.session.record.id)

    def _trace(self, direction: str, data: bytes, addr: Addr, transport: str) -> None:
        if self.tracer is not None:
            self.tracer.record(direction, data, (self.host, self.port), addr, transport)

    def on_datagram(self, data: bytes, addr: Addr) -> None:
        assert self.ua is not None
        self._trace("in", data, addr, "udp")
        if self.response_taps and data[:8] == b"SIP/2.0 " and tap_datagram(self.response_taps, data, addr):
            return
        try:
            events = self.ua.receive(data, addr, time.monotonic())
        except Exception:  # the UA promises not to raise; never let one packet kill the listener
            log.exception("SIP datagram from %s crashed the parser", addr[0])
            self.malformed += 1
            return
        self._handle(events)

    def on_message(self, msg: SipMessage, addr: Addr) -> None:
        assert self.ua is not None
        if self.tracer is not None:
            self._trace("in", msg.serialize(), addr, "tcp")
        if isinstance(msg, SipResponse) and any(tap(msg, addr) for tap in self.response_taps):
            return  # a REGISTER's response
        try:
            events = self.ua.receive_message(msg, addr, time.monotonic())
        except SipParseError:
            self.malformed += 1
            return
        self._handle(events)

    def send_raw(self, data: bytes, addr: Addr) -> None:
        """A message the UA did not queue (REGISTER): on the peer's TCP connection, else UDP."""
        if (tcp := self.tcp_peers.get(addr)) is not None:
            tcp.write(data)
        elif self._udp is not None and not self.tcp_peers.was_tls(addr):
            self._udp.sendto(data, addr)

    def hold_audio(self) -> HoldAudio:
        return self._hold.fresh()

    def flush(self) -> None:
        """Send whatever the user agent queued (for the modules acting on it: sip_hold.py...)."""
        self._flush()

    def _flush(self) -> None:
        if self.ua is None:
            return
        for data, addr in self.ua.data_to_send():
            tcp = self.tcp_peers.get(addr)
            self._trace("out", data, addr, "udp" if tcp is None else "tcp")
            if tcp is not None:
                tcp.write(data)
            elif self.tcp_peers.was_tls(addr):  # its TLS connection closed: never in the clear
                log.info("SIP to %s:%d dropped: its TLS connection has closed", addr[0], addr[1])
            elif self._udp is not None:
                self._udp.sendto(data, addr)
        self._schedule()

    def _schedule(self) -> None:
        assert self.ua is not None
        deadline = self.ua.next_deadline()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            loop = asyncio.get_running_loop()
            delay = max(0.0, deadline - time.monotonic())
            self._timer = loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        assert self.ua is not None
        self._timer = None
        self._handle(self.ua.poll(time.monotonic()))

    # ------------------------------------------------------------ security
    def _digest_for(self, trunk: TrunkConfig) -> DigestServer:
        username = trunk.username or ""  # only trunks with a username get a digest check
        password = os.environ.get(trunk.password_env or "", "")
        if not password:
            log.error("trunk %s: digest password variable %s is empty", trunk.name, trunk.password_env)
        return DigestServer(trunk.realm, {username: password}, algorithms=tuple(trunk.algorithms))

    def _trunk_for(self, source: Addr) -> TrunkConfig | None:
        ip = ipaddress.ip_address(source[0])
        for t in self.cfg.trunks:
            if t.outbound_only:
                continue
            if not t.allow or any(ip in ipaddress.ip_network(n, strict=False) for n in t.allow):
                return t
        return None

    def source_allowed(self, source: Addr) -> bool:
        if self.cfg.trunks:
            return self._trunk_for(source) is not None
        return self.cfg.allow_any or ipaddress.ip_address(source[0]).is_loopback

    def _auth(self, source: Addr, req: SipRequest) -> DigestServer | None:
        if req.method != "INVITE" or not self._digest:
            return None
        trunk = self._trunk_for(source)
        return self._digest.get(trunk.name) if trunk is not None else None

    # ------------------------------------------------------------ events
    def _handle(self, events: list[ev.Event]) -> None:
        for e in events:
            try:
                self._on_event(e)
            except Exception:
                log.exception("SIP event %s failed", type(e).__name__)
        self._flush()

    def _on_event(self, e: ev.Event) -> None:
        assert self.ua is not None
        now = time.monotonic()
        call = self.table.get(e.call_id)
        if call is not None and call.consult:  # an attended transfer's call to its target
            consult_event(self, call, e)
        elif isinstance(e, ev.IncomingCall) and e.replaces is not None:
            replaced = self.table.get(e.replaces)
            if replaced is None or replaced.consult:
                self.ua.reject(e.call_id, 481, now, reason="No Call To Replace")
            else:
                self.table.spawn(replace_dialog(self, replaced, e))
        elif isinstance(e, ev.IncomingCall):
            self._incoming(e, now)
        elif isinstance(e, ev.CallEstablished) and call is not None:
            if call.outbound_offer is not None:
                self.table.spawn(self.table.answered(call, e.answer))
            elif call.leg is not None and call.session is not None and call.session.record.answered_at is None:
                self.table.spawn(call.leg.answered())
        elif isinstance(e, ev.CallProgress) and call is not None and e.sdp and call.outbound_offer is not None:
            self.table.spawn(self.table.early_media(call, e.sdp))
        elif isinstance(e, ev.CallFailed) and call is not None:
            if call.failover is not None and fails_over(e.status):
                self.table.spawn(self._fail_over(call, e))  # RFC 3263: the trunk name's next target
            else:
                self._call_failed(call, e)
        elif isinstance(e, ev.OptionsResult):
            for listener in self.options_results:
                listener(e)
        elif isinstance(e, ev.CallCancelled) and call is not None:
            self.table.end(call, "caller_cancelled", "caller")
        elif isinstance(e, ev.CallCancelled) and e.call_id in self._looking_up:
            self._looking_up.pop(e.call_id).cancel()  # 487 already sent
        elif isinstance(e, ev.ByeReceived) and call is not None:
            self.table.end(call, "caller_hangup", "caller")
        elif isinstance(e, ev.CallTerminated) and call is not None:
            call.bye_sent = True  # the user agent already ended the dialog
            self.table.end(call, end_reason(e.reason), "system")
        elif isinstance(e, ev.InfoDtmf) and call is not None and call.leg is not None:
            call.leg.dtmf(e.digit, "sip-info")
        elif isinstance(e, ev.ReInvite) and call is not None:
            self._reinvite(call, e, now)
        elif isinstance(e, ev.ReofferAnswered) and call is not None:
            reoffer_answered(self, call, e.answer)
        elif isinstance(e, ev.ReferProgress) and call is not None:
            self._transfer_progress(call, e.status)
            if e.final:
                self._transfer_done(call, 200 <= e.status < 300)
        elif isinstance(e, ev.ReferFailed) and call is not None:
            self._transfer_progress(call, e.status)
            self._transfer_done(call, False)

    def _call_failed(self, call: SipCall, e: ev.CallFailed) -> None:
        from voxd.net.sip_trunk import failure_reason, note_failure

        call.bye_sent = True
        note_failure(self, call.session, e)  # 503 Retry-After: the trunk waits
        self.table.end(call, failure_reason(call.session, e), "system")  # detail (status, trunk) in metadata

    async def _fail_over(self, call: SipCall, e: ev.CallFailed) -> None:
        from voxd.net.sip_trunk import fail_over

        try:
            moved = await fail_over(self, call, e)
        except Exception:
            log.exception("call %s: failover failed", call.call_id)
            moved = False
        if not moved and not call.ended:
            self._call_failed(call, e)

    def _incoming(self, e: ev.IncomingCall, now: float) -> None:
        assert self.ua is not None
        ua = self.ua
        src = e.source[0]
        routed = self.inbound_router(e) if self.inbound_router is not None else None  # a registration's agent
        if routed is None and not self.source_allowed(e.source):
            log.info("SIP INVITE from %s refused: source not allowed", src)
            ua.reject(e.call_id, 403, now, reason="Forbidden")
            return
        try:
            self.env.check_accepting()
        except Refused:
            ua.reject(e.call_id, 503, now, retry_after=30, reason="Draining")
            return
        if (self.table.active + len(self._looking_up) >= self.cfg.max_calls
                or self.table.per_source[src] >= self.cfg.max_calls_per_source):
            ua.reject(e.call_id, 503, now, retry_after=5, reason="Too many calls")
            return
        try:  # a registration's agent ("" for the default one), else by the dialled number
            agent = (self.env.agent(number=e.user or "") if routed is None
                     else self.env.agent(routed or None, qualified=True))
        except Refused:
            ua.reject(e.call_id, 404, now, reason="No agent")
            return
        try:
            offer = SessionDescription.parse(e.offer)
        except SdpParseError:
            ua.reject(e.call_id, 488, now, reason="Bad SDP")
            return
        if agent.config.inbound_lookup is not None and self.calls.lookups is not None:
            task = asyncio.ensure_future(self._look_up(e, agent, offer))
            self._looking_up[e.call_id] = task
            task.add_done_callback(lambda _t: self._looking_up.pop(e.call_id, None))
            return
        self._admit(e, agent, offer, now)

    async def _look_up(self, e: ev.IncomingCall, agent: LoadedAgent, offer: SessionDescription) -> None:
        """The agent's inbound lookup, before the INVITE is answered (the caller hears
        only 100 Trying meanwhile); then the call goes on, on the agent it named, or is refused."""
        assert self.ua is not None
        from_uri, to_uri = e.from_.uri.serialize(), e.to.uri.serialize()
        outcome = await self.env.inbound(agent, transport="sip", caller=e.from_.uri.user or "", called=e.user or "",
                                         from_uri=from_uri, to_uri=to_uri)
        self._looking_up.pop(e.call_id, None)
        now = time.monotonic()
        try:
            if outcome.reject is not None:
                self.env.reject(outcome, "sip", from_uri=from_uri, to_uri=to_uri,
                                metadata={"sip_call_id": e.call_id, "source": e.source[0]})
                status = outcome.reject.status
                self.ua.reject(e.call_id, status, now, reason=REJECT_STATUSES.get(status, "Decline"))
            else:
                self._admit(e, outcome.agent, offer, now, variables=outcome.variables,
                            lookup=outcome.info)
        except KeyError:  # the caller gave up meanwhile
            return
        finally:
            self._flush()

    def _admit(self, e: ev.IncomingCall, agent: LoadedAgent, offer: SessionDescription, now: float, *,
               variables: dict[str, str] | None = None, lookup: dict[str, object] | None = None) -> None:
        assert self.ua is not None
        ua = self.ua
        src = e.source[0]
        call = SipCall(self.table, e.call_id, e.source)
        try:
            sock, port = self.ports.bind(self.cfg.host)
        except OSError:
            ua.reject(e.call_id, 503, now, retry_after=5, reason="No media ports")
            return
        call.rtp_port = port
        call.srtp_policy = self.srtp_policy(e.source)
        try:
            neg = secure_sdp.answer(offer, self.host, port, self.codec_prefs(e.source), policy=call.srtp_policy,
                                    session_id=int(now))
        except negotiate.SdpNegotiationError as err:
            self.ports.release(port)
            sock.close()
            log.info("SIP INVITE from %s refused (488): %s", src, err)
            ua.reject(e.call_id, 488, now, reason="Not Acceptable Here")
            return
        leg = CallLeg(self.env, "sip", call, call, codec=codecs.get(neg.codec.name, neg.codec.clock_rate))
        try:
            meta: dict[str, object] = {"sip_call_id": e.call_id, "codec": neg.codec.name,
                                       "srtp": neg.srtp.suite if neg.srtp is not None else None,
                                       "source": src, "auth_user": e.auth_user}
            if lookup is not None:
                meta["inbound_lookup"] = lookup
            session = leg.admit(agent, from_uri=e.from_.uri.serialize(), to_uri=e.to.uri.serialize(),
                                metadata=meta, variables=variables)
        except Refused:
            self.ports.release(port)
            sock.close()
            ua.reject(e.call_id, 503, now, retry_after=5, reason="Busy")
            return
        call.session, call.leg = session, leg
        self.table.add(call)
        self.table.spawn(self._open_media(call, sock, neg))

    async def _open_media(self, call: SipCall, sock: object, neg: negotiate.Negotiated) -> None:
        assert self.ua is not None and call.session is not None
        stream = self.table.rtp_stream(call, neg)
        await stream.open(sock, self.ports.rtcp_socket(call.rtp_port))  # type: ignore[arg-type]
        call.rtp = stream
        if call.ended:
            stream.close()
            return
        try:
            if self.cfg.ring_ms:
                early = self.cfg.early_media  # 183 with our SDP: the greeting plays before the 200
                self.ua.ring(call.call_id, time.monotonic(), sdp=neg.sdp.serialize() if early else b"")
                self._flush()
                if early and call.leg is not None and call.session is not None:
                    call.session.record.metadata["early_media"] = True
                    self.table.spawn(call.leg.answered())
                await asyncio.sleep(self.cfg.ring_ms / 1000)
                if call.ended:
                    return
            self.ua.answer(call.call_id, neg.sdp.serialize(), time.monotonic())
        except KeyError:  # cancelled while ringing
            return
        self._flush()

    async def dial(self, agent: LoadedAgent, target: str, from_user: str = "voxd",
                   variables: dict[str, str] | None = None, metadata: dict[str, Any] | None = None) -> CallSession:
        """Place a call (see SipCallTable.dial) over UDP to the target's host, located
        with NAPTR/SRV/A (RFC 3263) unless it is an address or has a port."""
        uri = parse_target(target)
        try:
            targets = await self.resolver.locate(SipUri(uri.host, None, uri.port), ["UDP"], address_types(self.cfg.host))
        except OSError as e:
            raise ValueError(f"cannot call {uri.host}: {e}") from None
        return await self.table.dial(agent, target, codec_names=self.cfg.codecs, from_user=from_user,
                                     srtp=self.cfg.srtp, variables=variables, metadata=metadata,
                                     peer=targets[0].addr, failover=Failover(targets, uri.host))

    def codec_prefs(self, source: Addr) -> list[str]:
        """The codec preference of a call from ``source``: its trunk's, else sip.codecs."""
        return self.cfg.codecs_for(self._trunk_for(source) if self.cfg.trunks else None)

    def srtp_policy(self, source: Addr) -> Policy:
        """The srtp policy of a call from ``source``: its trunk's, else sip.srtp."""
        trunk = self._trunk_for(source) if self.cfg.trunks else None
        return trunk.srtp if trunk is not None and trunk.srtp is not None else self.cfg.srtp

    def _reinvite(self, call: SipCall, e: ev.ReInvite, now: float) -> None:
        assert self.ua is not None
        srtp = call.rtp.srtp if call.rtp is not None else None
        keys = call.rtp.neg.srtp if call.rtp is not None else None
        try:  # an SRTP call stays SRTP (never falls back), a plain one stays plain; one we hold stays held
            # the stream keeps its codec: a re-offer without it is refused
            prefs = [call.rtp.neg.codec.name] if call.rtp is not None else self.codec_prefs(call.source)
            neg = secure_sdp.answer(SessionDescription.parse(e.offer), self.host, call.rtp_port or 0, prefs,
                                    policy="required" if srtp is not None else "off",
                                    local=keys.local if keys is not None else None,
                                    session_id=int(now), session_version=int(now), hold=call.hold_audio is not None)
        except (SdpParseError, negotiate.SdpNegotiationError):
            self.ua.answer_reoffer(call.call_id, None, now, status=488)
            return
        if srtp is not None and neg.srtp is not None and call.rtp is not None:
            srtp.rekey(neg.srtp)
            call.rtp.neg.srtp = neg.srtp
        if call.rtp is not None:
            call.rtp.on_hold = neg.on_hold
            if neg.remote_address is not None:
                call.rtp.remote = neg.remote_address
        self.ua.answer_reoffer(call.call_id, neg.sdp.serialize(), now)
        caller_hold_changed(call, e.hold)  # no turns, no bot speech while the caller holds

    @staticmethod
    def _transfer_progress(call: SipCall, status: int) -> None:
        note = call.session.record.metadata.get("transfer") if call.session is not None else None
        if isinstance(note, dict):
            note.setdefault("progress", []).append(status)

    def _transfer_done(self, call: SipCall, ok: bool) -> None:
        if call.transfer_result is not None and not call.transfer_result.done():
            call.transfer_result.set_result(ok)
        if ok and call.session is not None and not call.attended:  # an attended one ends in its own flow
            call.session.record.end_reason = "transferred"
            self.table.end(call, "transferred", "agent")

    # ------------------------------------------------------------ Signalling (the table's)
    def invite(self, uri: str, sdp: bytes, peer: Addr, from_user: str, **options: Any) -> str:
        assert self.ua is not None
        call_id = self.ua.invite(uri, time.monotonic(), sdp=sdp, peer=peer, from_user=from_user, **options)
        self._flush()
        return call_id

    def cancel(self, call_id: str) -> None:
        assert self.ua is not None
        self.ua.cancel(call_id, time.monotonic())
        self._flush()

    def bye(self, call: SipCall) -> None:
        if self.ua is None or call.ended or call.bye_sent:
            return
        call.bye_sent = True
        try:
            self.ua.bye(call.call_id, time.monotonic())
        except KeyError:
            pass
        self._flush()

    def refer(self, call: SipCall, target: str) -> None:
        assert self.ua is not None
        self.ua.refer(call.call_id, target, time.monotonic())
        self._flush()

    async def attended_transfer(self, call: SipCall, target: str, summary: str, voice: Voice) -> TransferOutcome:
        return await attended_transfer(self, call, target, summary, voice)
