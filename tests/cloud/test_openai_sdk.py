"""The `openai` engine: the official SDK against a local chat-completions SSE server."""

from __future__ import annotations

import asyncio

import pytest

from tests.cloud.fake_openai import FakeOpenAI
from tests.outbound import local_outbound
from voxd.agents.schema import LLMConfig
from voxd.providers.base import Message, ProviderError, TextDelta, ToolCallsRequested, ToolSpec, Usage
from voxd.providers.llm.openai_sdk import OpenAILLM

TOOLS = [ToolSpec("get_current_time", "time", {"type": "object", "properties": {"timezone": {"type": "string"}}}),
         ToolSpec("calculate", "math", {"type": "object", "properties": {"expression": {"type": "string"}}})]


OUT = local_outbound(test_openai="VOXD_TEST_OPENAI")  # a declared secret, named by its variable below


def llm(url: str, **kw: object) -> OpenAILLM:
    return OpenAILLM(LLMConfig(engine="openai", base_url=url, model="gpt-4o-mini", **kw), outbound=OUT)  # type: ignore[arg-type]


async def collect(m: OpenAILLM, text: str = "hi") -> list[object]:
    return [e async for e in m.stream([Message("system", "Be brief."), Message("user", text)], TOOLS)]


async def test_parallel_tool_calls_text_and_usage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXD_TEST_OPENAI", "sk-test-secret")
    fake = await FakeOpenAI([
        [("get_current_time", {"timezone": "Europe/London"}), ("calculate", {"expression": "2*21"})],
        "It is noon, and the answer is 42.",
    ]).start()
    m = llm(fake.url, api_key_env="VOXD_TEST_OPENAI", temperature=0.2)
    try:
        ev = await collect(m)
        calls = next(e for e in ev if isinstance(e, ToolCallsRequested)).calls
        assert [(c.name, c.arguments) for c in calls] == [
            ("get_current_time", {"timezone": "Europe/London"}), ("calculate", {"expression": "2*21"})]
        assert calls[0].id == "call_1_0" and Usage(20, 7) in ev
        ev2 = await collect(m)
        assert "".join(e.text for e in ev2 if isinstance(e, TextDelta)) == "It is noon, and the answer is 42."
        req = fake.requests[0]
        assert req["stream"] is True and req["stream_options"] == {"include_usage": True}
        assert req["parallel_tool_calls"] is True and req["temperature"] == 0.2 and req["model"] == "gpt-4o-mini"
        assert [t["function"]["name"] for t in req["tools"]] == ["get_current_time", "calculate"]
        assert fake.auth[0] == "Bearer sk-test-secret" and "sk-test" not in repr(m) and "sk-test" not in repr(m._key)
    finally:
        await m.aclose()
        await fake.stop()


@pytest.mark.parametrize("fault", ["429", "500"])
async def test_429_and_5xx_are_retried_before_the_first_token(fault: str) -> None:
    fake = await FakeOpenAI(["Hello there."], faults=[fault, fault]).start()
    m = llm(fake.url, max_retries=2)
    try:
        ev = await collect(m)
        assert "".join(e.text for e in ev if isinstance(e, TextDelta)) == "Hello there."
        assert fake.statuses == [int(fault), int(fault), 200]
    finally:
        await m.aclose()
        await fake.stop()


async def test_retries_exhausted_is_a_retryable_provider_error() -> None:
    fake = await FakeOpenAI(faults=["500"] * 3).start()
    m = llm(fake.url, max_retries=1)
    try:
        with pytest.raises(ProviderError) as e:
            await collect(m)
        assert e.value.retryable and "HTTP 500" in str(e.value) and len(fake.requests) == 2
    finally:
        await m.aclose()
        await fake.stop()


@pytest.mark.parametrize("fault", ["stall", "hang"])
async def test_stall_before_first_token_times_out(fault: str) -> None:
    fake = await FakeOpenAI(faults=[fault]).start()
    m = llm(fake.url, first_token_timeout_s=0.3, max_retries=0)
    try:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(ProviderError) as e:
            await collect(m)
        assert "no first token within 0.3s" in str(e.value) and loop.time() - t0 < 1.5
    finally:
        await m.aclose()
        await fake.stop()


async def test_malformed_json_mid_stream() -> None:
    fake = await FakeOpenAI(["one two three four"], faults=["garbage"]).start()
    m = llm(fake.url)
    try:
        got: list[str] = []
        with pytest.raises(ProviderError) as e:
            async for ev in m.stream([Message("user", "hi")], []):
                if isinstance(ev, TextDelta):
                    got.append(ev.text)
        assert got == ["one ", "two "] and "malformed JSON" in str(e.value)
    finally:
        await m.aclose()
        await fake.stop()


async def test_cancel_on_barge_in_closes_the_response() -> None:
    fake = await FakeOpenAI([" ".join(f"w{i}" for i in range(400))]).start()
    m = llm(fake.url)
    try:
        seen = asyncio.Event()

        async def consume() -> None:
            async for ev in m.stream([Message("user", "talk")], []):
                if isinstance(ev, TextDelta):
                    seen.set()

        task = asyncio.ensure_future(consume())
        await asyncio.wait_for(seen.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):
            if fake.disconnects:
                break
            await asyncio.sleep(0.01)
        assert fake.disconnects == 1  # the server saw the client go away mid-generation
    finally:
        await m.aclose()
        await fake.stop()


def test_key_required_for_the_public_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ProviderError) as e:
        OpenAILLM(LLMConfig(engine="openai"))
    assert "OPENAI_API_KEY" in str(e.value) and not e.value.retryable
