from __future__ import annotations

import re
from dataclasses import replace

import pytest

from voxd.api.deps import RateSpec
from voxd.api.ratelimit import BucketSet

from .conftest import GENEROUS, make_api

HEADER = re.compile(r'"(\w+)";r=(\d+);t=(\d+)')


@pytest.fixture
async def tight(tmp_path):
    settings = replace(GENEROUS, key_rate=RateSpec(3, 60), ip_rate=RateSpec(4, 60),
                       failed_auth_rate=RateSpec(3, 300),
                       class_rates={"read": RateSpec(1000), "write": RateSpec(2, 60)})
    api, close = await make_api(tmp_path, settings)
    yield api
    await close()


async def test_headers_and_429_per_key(tight):
    raw = await tight.key("calls:read")
    remaining = []
    for _ in range(3):
        resp = await tight.client.get("/api/v1/calls", headers=tight.auth(raw))
        assert resp.status == 200
        assert resp.headers["RateLimit-Policy"] == '"key";q=3;w=60, "read";q=1000;w=60'
        remaining.append(int(HEADER.match(resp.headers["RateLimit"])[2]))
    assert remaining == [2, 1, 0]
    resp = await tight.client.get("/api/v1/calls", headers=tight.auth(raw))
    assert resp.status == 429
    body = await resp.json()
    assert body["type"] == "urn:voxd:problem:rate-limited" and "'key'" in body["detail"]
    assert 1 <= int(resp.headers["Retry-After"]) <= 20
    assert resp.headers["RateLimit"].startswith('"key";r=0;t=')
    # another key has its own bucket
    other = await tight.key("calls:read")
    assert (await tight.client.get("/api/v1/calls", headers=tight.auth(other))).status == 200


async def test_key_own_rate_overrides_default(tight):
    raw = await tight.key("calls:read", rate_limit_per_minute=1)
    assert (await tight.client.get("/api/v1/calls", headers=tight.auth(raw))).status == 200
    resp = await tight.client.get("/api/v1/calls", headers=tight.auth(raw))
    assert resp.status == 429 and '"key";q=1;w=60' in resp.headers["RateLimit-Policy"]


async def test_endpoint_class_bucket(tight):
    raw = await tight.key("calls:write", rate_limit_per_minute=100)
    for _ in range(2):
        resp = await tight.client.post("/api/v1/calls/call_x/end", headers=tight.auth(raw))
        assert resp.status == 404
    resp = await tight.client.post("/api/v1/calls/call_x/end", headers=tight.auth(raw))
    assert resp.status == 429 and "'write'" in (await resp.json())["detail"]


async def test_unauthenticated_traffic_limited_per_ip(tight):
    for _ in range(4):
        assert (await tight.client.get("/api/v1/calls")).status == 401
    resp = await tight.client.get("/api/v1/calls")
    assert resp.status == 429 and "Retry-After" in resp.headers
    assert '"ip";q=4;w=60' in resp.headers["RateLimit-Policy"]


async def test_failed_auth_throttles_the_ip(tight):
    good = await tight.key("calls:read", rate_limit_per_minute=100)
    bad = "vx_live_" + "B" * 38
    for _ in range(3):
        assert (await tight.client.get("/api/v1/calls", headers=tight.auth(bad))).status == 401
    # now even a valid key from this address waits: guessing is throttled
    resp = await tight.client.get("/api/v1/calls", headers=tight.auth(good))
    assert resp.status == 429
    assert (await resp.json())["type"] == "urn:voxd:problem:auth-throttled"
    assert int(resp.headers["Retry-After"]) >= 1
    # a request with no credentials is not a guess: it still learns it needs a key
    resp = await tight.client.get("/api/v1/calls")
    assert resp.status == 401


def test_bucket_refills_with_time():
    now = [0.0]
    buckets = BucketSet(clock=lambda: now[0])
    spec = RateSpec(2, 10)
    assert buckets.take("k", "a", spec).allowed
    assert buckets.take("k", "a", spec).allowed
    denied = buckets.take("k", "a", spec)
    assert not denied.allowed and denied.retry_after_s == 5
    now[0] = 5.0
    assert buckets.take("k", "a", spec).allowed
    assert not buckets.take("k", "a", spec).allowed
    now[0] = 100.0
    assert buckets.take("k", "a", spec).remaining == 1


def test_bucket_set_is_bounded():
    buckets = BucketSet(max_entries=3, clock=lambda: 0.0)
    for i in range(10):
        buckets.take("ip", f"ip:{i}", RateSpec(1))
    assert len(buckets._buckets) == 3
