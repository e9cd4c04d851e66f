"""One policy for every request voxd sends on someone's behalf: webhooks, HTTP functions,
built-in tools (weather), the hosted engines' ``base_url`` and single sign-on (an
organisation's OpenID Connect provider: discovery, keys, token endpoint).

A destination passes when its URL is plain (http/https/ws/wss, a host, no user name or
password, an address literal only in canonical form) and every address its host resolves
to is a public unicast address, or is covered by an operator's allow rule
(``egress.allow`` in voxd.yaml: a LAN CRM, a local LLM server). The check looks through
the forms that hide an address: IPv4-mapped (``::ffff:127.0.0.1``), IPv4-compatible,
NAT64 (``64:ff9b::/96``), 6to4 (``2002::/16``), and the integer, hex and octal IPv4
spellings ``2130706433``, ``0x7f000001``, ``0177.0.0.1`` and ``127.1``.

Clients connect to the address that was checked, never to a second resolution of the name
(``voxd.core.egress_http`` does that for aiohttp, httpx and websockets), so a DNS answer
that changes between the check and the connection cannot swap in 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

from yarl import URL

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolve = Callable[[str, int], Awaitable[list[str]]]

USES = ("webhooks", "functions", "providers", "tools", "sso")
SCHEMES = {"http": 80, "https": 443, "ws": 80, "wss": 443}

NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
SHARED = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598)
_NUMERIC_LABEL = re.compile(r"^(0[xX][0-9a-fA-F]*|[0-9]+)$")
_BAD_AUTHORITY = re.compile(r"[\\\s\x00-\x1f\x7f]")


class EgressRefused(OSError):
    """The destination is not one voxd may send this request to. The message says why
    and what the operator can set to allow it."""


def embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 address carries, and the form it uses."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, "IPv4-mapped"
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "NAT64"
    if ip.sixtofour is not None:
        return ip.sixtofour, "6to4"
    if ip in IPV4_COMPATIBLE and int(ip) > 1:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "IPv4-compatible"
    return None


def non_public(ip: IP) -> str | None:
    """Why ``ip`` is not a public unicast address (e.g. 'loopback'), or None when it is."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        inner = embedded_ipv4(ip)
        if inner is not None:
            why = non_public(inner[0])
            return f"{why} ({inner[1]} {inner[0]})" if why else None
        if ip in NAT64_LOCAL:
            return "local-use NAT64"
        if ip.is_site_local:
            return "site-local"
    checks: tuple[tuple[bool, str], ...] = (
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"),
        (isinstance(ip, ipaddress.IPv4Address) and ip in SHARED, "shared (carrier NAT)"),
        (ip.is_private, "private"),
        (ip.is_reserved, "reserved"),
        (not ip.is_global, "not globally routable"),
    )
    for hit, why in checks:
        if hit:
            return why
    return None


def parse_address(host: str) -> tuple[IP, bool] | None:
    """An address literal in ``host`` and whether it was written canonically; None for a
    name. Integer, hex, octal and short IPv4 forms (which resolvers accept) count as
    literals written non-canonically."""
    h = host.strip("[]").split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(h)
    except ValueError:
        pass
    else:
        return ip, True
    labels = h.split(".")
    if labels and labels[-1] == "":
        labels = labels[:-1]  # a trailing dot
    if not labels or len(labels) > 4 or not all(_NUMERIC_LABEL.match(x) for x in labels):
        return None
    try:
        packed = socket.inet_aton(".".join(labels))
    except OSError:
        return None
    return ipaddress.IPv4Address(packed), False


def _effective(ip: IP) -> IP:
    if isinstance(ip, ipaddress.IPv6Address):
        inner = embedded_ipv4(ip)
        if inner is not None:
            return inner[0]
    return ip


@dataclass(frozen=True)
class AllowRule:
    """An operator's exception: non-public destinations matching every given part.
    ``hosts`` are names (``crm.office.lan``, ``*.office.lan``); ``networks`` the addresses
    they may resolve to (or that may be used directly); empty ``ports`` / ``uses``: any."""

    hosts: tuple[str, ...] = ()
    networks: tuple[Network, ...] = ()
    ports: tuple[int, ...] = ()
    uses: tuple[str, ...] = ()

    def matches(self, use: str, host: str, ip: IP | None, port: int) -> bool:
        if not (self.hosts or self.networks):
            return False
        if self.uses and use not in self.uses:
            return False
        if self.ports and port not in self.ports:
            return False
        if self.hosts and not any(fnmatchcase(host, p.lower().rstrip(".")) for p in self.hosts):
            return False
        if self.networks:
            if ip is None:
                return False
            eff = _effective(ip)
            return any(eff.version == n.version and eff in n for n in self.networks)
        return True

    def covers_host(self, use: str, host: str, port: int) -> bool:
        """Could this rule allow ``host`` whatever it resolves to (a name-only rule)?"""
        return bool(self.hosts) and not self.networks and self.matches(use, host, None, port)


@dataclass(frozen=True)
class Target:
    """A URL's destination after the static checks."""

    scheme: str
    host: str  # lower case, no trailing dot, IPv6 without brackets
    port: int
    address: IP | None  # the literal, when the host is one

    @property
    def secure(self) -> bool:
        return self.scheme in ("https", "wss")


