"""Outbound calls through a carrier trunk (`sip.trunks[].outbound`).

A plain number becomes ``sip:<formatted number>@<domain>``; the INVITE goes to the
outbound proxy when there is one (with a pre-loaded ``Route``, loose routing) or to the
domain; caller ID is the From display/user at the trunk's domain plus
``P-Asserted-Identity`` and ``Privacy``; the trunk's credentials answer 401/407 on
this call's requests. Each trunk caps concurrent calls and calls per second. A failed
call's end reason names the SIP status and the trunk.
"""

from __future__ import annotations

import logging
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from voxd.agents.loader import LoadedAgent
from voxd.call.session import CallSession
from voxd.config import TrunkConfig
from voxd.core.endreason import EndReason
from voxd.core.errors import AtCapacity, NotFound
from voxd.core.secrets import SecretBook
from voxd.net.sip_dns import address_types
from voxd.proto.sip.auth import Credentials
from voxd.proto.sip.events import CallFailed
from voxd.proto.sip.locate import Failover, Target, Transport, fails_over
from voxd.proto.sip.message import REASONS
from voxd.proto.sip.numbering import format_number, is_number
from voxd.proto.sip.uri import SipUri

if TYPE_CHECKING:
    from voxd.net.sip import SipEndpoint
    from voxd.net.sip_calls import SipCall

log = logging.getLogger("voxd.sip.trunk")

Addr = tuple[str, int]


@dataclass
class TrunkLoad:
    """Concurrent calls and a calls-per-second token bucket for one trunk."""

    active: int = 0
    tokens: float = 0.0
    refilled_at: float = field(default_factory=time.monotonic)
    placed: int = 0
    refused: int = 0
    blocked_until: float = 0.0  # a carrier's 503 Retry-After: no new call before (monotonic)
    blocked_by: str = ""

    def hold(self, now: float, seconds: int, why: str) -> None:
        """The carrier asked us to wait (503 with Retry-After): no call on the trunk for ``seconds``."""
        self.blocked_until = max(self.blocked_until, now + seconds)
        self.blocked_by = why

    def blocked_for(self, now: float) -> float:
        return max(0.0, self.blocked_until - now)

    def admit(self, now: float, max_calls: int, cps: float) -> str | None:
        """None when a call may start now, else why not."""
        if (wait := self.blocked_for(now)) > 0:
            self.refused += 1
            return f"the carrier asked to wait ({self.blocked_by}); {wait:.0f} s left"
        if cps > 0:
            burst = max(1.0, cps)
            if self.placed == 0 and self.tokens == 0.0:
                self.tokens = burst
            self.tokens = min(burst, self.tokens + (now - self.refilled_at) * cps)
            self.refilled_at = now
        if max_calls and self.active >= max_calls:
            self.refused += 1
            return f"{self.active} calls in progress (max_calls {max_calls})"
        if cps > 0:
            if self.tokens < 1.0:
                self.refused += 1
                return f"more than {cps:g} calls per second"
            self.tokens -= 1.0
        self.active += 1
        self.placed += 1
        return None


_LOADS: weakref.WeakKeyDictionary[object, dict[str, TrunkLoad]] = weakref.WeakKeyDictionary()


def loads(endpoint: SipEndpoint) -> dict[str, TrunkLoad]:
    return _LOADS.setdefault(endpoint, {})


def outbound_trunks(endpoint: SipEndpoint) -> list[TrunkConfig]:
    return [t for t in endpoint.cfg.trunks if t.outbound is not None]


def pick_trunk(endpoint: SipEndpoint, name: str | None, to: str) -> TrunkConfig | None:
    """The trunk a dial request means: the named one, or for a plain number the only
    outbound trunk; None for a SIP URI without a trunk (dialled directly)."""
    trunks = outbound_trunks(endpoint)
    if name is not None:
        for t in trunks:
            if t.name == name:
                return t
        raise NotFound(f"no trunk {name!r} with outbound settings (sip.trunks[].outbound)")
    if to.startswith(("sip:", "sips:")):
        return None
    if not is_number(to):
        raise ValueError("'to' must be a SIP URI (sip:user@host) or a phone number (+15551234567)")
    if len(trunks) != 1:
        raise ValueError("a phone number needs 'trunk': " + (", ".join(t.name for t in trunks) or
                                                           "no trunk has outbound settings"))
    return trunks[0]


