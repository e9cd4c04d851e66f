"""The local model's process supervision with a fake worker (same pipe protocol, no
model): restart with backoff after a crash, a bounded wait for a busy slot, cancel on
barge-in, health for /readyz."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from voxd.config.local_llm import LocalLLMConfig
from voxd.providers.base import ProviderError
from voxd.providers.llm.local.supervisor import ModelProcess, Runtime, Stats

FAKE = Path(__file__).with_name("fake_llm_worker.py")


@pytest.fixture(autouse=True)
def fake_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ModelProcess, "command", lambda self: [sys.executable, str(FAKE)])


def settings(**kw: object) -> LocalLLMConfig:
    return LocalLLMConfig(restart_backoff_s=(0.05, 0.2), queue_timeout_s=0.3, **kw)  # type: ignore[arg-type]


async def until(cond: Callable[[], bool], within_s: float = 10.0) -> None:
    for _ in range(int(within_s / 0.02)):
        if cond():
            return
        await asyncio.sleep(0.02)


async def collect(proc: ModelProcess, prompt: str, stats: Stats | None = None) -> str:
    return "".join([p async for p in proc.complete(prompt, None, 64, stats=stats)])


async def test_reply_streams_and_reports_usage() -> None:
    rt = Runtime("fake", Path("/nonexistent.gguf"), settings())
    rt.start()
    try:
        assert await rt.wait_ready(10)
        stats = Stats()
        async with rt.slot() as proc:
            text = await collect(proc, 'REPLY:{"say": "hello"}', stats)
        assert text == '{"say": "hello"}' and stats.completion_tokens == len(text)
        assert rt.health()["ready"] and rt.health()["slots"][0]["state"] == "ready"
    finally:
        await rt.stop()


async def test_crash_fails_the_request_then_restarts_with_backoff() -> None:
    rt = Runtime("fake", Path("/x.gguf"), settings())
    rt.start()
    try:
        assert await rt.wait_ready(10)
        proc = rt.procs[0]
        first_pid = proc.pid
        with pytest.raises(ProviderError) as e:
            await collect(proc, "CRASH")
        assert e.value.retryable
        await until(lambda: proc.state == "ready" and proc.pid != first_pid)
        assert proc.state == "ready" and proc.pid != first_pid and proc.restarts == 1
        assert await collect(proc, "REPLY:again") == "again"
    finally:
        await rt.stop()


async def test_busy_slot_refuses_after_the_queue_timeout() -> None:
    rt = Runtime("fake", Path("/x.gguf"), settings())
    rt.start()
    try:
        assert await rt.wait_ready(10)
        async with rt.slot():
            t0 = time.monotonic()
            with pytest.raises(ProviderError, match="busy"):
                async with rt.slot():
                    pass
            assert 0.25 <= time.monotonic() - t0 < 2
        async with rt.slot():  # freed again
            pass
    finally:
        await rt.stop()


async def test_closing_the_stream_cancels_generation_at_once() -> None:
    rt = Runtime("fake", Path("/x.gguf"), settings())
    rt.start()
    try:
        assert await rt.wait_ready(10)
        proc = rt.procs[0]
        gen = proc.complete("REPLY:" + "x" * 500, None, 600)  # 10 s of output at 20 ms a piece
        assert await gen.__anext__() == "x"
        await gen.aclose()  # barge-in: the session cancels the reply task
        t0 = time.monotonic()
        assert await collect(proc, "REPLY:next") == "next"  # the worker stopped the old one
        assert time.monotonic() - t0 < 2
    finally:
        await rt.stop()


async def test_a_worker_that_cannot_start_is_restarting_not_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_WORKER_FAIL_START", "1")
    rt = Runtime("fake", Path("/x.gguf"), settings())
    rt.start()
    try:
        await until(lambda: rt.procs[0].restarts >= 2)
        assert rt.procs[0].restarts >= 2 and not rt.health()["ready"]
        assert rt.procs[0].state in ("starting", "restarting")
        with pytest.raises(ProviderError):
            async with rt.slot():
                pass
    finally:
        await rt.stop()
