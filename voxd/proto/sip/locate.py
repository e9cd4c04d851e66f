"""Locating SIP servers (RFC 3263), sans-IO: which DNS questions to ask for a URI such
as ``sip:carrier.example``, and the ordered list of (address, port, transport) targets
the answers give; the caller does the lookups and tries the targets in turn.

- A numeric host is the target itself; an explicit port skips NAPTR and SRV (A/AAAA
  only); a ``transport`` parameter skips NAPTR (SRV for that transport) (§4.1, §4.2).
- Otherwise NAPTR first: ``SIP+D2U``, ``SIP+D2T``, ``SIPS+D2T`` services (only ``SIPS+``
  for a ``sips:`` URI) ordered by order then preference; their replacements are looked
  up as SRV. No NAPTR: ``_sips._tcp``, ``_sip._tcp``, ``_sip._udp`` SRV by the
  transports allowed. No SRV: A/AAAA of the host at the transport's default port.
- SRV records are ordered by priority and, within one priority, by a weighted random
  draw (RFC 2782); a lone ``.`` target means the service is not offered there.
- :class:`DnsCache` keeps answers for their TTL (negative answers for a short time).
- :func:`fails_over` says which outcomes move a request on to the next target
  (timeout, 503, transport error; RFC 3263 §4.3).
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from .uri import SipUri

Transport = Literal["UDP", "TCP", "TLS"]
RType = Literal["NAPTR", "SRV", "A", "AAAA"]

DEFAULT_PORT: dict[str, int] = {"UDP": 5060, "TCP": 5060, "TLS": 5061}
NAPTR_SERVICES: dict[str, Transport] = {"SIP+D2U": "UDP", "SIP+D2T": "TCP", "SIPS+D2T": "TLS"}
SRV_PREFIX: dict[Transport, str] = {"TLS": "_sips._tcp", "TCP": "_sip._tcp", "UDP": "_sip._udp"}
NEGATIVE_TTL_S = 30.0
MAX_TTL_S = 86400.0
FAILOVER_STATUSES = frozenset({408, 503})  # 408: our transaction timed out (or the peer's did)


@dataclass(frozen=True)
class Naptr:
    order: int
    preference: int
    flags: str
    service: str
    replacement: str


@dataclass(frozen=True)
class Srv:
    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True)
class Query:
    name: str
    rtype: RType


@dataclass(frozen=True)
class Target:
    """One place to send the request: an address, its port and the transport."""

    address: str
    port: int
    transport: Transport
    name: str = ""  # the host name it came from (TLS verifies against the URI's host, not this)

    @property
    def addr(self) -> tuple[str, int]:
        return (self.address, self.port)


Record = Naptr | Srv | str  # str: an address from A/AAAA


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _norm(name: str) -> str:
    return name.rstrip(".").lower()


def order_naptr(records: Iterable[Naptr], transports: Iterable[str], *, secure: bool = False) -> list[tuple[Transport, str]]:
    """(transport, SRV name) of the usable NAPTR records, best first (RFC 3403 order,
    then preference). Only ``s`` flags (an SRV lookup follows) for services we speak."""
    allowed = set(transports)
    usable: list[tuple[int, int, Transport, str]] = []
    for r in records:
        transport = NAPTR_SERVICES.get(r.service.upper())
        if transport is None or transport not in allowed or r.flags.lower() != "s":
            continue
        if secure and transport != "TLS":
            continue
        if not r.replacement or r.replacement == ".":
            continue
        usable.append((r.order, r.preference, transport, _norm(r.replacement)))
    usable.sort(key=lambda u: (u[0], u[1]))
    return [(t, name) for _, _, t, name in usable]


def order_srv(records: Iterable[Srv], rand: Callable[[], float] = random.random) -> list[Srv]:
    """RFC 2782: lowest priority first; inside a priority a running-sum weighted draw
    (zero-weight records first in the list, so they get a small chance too), repeated
    until every record is placed. A single ``.`` target: no service, an empty list."""
    recs = list(records)
    if len(recs) == 1 and _norm(recs[0].target) == "":
        return []
    recs = [r for r in recs if _norm(r.target) != ""]
    out: list[Srv] = []
    for prio in sorted({r.priority for r in recs}):
        group = sorted((r for r in recs if r.priority == prio), key=lambda r: r.weight)  # weight 0 first
        while group:
            total = sum(r.weight for r in group)
            if total == 0:
                out.extend(group)
                break
            pick = rand() * total
            running = 0
            chosen = group[-1]
            for r in group:
                running += r.weight
                if running > pick:
                    chosen = r
                    break
            out.append(chosen)
            group.remove(chosen)
    return out


def fails_over(status: int) -> bool:
    """Whether a final response (or a local 408 for a timeout) sends the request on to
    the next target: RFC 3263 §4.3 names a timeout and 503; a transport error is the
    caller's (no response at all)."""
    return status in FAILOVER_STATUSES


@dataclass
class _SrvStep:
    transport: Transport
    name: str
    records: list[Srv] | None = None  # None: not answered yet


