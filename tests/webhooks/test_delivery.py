"""The outbox and the delivery worker against a real receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket

import pytest

from voxd.store.db import Database
from voxd.webhooks import events
from voxd.webhooks.delivery import ALLOW_PRIVATE_ENV, url_problem, webhook_policy
from voxd.webhooks.service import Webhooks

from .conftest import config
from .receiver import Receiver

pytestmark = pytest.mark.timeout(30)


def sample_event(n: int = 0) -> events.Message:
    return events.message("webhook.test", events.TestInfo(webhook_id=f"wh_{n}"))


async def _settled(hooks: Webhooks, within: float = 10.0) -> None:
    await hooks.outbox.flush()
    async with asyncio.timeout(within):
        while True:
            if not (await hooks.store.counts()).get("pending"):
                return
            await asyncio.sleep(0.02)


async def test_retry_until_success_same_id_backoff_as_configured(hooks: Webhooks, receiver: Receiver) -> None:
    ep = await hooks.create_endpoint("test", url=receiver.url)
    receiver.secrets = [ep.secret]
    receiver.respond = lambda n: 503 if n <= 3 else 204
    hooks.outbox.publish([sample_event()])
    await receiver.wait_for(lambda r: len(r.accepted) == 1)
    await _settled(hooks)

    assert len(receiver.received) == 4
    assert len({r.msg_id for r in receiver.received}) == 1
    assert all(r.verified_by == [0] and r.svix_ok for r in receiver.received)
    assert len(receiver.accepted) == 1
    page, _ = await hooks.store.list_deliveries(ep.id)
    assert len(page) == 1 and page[0]["status"] == "succeeded" and page[0]["attempts"] == 4
    log = await hooks.store.attempts(page[0]["id"])
    assert [a["status_code"] for a in log] == [503, 503, 503, 204]
    assert [a["attempt"] for a in log] == [1, 2, 3, 4]
    assert log[0]["response_excerpt"].startswith("nope") and len(log[0]["response_excerpt"]) <= 2048
    gaps = [b.at - a.at for a, b in zip(receiver.received, receiver.received[1:], strict=False)]
    for gap, planned in zip(gaps, [0.3, 0.6, 0.9], strict=True):
        assert planned * 0.9 - 0.02 <= gap <= planned * 1.1 + 0.3, (gaps, planned)
    fresh = await hooks.store.get_endpoint(ep.id)
    assert fresh is not None and fresh.health == "healthy" and fresh.consecutive_failures == 0


async def test_gives_up_after_the_schedule_and_marks_failing(db: Database, receiver: Receiver) -> None:
    hooks = Webhooks(db, config(retry_schedule_s=[0.05, 0.05], failing_after=3))
    await hooks.start()
    try:
        ep = await hooks.create_endpoint("test", url=receiver.url)
        receiver.secrets = [ep.secret]
        receiver.respond = lambda n: 500
        hooks.outbox.publish([sample_event()])
        await _settled(hooks)
        page, _ = await hooks.store.list_deliveries(ep.id)
        assert page[0]["status"] == "failed" and page[0]["attempts"] == 3
        assert page[0]["last_status_code"] == 500
        fresh = await hooks.store.get_endpoint(ep.id)
        assert fresh is not None and fresh.health == "failing" and fresh.enabled
    finally:
        await hooks.stop()


async def test_410_disables_the_endpoint(hooks: Webhooks, receiver: Receiver) -> None:
    ep = await hooks.create_endpoint("test", url=receiver.url)
    receiver.secrets = [ep.secret]
    receiver.respond = lambda n: 410
    hooks.outbox.publish([sample_event()])
    await receiver.wait_for(lambda r: len(r.received) == 1)
    await _settled(hooks)
    fresh = await hooks.store.get_endpoint(ep.id)
    assert fresh is not None and not fresh.enabled and fresh.health == "disabled"
    assert "410" in (fresh.disabled_reason or "")
    hooks.outbox.publish([sample_event(2)])
    await hooks.outbox.flush()
    await asyncio.sleep(0.3)
    assert len(receiver.received) == 1  # no delivery is even created for a disabled endpoint
    page, _ = await hooks.store.list_deliveries(ep.id)
    assert [d["status"] for d in page] == ["failed"]


async def test_private_destinations_refused_without_the_flag(db: Database, receiver: Receiver,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    strict, open_ = webhook_policy(config(allow_private_destinations=False)), webhook_policy(config())
    assert url_problem("http://127.0.0.1:8080/x", strict)
    assert url_problem("http://[::1]/x", strict)
    assert url_problem("http://169.254.169.254/latest/meta-data", strict)
    assert url_problem("http://10.1.2.3/x", strict)
    assert url_problem("http://[::ffff:192.168.1.1]/x", strict)
    assert url_problem("http://localhost:9/x", strict)
    assert url_problem("ftp://example.com/x", strict)
    assert url_problem("wss://example.com/x", strict)
    assert url_problem("https://hooks.example.com/x", strict) is None
    assert url_problem("http://127.0.0.1:8080/x", open_) is None

    hooks = Webhooks(db, config(allow_private_destinations=False))
    await hooks.start()
    try:
        ep = await hooks.create_endpoint("test", url=receiver.url)  # stored, but never reached
        _, status, attempt = await hooks.test(ep)
        assert status == "failed" and attempt.status_code is None
        assert attempt.error is not None and attempt.error.startswith("destination refused")
        # a name that resolves to a non-public address is refused at connect time
        host = socket.gethostname()
        try:
            socket.getaddrinfo(host, 80)
        except OSError:
            host = ""
        if host:
            named = await hooks.create_endpoint("test", url=f"http://{host}:{receiver.port}/hooks")
            _, status, attempt = await hooks.test(named)
            assert status == "failed" and "destination refused" in (attempt.error or ""), attempt
        assert receiver.received == []
        monkeypatch.setenv(ALLOW_PRIVATE_ENV, "1")
        allowed = Webhooks(db, config(allow_private_destinations=False))
        receiver.secrets = [ep.secret]
        _, status, attempt = await allowed.test(ep)
        assert status == "succeeded" and attempt.status_code == 200
    finally:
        await hooks.stop()


async def test_rotation_overlap_signs_with_both_secrets(hooks: Webhooks, receiver: Receiver) -> None:
    ep = await hooks.create_endpoint("test", url=receiver.url)
    old = ep.secret
    rotated = await hooks.rotate_secret(ep.id, overlap_s=0.5)
    assert rotated is not None and rotated.secret != old
    receiver.secrets = [old, rotated.secret]
    _, status, _ = await hooks.test(rotated)
    assert status == "succeeded"
    first = receiver.received[-1]
    assert len(first.signatures) == 2 and all(s.startswith("v1,") for s in first.signatures)
    assert first.verified_by == [0, 1]
    await asyncio.sleep(0.6)
    _, status, _ = await hooks.test(rotated)
    assert status == "succeeded"
    assert receiver.received[-1].verified_by == [1] and len(receiver.received[-1].signatures) == 1


async def test_replay_keeps_the_webhook_id(hooks: Webhooks, receiver: Receiver) -> None:
    ep = await hooks.create_endpoint("test", url=receiver.url)
    receiver.secrets = [ep.secret]
    hooks.outbox.publish([sample_event()])
    await receiver.wait_for(lambda r: len(r.received) == 1)
    await _settled(hooks)
    page, _ = await hooks.store.list_deliveries(ep.id)
    new_id = await hooks.replay(ep.id, page[0]["id"])
    assert new_id is not None and new_id != page[0]["id"]
    await receiver.wait_for(lambda r: len(r.received) == 2)
    assert receiver.received[0].msg_id == receiver.received[1].msg_id
    assert receiver.received[0].body == receiver.received[1].body
    assert await hooks.replay(ep.id, "dlv_nope") is None


async def test_concurrency_per_endpoint_is_bounded(db: Database, receiver: Receiver) -> None:
    hooks = Webhooks(db, config(concurrency_per_endpoint=2))
    await hooks.start()
    try:
        ep = await hooks.create_endpoint("test", url=receiver.url)
        receiver.secrets = [ep.secret]
        receiver.delay_s = 0.15
        hooks.outbox.publish([sample_event(i) for i in range(8)])
        await receiver.wait_for(lambda r: len(r.accepted) == 8)
        assert receiver.max_in_flight == 2
    finally:
        await hooks.stop()


async def test_filters_by_event_type_and_agent(hooks: Webhooks, receiver: Receiver) -> None:
    ep = await hooks.create_endpoint("test", url=receiver.url, events=["agent.updated"], agents=["front"])
    receiver.secrets = [ep.secret]
    hooks.outbox.publish([
        events.agent_message("agent.updated", "front", "2"),
        events.agent_message("agent.updated", "back", "2"),
        events.agent_message("agent.deployed", "front", "1"),
    ])
    await receiver.wait_for(lambda r: len(r.accepted) == 1)
    await hooks.outbox.flush()
    await asyncio.sleep(0.2)
    assert [p["data"] for p in receiver.accepted.values()] == [{"agent": "front", "version": "2"}]


async def test_reloaded_settings_apply_to_the_next_attempt(db: Database, receiver: Receiver) -> None:
    """SIGHUP hands the worker a new `webhooks:` block: the private-destination rule holds even
    for a destination already reached over a pooled connection, and the retry schedule changes."""
    hooks = Webhooks(db, config(retry_schedule_s=[0.05]))
    await hooks.start()
    try:
        ep = await hooks.create_endpoint("test", url=receiver.url)
        receiver.secrets = [ep.secret]
        hooks.outbox.publish([sample_event(1)])
        await _settled(hooks)
        assert len(receiver.accepted) == 1  # the worker's pool now holds a connection to 127.0.0.1
        hooks.configure(config(allow_private_destinations=False, retry_schedule_s=[0.05]))
        hooks.outbox.publish([sample_event(2)])
        await _settled(hooks)
        page, _ = await hooks.store.list_deliveries(ep.id)
        refused = [d for d in page if d["status"] == "failed"]
        assert len(refused) == 1 and len(receiver.received) == 1
        log = await hooks.store.attempts(refused[0]["id"])
        assert all((a["error"] or "").startswith("destination refused") for a in log), log
        hooks.configure(config(retry_schedule_s=[0.05, 0.05]))
        receiver.respond = lambda n: 503
        hooks.outbox.publish([sample_event(3)])
        await _settled(hooks)
        page, _ = await hooks.store.list_deliveries(ep.id)
        last = [d for d in page if d["status"] == "failed" and d["id"] != refused[0]["id"]]
        assert len(last) == 1 and last[0]["attempts"] == 3  # 1 + the new schedule's 2 retries
    finally:
        await hooks.stop()