def trunk_hop(trunk: TrunkConfig) -> tuple[SipUri, str | None]:
    """Where a trunk's requests go: its outbound proxy's URI with the pre-loaded ``Route``
    (loose routing), or ``sip:<domain>[:port]`` with no Route. A name without a port is
    located with NAPTR/SRV (voxd/net/sip_dns.py); a port or an address skips SRV."""
    out = trunk.outbound
    assert out is not None
    if out.proxy:
        proxy = SipUri.parse(out.proxy)
        params = {**proxy.params, "lr": None}
        if out.transport != "udp":
            params["transport"] = out.transport
        route_uri = SipUri(proxy.host, None, proxy.port, params=params)
        return SipUri(proxy.host, None, proxy.port, scheme=proxy.scheme), f"<{route_uri.serialize()}>"
    return SipUri(out.domain, None, out.port), None


def transport_of(trunk: TrunkConfig) -> Transport:
    assert trunk.outbound is not None
    t = trunk.outbound.transport.upper()
    return "TLS" if t == "TLS" else "TCP" if t == "TCP" else "UDP"


async def locate(endpoint: SipEndpoint, trunk: TrunkConfig) -> Failover:
    """The trunk's next-hop targets in failover order (RFC 3263). Raises OSError."""
    hop, _ = trunk_hop(trunk)
    targets = await endpoint.resolver.locate(hop, [transport_of(trunk)], address_types(endpoint.cfg.host))
    return Failover(targets, hop.host)


async def reach(endpoint: SipEndpoint, failover: Failover, transport: Transport, server_name: str) -> Target | None:
    """The first target from the current one on that takes a connection (TCP/TLS: opened
    or reused; UDP: every target does); a refused one is passed over (a transport error)."""
    target = failover.current
    while target is not None and transport != "UDP":
        try:
            await endpoint.connector.ensure(target.addr, transport, server_name)
        except OSError as e:
            log.info("%s:%d unreachable over %s (%s): next target", target.address, target.port, transport, e)
            target = failover.next(f"unreachable ({e})")
            continue
        break
    return target


async def dial_trunk(endpoint: SipEndpoint, agent: LoadedAgent, trunk: TrunkConfig, to: str, *,
                     secrets: SecretBook, from_user: str | None = None,
                     variables: dict[str, str] | None = None,
                     metadata: dict[str, Any] | None = None) -> CallSession:
    """Place a call to ``to`` (a number, or a SIP URI) through ``trunk``."""
    out = trunk.outbound
    assert out is not None
    if to.startswith(("sip:", "sips:")):
        target = SipUri.parse(to)
    else:
        user = format_number(to, style=out.number_format, country_code=out.country_code,
                             dial_prefix=out.dial_prefix)
        target = SipUri(out.domain, user, None if out.proxy else out.port, params={"user": "phone"})
    if out.transport != "udp":
        target.params["transport"] = out.transport
    hop, route = trunk_hop(trunk)
    transport = transport_of(trunk)
    try:
        failover = await locate(endpoint, trunk)
    except (OSError, ValueError) as e:
        raise ValueError(f"trunk {trunk.name}: {e}") from None
    credentials = None
    if out.has_password:
        password = out.read_password(secrets, hop.host)
        if password is None:
            raise ValueError(f"trunk {trunk.name}: password unavailable ({out.password_where()})")
        credentials = Credentials(out.username or out.from_user or "voxd", password)
    # one connection per peer, opened once, verified for TLS against the configured name
    first = await reach(endpoint, failover, transport, hop.host)
    if first is None:
        raise ValueError(f"trunk {trunk.name}: no target reachable: {failover.summary()}")
    load = loads(endpoint).setdefault(trunk.name, TrunkLoad())
    now = time.monotonic()
    why = load.admit(now, out.max_calls, out.calls_per_second)
    if why is not None:
        raise AtCapacity(f"trunk {trunk.name}: {why}", retry_after=max(1, round(load.blocked_for(now))))
    headers: list[tuple[str, str]] = []
    if out.asserted_identity:
        headers.append(("P-Asserted-Identity", f"<{out.asserted_identity}>"))
    if out.privacy:
        headers.append(("Privacy", "; ".join(out.privacy)))
    meta: dict[str, Any] = {"trunk": trunk.name, **(metadata or {})}
    if failover.tried:  # targets passed over already (connection refused)
        meta["sip_failover"] = failover.summary()
    try:
        session = await endpoint.table.dial(
            agent, target.serialize(), codec_names=endpoint.cfg.codecs_for(trunk), from_user=from_user or out.from_user or "voxd",
            peer=first.addr, metadata=meta, srtp=trunk.srtp or endpoint.cfg.srtp,
            variables=variables, failover=failover,
            invite_options={
                "from_host": out.domain, "display_name": out.from_display, "route": route,
                "credentials": credentials, "headers": headers})
    except BaseException:
        load.active -= 1
        raise

    async def release_when_ended() -> None:
        try:
            await session.ended.wait()
        finally:
            load.active -= 1

    endpoint.table.spawn(release_when_ended())  # held and cancelled by the call table
    return session