class Resolution:
    """The lookups for one URI. Ask :meth:`next_query`, do it (through :class:`DnsCache`),
    :meth:`feed` the records (an empty list for NXDOMAIN/no data/failure), until
    :meth:`next_query` is None; then :attr:`targets` is the failover order.

    ``transports``: those the caller may use, best first when nothing else decides
    (a trunk's configured ``transport`` alone: NAPTR then only chooses the names).
    ``address_types``: A, AAAA or both, by the address family the caller can reach."""

    def __init__(self, uri: SipUri, transports: Sequence[Transport] = ("UDP", "TCP", "TLS"), *,
                 address_types: Sequence[Literal["A", "AAAA"]] = ("A",),
                 rand: Callable[[], float] = random.random) -> None:
        self.uri = uri
        self.host = uri.host.strip("[]")
        self.secure = uri.scheme == "sips"
        allowed: list[Transport] = [t for t in transports if not self.secure or t == "TLS"]
        param = uri.params.get("transport")
        if param:
            want = param.upper()
            want = "TLS" if self.secure and want == "TCP" else want
            allowed = [t for t in allowed if t == want]
        if not allowed:
            raise ValueError(f"{uri.serialize()}: no transport voxd may use ({', '.join(transports)})")
        self.transports = allowed
        self.address_types = tuple(address_types)
        self._rand = rand
        self.targets: list[Target] = []
        self._naptr_done = False
        self._srv: list[_SrvStep] = []
        self._srv_started = False
        # address lookups still to do: (name, port, transport), and answers so far
        self._hosts: list[tuple[str, int, Transport]] = []
        self._addresses: dict[tuple[str, str], list[str] | None] = {}
        if is_ip(self.host):
            t = self.transports[0]
            self.targets = [Target(self.host, uri.port or DEFAULT_PORT[t], t, self.host)]
            self._naptr_done = self._srv_started = True
        elif uri.port is not None or _norm(self.host) == "localhost" or _norm(self.host).endswith(".localhost"):
            t = self.transports[0]  # explicit port: A/AAAA only (localhost: never asked of DNS, RFC 6761)
            self._naptr_done = self._srv_started = True
            self._hosts = [(_norm(self.host), uri.port or DEFAULT_PORT[t], t)]
        elif param:
            self._naptr_done = True

    # -- the questions --------------------------------------------------------------
    def next_query(self) -> Query | None:
        if not self._naptr_done:
            return Query(_norm(self.host), "NAPTR")
        if not self._srv_started:
            self._srv_started = True
            self._srv = [_SrvStep(t, f"{SRV_PREFIX[t]}.{_norm(self.host)}") for t in self.transports]
        for step in self._srv:
            if step.records is None:
                return Query(step.name, "SRV")
        if not self._hosts and self._srv and not any(step.records for step in self._srv):
            t = self.transports[0]  # no SRV at all: the host itself (§4.2)
            self._hosts = [(_norm(self.host), DEFAULT_PORT[t], t)]
            self._srv = []
        for name, _, _ in self._hosts:
            for rtype in self.address_types:
                if (name, rtype) not in self._addresses:
                    return Query(name, rtype)
        self._build()
        return None

    def feed(self, query: Query, records: Sequence[Record]) -> None:
        if query.rtype == "NAPTR":
            self._naptr_done = True
            found = order_naptr((r for r in records if isinstance(r, Naptr)), self.transports, secure=self.secure)
            if found:
                self._srv_started = True
                self._srv = [_SrvStep(t, name) for t, name in found]
        elif query.rtype == "SRV":
            for step in self._srv:
                if step.name == query.name and step.records is None:
                    ordered = order_srv([r for r in records if isinstance(r, Srv)], self._rand)
                    step.records = ordered
                    for r in ordered:
                        self._hosts.append((_norm(r.target), r.port, step.transport))
                    break
        else:
            self._addresses[(query.name, query.rtype)] = [r for r in records if isinstance(r, str)]

    def _build(self) -> None:
        if self.targets:
            return
        seen: set[tuple[str, int, str]] = set()
        for name, port, transport in self._hosts:
            for rtype in self.address_types:
                for address in self._addresses.get((name, rtype)) or []:
                    key = (address, port, transport)
                    if key not in seen:
                        seen.add(key)
                        self.targets.append(Target(address, port, transport, name))


@dataclass
class _Entry:
    records: list[Record]
    expires_at: float


@dataclass
class DnsCache:
    """Answers kept for their TTL (capped at a day; empty answers for NEGATIVE_TTL_S)."""

    entries: dict[Query, _Entry] = field(default_factory=dict)
    max_entries: int = 4096

    def get(self, query: Query, now: float) -> list[Record] | None:
        e = self.entries.get(query)
        if e is None:
            return None
        if now >= e.expires_at:
            del self.entries[query]
            return None
        return e.records

    def put(self, query: Query, records: Sequence[Record], ttl: float | None, now: float) -> None:
        if ttl is None:
            ttl = NEGATIVE_TTL_S if not records else 0.0
        ttl = min(float(ttl), MAX_TTL_S)
        if ttl <= 0:
            return
        if len(self.entries) >= self.max_entries:
            for q in [q for q, e in self.entries.items() if now >= e.expires_at] or list(self.entries)[:1]:
                del self.entries[q]
        self.entries[query] = _Entry(list(records), now + ttl)


@dataclass
class Failover:
    """The targets of one request, tried in turn: :meth:`next` after a timeout, a 503
    or a transport error; None when none is left."""

    targets: list[Target]
    server_name: str = ""  # the configured host name (what TLS verifies), not a target's
    index: int = 0
    tried: list[tuple[Target, str]] = field(default_factory=list)  # (target, why it failed)

    @property
    def current(self) -> Target | None:
        return self.targets[self.index] if self.index < len(self.targets) else None

    def next(self, why: str) -> Target | None:
        cur = self.current
        if cur is not None:
            self.tried.append((cur, why))
            self.index += 1
        return self.current

    def summary(self) -> str:
        return "; ".join(f"{t.address}:{t.port}/{t.transport.lower()} {why}" for t, why in self.tried)
