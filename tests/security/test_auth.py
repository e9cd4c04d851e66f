"""Finding 8 (one API-key check): /webrtc/offer checked keys outside the API pipeline, so
guessing keys there was never throttled. One check now, one failed-auth bucket."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.daemons import start_daemon, time_agent
from voxd.api.keys_cli import create_key
from voxd.app import Daemon

OFFER = {"type": "offer", "sdp": "v=0\r\n", "agent": "fakey"}


@pytest.fixture
async def daemon(tmp_path: Path) -> Daemon:
    d = await start_daemon(tmp_path, {"fakey": time_agent()}, api={"failed_auth_per_5min": 3})
    yield d  # type: ignore[misc]
    await d.stop()


async def _offer(http: aiohttp.ClientSession, d: Daemon, key: str) -> tuple[int, str]:
    async with http.post(f"http://127.0.0.1:{d.http_port}/webrtc/offer", json=OFFER,
                         headers={"Authorization": f"Bearer {key}"}) as r:
        return r.status, await r.text()


async def test_guessing_keys_at_webrtc_offer_is_throttled(daemon: Daemon) -> None:
    assert daemon.db is not None
    good = await create_key(daemon.db, "web", ["calls:write"])
    reader = await create_key(daemon.db, "read", ["calls:read"])
    async with aiohttp.ClientSession() as http:
        for guess in ("vx_live_" + "a" * 38, "vx_live_" + "b" * 38, reader):
            assert (await _offer(http, daemon, guess))[0] == 403
        status, text = await _offer(http, daemon, good)  # out of attempts: not even a good key is looked at
        assert status == 429, text
        problem: dict[str, Any] = json.loads(text)
        assert problem["type"] == "urn:voxd:problem:auth-throttled"
        # the same bucket as the control API's
        async with http.get(f"http://127.0.0.1:{daemon.http_port}/api/v1/calls",
                            headers={"Authorization": f"Bearer {good}"}) as r:
            assert r.status == 429 and (await r.json())["type"] == "urn:voxd:problem:auth-throttled"


async def test_failures_in_the_api_throttle_webrtc_too(daemon: Daemon) -> None:
    assert daemon.db is not None
    good = await create_key(daemon.db, "web", ["calls:write"])
    async with aiohttp.ClientSession() as http:
        for i in range(3):
            async with http.get(f"http://127.0.0.1:{daemon.http_port}/api/v1/calls",
                                headers={"Authorization": f"Bearer vx_live_{'c' * 37}{i}"}) as r:
                assert r.status == 401
        assert (await _offer(http, daemon, good))[0] == 429


async def test_a_revoked_or_expired_key_is_refused_at_webrtc(daemon: Daemon, tmp_path: Path) -> None:
    """The one check: what the API refuses, the offer refuses."""
    import time

    from voxd.store.keys import ApiKeyRepository

    assert daemon.db is not None
    repo = ApiKeyRepository(daemon.db)
    expired, _ = await repo.create("old", ["calls:write"], created_by="t", expires_at=time.time() - 1)
    revoked, k = await repo.create("gone", ["calls:write"], created_by="t")
    await repo.revoke(k.id)
    async with aiohttp.ClientSession() as http:
        assert (await _offer(http, daemon, expired))[0] == 403
        assert (await _offer(http, daemon, revoked))[0] == 403