async def fail_over(endpoint: SipEndpoint, call: SipCall, e: CallFailed) -> bool:
    """An outbound INVITE timed out or got 503 (RFC 3263 §4.3): send it to the next
    target of the name it was sent to; False when none is left (the call fails as usual)."""
    failover = call.failover
    failed = failover.current if failover is not None else None
    if failover is None or failed is None or call.ended or not fails_over(e.status):
        return False
    failover.next(f"{e.status} {e.reason}"[:80])
    target = await reach(endpoint, failover, failed.transport, failover.server_name)
    if target is None or call.ended:
        return False
    before = call.call_id
    call_id = endpoint.table.retarget(call, target.addr)
    if endpoint.tracer is not None:
        endpoint.tracer.carry_over(before, call_id)
    if call.session is not None:
        call.session.record.metadata["sip_failover"] = failover.summary()
    log.info("%s:%d answered %d: INVITE sent to %s:%d, the next target of %s (call %s)", failed.address,
             failed.port, e.status, target.address, target.port, failover.server_name, call_id)
    return True


def failure_reason(session: CallSession | None, e: CallFailed) -> EndReason:
    """The end reason of a call the callee refused, from the closed vocabulary (busy,
    declined, ... failed); what does not fit it goes into the record's metadata:
    ``sip_status``, ``sip_reason`` and, for trunk calls, ``end_detail`` naming the status
    and the trunk (``SIP 486 Busy Here via trunk carrier``)."""
    from voxd.net.sip_calls import FAILURE_REASONS

    reason: EndReason = FAILURE_REASONS.get(e.status, "failed")
    if session is None:
        return reason
    meta = session.record.metadata
    meta["sip_status"] = e.status
    meta["sip_reason"] = e.reason[:128]
    standard = REASONS.get(e.status, "") or e.reason[:64]
    detail = f"SIP {e.status}{' ' + standard if standard else ''}"
    if e.retry_after is not None:
        meta["sip_retry_after"] = e.retry_after
        detail += f" (Retry-After {e.retry_after} s)"
    trunk = meta.get("trunk")
    meta["end_detail"] = f"{detail} via trunk {trunk}" if trunk is not None else detail
    return reason


def note_failure(endpoint: SipEndpoint, session: CallSession | None, e: CallFailed) -> None:
    """A carrier's 503 with Retry-After holds the trunk's new calls for that long (RFC 3261
    §21.5.4: the server is overloaded or in maintenance, not the callee)."""
    if session is None or e.status != 503 or not e.retry_after:
        return
    trunk = session.record.metadata.get("trunk")
    if isinstance(trunk, str):
        load = loads(endpoint).setdefault(trunk, TrunkLoad())
        load.hold(time.monotonic(), e.retry_after, f"SIP 503 Retry-After {e.retry_after} s")