async def system_resolve(host: str, port: int) -> list[str]:
    """The addresses getaddrinfo gives for ``host`` (what /etc/hosts and DNS say)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[str] = []
    for info in infos:
        addr = str(info[4][0])
        if addr not in out:
            out.append(addr)
    return out


@dataclass(frozen=True)
class EgressPolicy:
    allow: tuple[AllowRule, ...] = ()
    private_ok: frozenset[str] = frozenset()  # uses that may reach any address (webhooks.allow_private_destinations)
    max_redirects: int = 0  # hops followed, each checked again like the first request
    resolver: Resolve | None = field(default=None, compare=False, repr=False)  # injected by tests

    @classmethod
    def open_to(cls, *networks: str, uses: Iterable[str] = ()) -> EgressPolicy:
        """A policy allowing these networks too (tests, local servers)."""
        rule = AllowRule(networks=tuple(ipaddress.ip_network(n) for n in networks), uses=tuple(uses))
        return cls(allow=(rule,))

    def with_resolver(self, resolver: Resolve) -> EgressPolicy:
        return EgressPolicy(self.allow, self.private_ok, self.max_redirects, resolver)

    # -- static checks (no DNS)
    def target(self, url: str, use: str) -> Target:
        """Parse and check ``url`` without resolving it; a literal address is checked here."""
        t = parse_target(url)
        if use in self.private_ok:
            return t
        if t.address is not None:
            self.check_address(use, t.host, t.address, t.port)
        elif (t.host == "localhost" or t.host.endswith(".localhost")) and not self._name_allowed(use, t.host, t.port):
            raise EgressRefused(f"{t.host} names this machine; {self._hint(use)}")
        return t

    def url_problem(self, url: str, use: str) -> str | None:
        """Why ``url`` is refused by the checks that need no DNS, or None (for validation)."""
        try:
            self.target(url, use)
        except EgressRefused as e:
            return str(e)
        return None

    def _name_allowed(self, use: str, host: str, port: int) -> bool:
        return any(r.covers_host(use, host, port) for r in self.allow)

    def _hint(self, use: str) -> str:
        extra = " or webhooks.allow_private_destinations" if use == "webhooks" else ""
        return f"add an egress.allow rule in voxd.yaml{extra} to allow it"

    def check_address(self, use: str, host: str, ip: IP, port: int) -> None:
        if use in self.private_ok:
            return
        why = non_public(ip)
        if why is None or any(r.matches(use, host, ip, port) for r in self.allow):
            return
        named = "" if host == str(ip) else f"{host} resolves to "
        raise EgressRefused(f"{named}{ip}, a {why} address; {self._hint(use)}")

    # -- resolution
    async def addresses(self, use: str, host: str, port: int) -> list[str]:
        """Resolve ``host`` and check every address; refused if any one fails (a name that
        also points at loopback is not used at all). Returns the addresses to connect to."""
        host = host.lower().rstrip(".")
        literal = parse_address(host)
        if literal is not None:
            if not literal[1]:
                raise EgressRefused(f"{host}: write IPv4 addresses as four decimal numbers")
            self.check_address(use, host, literal[0], port)
            return [str(literal[0])]
        resolve = self.resolver or system_resolve
        try:
            found = await resolve(host, port)
        except OSError as e:
            raise OSError(f"cannot resolve {host}: {e.strerror or e}") from None
        if not found:
            raise OSError(f"cannot resolve {host}: no addresses")
        for addr in found:
            self.check_address(use, host, ipaddress.ip_address(addr.split("%", 1)[0]), port)
        return found

    async def pin(self, url: str, use: str) -> tuple[Target, str]:
        """The checked destination of ``url`` and the one address to connect to."""
        t = self.target(url, use)
        return t, (await self.addresses(use, t.host, t.port))[0]


def parse_target(url: str) -> Target:
    """Scheme, host and port of ``url``, refusing what no outbound request should carry."""
    if not isinstance(url, str) or _BAD_AUTHORITY.search(url.split("/", 3)[2] if url.count("/") >= 2 else url):
        raise EgressRefused("is not a valid URL")
    try:
        u = URL(url)
        split = urlsplit(url)
        split_host = split.hostname
    except ValueError:
        raise EgressRefused("is not a valid URL") from None
    scheme = (u.scheme or "").lower()
    if scheme not in SCHEMES or not u.host:
        raise EgressRefused("must be an http(s):// or ws(s):// URL with a host")
    if u.user is not None or u.password is not None or "@" in split.netloc:
        raise EgressRefused("must not carry a user name or password (use a header or a declared secret)")
    host = u.host.lower().rstrip(".")
    if not _same_host(split_host or "", host):
        raise EgressRefused("is ambiguous (URL parsers disagree on its host)")
    try:
        port = u.port or SCHEMES[scheme]
    except ValueError:
        raise EgressRefused("has an invalid port") from None
    literal = parse_address(host)
    if literal is not None and not literal[1]:
        raise EgressRefused(f"{host}: write IPv4 addresses as four decimal numbers")
    return Target(scheme, host, port, literal[0] if literal else None)


def _same_host(a: str, b: str) -> bool:
    a, b = (x.lower().rstrip(".").split("%", 1)[0] for x in (a, b))
    if a == b:
        return True
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False


def default_policy() -> EgressPolicy:
    """Public destinations only: what voxd does when the operator has allowed nothing."""
    return EgressPolicy()


def refusal(exc: BaseException) -> EgressRefused | None:
    """The EgressRefused inside an exception a client library wrapped it in, if any."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, EgressRefused):
            return e
        stack += [getattr(e, "os_error", None), e.__cause__, e.__context__]
    return None
