"""RFC 3263 server location, sans-IO: the questions asked, SRV ordering (RFC 2782),
the failover order and the TTL cache."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from voxd.proto.sip.locate import (
    DnsCache,
    Failover,
    Naptr,
    Query,
    Record,
    Resolution,
    Srv,
    Target,
    fails_over,
    order_naptr,
    order_srv,
)
from voxd.proto.sip.uri import SipUri


def run(res: Resolution, zone: dict[Query, list[Record]]) -> list[Query]:
    asked: list[Query] = []
    while (q := res.next_query()) is not None:
        asked.append(q)
        res.feed(q, zone.get(q, []))
    return asked


def test_ip_host_needs_no_lookup():
    res = Resolution(SipUri.parse("sip:192.0.2.7"), ("TCP",))
    assert run(res, {}) == []
    assert res.targets == [Target("192.0.2.7", 5060, "TCP", "192.0.2.7")]
    res = Resolution(SipUri.parse("sips:[2001:db8::1]:5071"), ("UDP", "TLS"))
    assert run(res, {}) == []
    assert res.targets[0].addr == ("2001:db8::1", 5071) and res.targets[0].transport == "TLS"


def test_explicit_port_skips_naptr_and_srv():
    res = Resolution(SipUri.parse("sip:carrier.example:5070"), ("UDP",), address_types=("A", "AAAA"))
    asked = run(res, {Query("carrier.example", "A"): ["192.0.2.1", "192.0.2.2"],
                      Query("carrier.example", "AAAA"): ["2001:db8::5"]})
    assert asked == [Query("carrier.example", "A"), Query("carrier.example", "AAAA")]
    assert [t.addr for t in res.targets] == [("192.0.2.1", 5070), ("192.0.2.2", 5070), ("2001:db8::5", 5070)]


def test_localhost_is_not_asked_of_srv():
    res = Resolution(SipUri.parse("sip:localhost"), ("UDP",))
    assert run(res, {Query("localhost", "A"): ["127.0.0.1"]}) == [Query("localhost", "A")]
    assert res.targets == [Target("127.0.0.1", 5060, "UDP", "localhost")]


def test_naptr_then_srv_then_a():
    zone: dict[Query, list[Record]] = {
        Query("carrier.example", "NAPTR"): [
            Naptr(20, 10, "s", "SIP+D2U", "_sip._udp.carrier.example."),
            Naptr(10, 10, "s", "SIP+D2T", "_sip._tcp.carrier.example."),
            Naptr(5, 10, "u", "SIP+D2T", "!^.*$!sip:x@y!"),  # not an SRV step
            Naptr(1, 1, "s", "SIP+D2W", "_sip._ws.carrier.example."),  # a service voxd lacks
        ],
        Query("_sip._tcp.carrier.example", "SRV"): [Srv(10, 0, 5090, "b.carrier.example.")],
        Query("_sip._udp.carrier.example", "SRV"): [Srv(10, 0, 5080, "a.carrier.example.")],
        Query("a.carrier.example", "A"): ["192.0.2.10"],
        Query("b.carrier.example", "A"): ["192.0.2.20"],
    }
    res = Resolution(SipUri.parse("sip:carrier.example"), ("UDP", "TCP"))
    asked = run(res, zone)
    assert asked[0] == Query("carrier.example", "NAPTR")
    assert [(t.address, t.port, t.transport) for t in res.targets] == [
        ("192.0.2.20", 5090, "TCP"), ("192.0.2.10", 5080, "UDP")]
    # only UDP allowed (a trunk's transport: udp): the TCP record is skipped
    res = Resolution(SipUri.parse("sip:carrier.example"), ("UDP",))
    run(res, zone)
    assert [t.transport for t in res.targets] == ["UDP"]


def test_no_naptr_falls_back_to_srv_per_transport_then_host():
    res = Resolution(SipUri.parse("sip:carrier.example"), ("TLS", "UDP"))
    zone: dict[Query, list[Record]] = {Query("_sip._udp.carrier.example", "SRV"): [Srv(1, 1, 5999, "s.carrier.example")],
                                       Query("s.carrier.example", "A"): ["192.0.2.3"]}
    asked = run(res, zone)
    assert asked[:3] == [Query("carrier.example", "NAPTR"), Query("_sips._tcp.carrier.example", "SRV"),
                         Query("_sip._udp.carrier.example", "SRV")]
    assert res.targets == [Target("192.0.2.3", 5999, "UDP", "s.carrier.example")]
    res = Resolution(SipUri.parse("sip:carrier.example"), ("TLS",))
    run(res, {Query("carrier.example", "A"): ["192.0.2.4"]})
    assert res.targets == [Target("192.0.2.4", 5061, "TLS", "carrier.example")]


def test_transport_param_skips_naptr_and_sips_wants_tls():
    res = Resolution(SipUri.parse("sip:carrier.example;transport=tcp"), ("UDP", "TCP"))
    assert run(res, {})[0] == Query("_sip._tcp.carrier.example", "SRV")
    zone: dict[Query, list[Record]] = {Query("carrier.example", "NAPTR"): [
        Naptr(1, 1, "s", "SIP+D2U", "_sip._udp.carrier.example"),
        Naptr(2, 1, "s", "SIPS+D2T", "_sips._tcp.carrier.example")]}
    assert order_naptr(zone[Query("carrier.example", "NAPTR")], ("UDP", "TLS"), secure=True) == [
        ("TLS", "_sips._tcp.carrier.example")]
    with pytest.raises(ValueError):
        Resolution(SipUri.parse("sips:carrier.example"), ("UDP",))


def test_srv_priority_first_and_dot_means_no_service():
    recs = [Srv(20, 100, 1, "c."), Srv(10, 0, 1, "a."), Srv(10, 0, 1, "b.")]
    assert [r.target for r in order_srv(recs)][-1] == "c."
    assert {r.target for r in order_srv(recs)[:2]} == {"a.", "b."}
    assert order_srv([Srv(0, 0, 0, ".")]) == []


def test_srv_weights_share_first_place_in_proportion():
    rng = random.Random(7)
    recs = [Srv(10, 60, 5060, "a."), Srv(10, 30, 5060, "b."), Srv(10, 10, 5060, "c."), Srv(10, 0, 5060, "z.")]
    first = Counter(order_srv(recs, rng.random)[0].target for _ in range(20000))
    assert abs(first["a."] / 20000 - 0.6) < 0.02
    assert abs(first["b."] / 20000 - 0.3) < 0.02
    assert abs(first["c."] / 20000 - 0.1) < 0.02
    assert first["z."] == 0  # weight 0: only once heavier ones are placed
    assert all(len(order_srv(recs, rng.random)) == 4 for _ in range(100))


def test_failover_order_and_statuses():
    t = [Target("192.0.2.1", 5060, "UDP"), Target("192.0.2.2", 5060, "UDP")]
    f = Failover(t)
    assert f.current == t[0]
    assert f.next("503") == t[1]
    assert f.next("timeout") is None and f.current is None
    assert f.summary() == "192.0.2.1:5060/udp 503; 192.0.2.2:5060/udp timeout"
    assert fails_over(503) and fails_over(408)
    assert not fails_over(486) and not fails_over(404) and not fails_over(200)


def test_cache_honours_ttl():
    c = DnsCache()
    q = Query("carrier.example", "A")
    c.put(q, ["192.0.2.1"], 60, now=100.0)
    assert c.get(q, 159.9) == ["192.0.2.1"]
    assert c.get(q, 160.0) is None
    c.put(q, [], None, now=0.0)  # negative answer: cached briefly
    assert c.get(q, 29.0) == [] and c.get(q, 31.0) is None
    c.put(q, ["192.0.2.1"], 0, now=0.0)  # TTL 0: not cached
    assert c.get(q, 0.0) is None
    small = DnsCache(max_entries=2)
    for i in range(5):
        small.put(Query(f"h{i}", "A"), ["x"], 60, now=0.0)
    assert len(small.entries) == 2
