"""DNS lookups for locating SIP servers (RFC 3263): the questions come from the sans-IO
:class:`voxd.proto.sip.locate.Resolution`, the answers from ``dnspython``'s async
resolver, kept in a :class:`~voxd.proto.sip.locate.DnsCache` for their TTL.

``sip.dns.nameservers`` names the servers asked (host:port); without it NAPTR and SRV go
to the system's servers (/etc/resolv.conf) and A/AAAA through ``getaddrinfo``, so
/etc/hosts keeps working (those answers carry no TTL and are not cached).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Sequence
from typing import Literal

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

from voxd.config.sip import SipDnsConfig, parse_hostport
from voxd.proto.sip.locate import DnsCache, Naptr, Query, Record, Resolution, Srv, Target, Transport
from voxd.proto.sip.uri import SipUri

log = logging.getLogger("voxd.sip.dns")


class SipResolver:
    def __init__(self, cfg: SipDnsConfig) -> None:
        self.cfg = cfg
        self.cache = DnsCache()
        self._resolver: dns.asyncresolver.Resolver | None = None
        self._broken = False  # the system has no resolver configuration: NAPTR/SRV find nothing
        self.asked = 0  # questions that went to a server (the rest came from the cache)

    def configure(self, cfg: SipDnsConfig) -> None:
        if cfg != self.cfg:
            self.cfg, self._resolver, self._broken = cfg, None, False
            self.cache = DnsCache()

    def _dns(self) -> dns.asyncresolver.Resolver | None:
        if self._resolver is None and not self._broken:
            try:
                r = dns.asyncresolver.Resolver(configure=not self.cfg.nameservers)
            except dns.resolver.NoResolverConfiguration:
                log.warning("no DNS resolver configured (/etc/resolv.conf): NAPTR/SRV skipped; "
                            "set sip.dns.nameservers")
                self._broken = True
                return None
            if self.cfg.nameservers:
                r.nameservers = [dns.nameserver.Do53Nameserver(*parse_hostport(ns)) for ns in self.cfg.nameservers]
            r.lifetime = r.timeout = self.cfg.timeout_s
            self._resolver = r
        return self._resolver

    async def locate(self, uri: SipUri, transports: Sequence[Transport],
                     address_types: Sequence[Literal["A", "AAAA"]] = ("A",)) -> list[Target]:
        """The targets for ``uri`` in failover order; OSError when there is none."""
        res = Resolution(uri, transports, address_types=address_types)
        while (q := res.next_query()) is not None:
            res.feed(q, await self.lookup(q))
        if not res.targets:
            raise OSError(f"cannot resolve {uri.host} (NAPTR/SRV/A)")
        return res.targets

    async def lookup(self, q: Query) -> list[Record]:
        now = time.monotonic()
        cached = self.cache.get(q, now)
        if cached is not None:
            return cached
        records, ttl = await self._ask(q)
        self.cache.put(q, records, ttl, time.monotonic())
        return records

    async def _ask(self, q: Query) -> tuple[list[Record], float | None]:
        if q.rtype in ("A", "AAAA") and not self.cfg.nameservers:
            return await self._system(q), 0.0
        r = self._dns()
        if r is None:
            return [], None
        self.asked += 1
        try:
            answer = await r.resolve(q.name + ".", q.rtype, raise_on_no_answer=False, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoNameservers, dns.exception.Timeout) as e:
            log.debug("DNS %s %s: %s", q.rtype, q.name, e)
            return [], (None if isinstance(e, dns.resolver.NXDOMAIN) else 0.0)  # failures are asked again
        except dns.exception.DNSException as e:
            log.info("DNS %s %s failed: %s", q.rtype, q.name, e)
            return [], 0.0
        if answer.rrset is None:
            return [], None
        out: list[Record] = []
        for rd in answer.rrset:
            if q.rtype == "NAPTR":
                out.append(Naptr(rd.order, rd.preference, rd.flags.decode(errors="replace"),
                                 rd.service.decode(errors="replace"), rd.replacement.to_text()))
            elif q.rtype == "SRV":
                out.append(Srv(rd.priority, rd.weight, rd.port, rd.target.to_text()))
            else:
                out.append(rd.address)
        return out, float(answer.rrset.ttl)

    @staticmethod
    async def _system(q: Query) -> list[Record]:
        family = socket.AF_INET if q.rtype == "A" else socket.AF_INET6
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(q.name, None, family=family, type=socket.SOCK_DGRAM)
        except OSError:
            return []
        seen: list[Record] = []
        for info in infos:
            address = str(info[4][0])
            if address not in seen:
                seen.append(address)
        return seen


def address_types(bind_host: str) -> tuple[Literal["A", "AAAA"], ...]:
    """The address records worth asking for, by the family our SIP socket is bound to."""
    return ("AAAA", "A") if ":" in bind_host else ("A",)
