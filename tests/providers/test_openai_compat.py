"""The openai-compatible provider against a local server speaking the chat-completions
SSE protocol (streamed text and tool_calls deltas split across chunks)."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.outbound import LOCAL, local_outbound
from voxd.agents.schema import LLMConfig
from voxd.providers.base import Message, ProviderError, ToolCallsRequested, ToolSpec, Usage
from voxd.providers.llm.openai_compat import OpenAICompatibleLLM

ROOT = Path(__file__).parents[2]


def sse(chunks: list[dict[str, Any]]) -> bytes:
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def tool_call_chunks() -> list[dict[str, Any]]:
    return [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [
            {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_current_time", "arguments": ""}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"timez'}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": 'one": "Europe/London"}'}}]}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 9}},
    ]


def text_chunks(text: str) -> list[dict[str, Any]]:
    words = text.split(" ")
    return [{"choices": [{"index": 0, "delta": {"content": w + (" " if i < len(words) - 1 else "")}}]} for i, w in enumerate(words)]


class FakeOpenAI:
    """A chat-completions server: asks for the time tool, then answers from its result."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str | None] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.auth.append(request.headers.get("Authorization"))
        if self.mode == "500":
            return web.Response(status=500, text="boom")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if self.mode == "garbage":
            await resp.write(b"data: {not json\n\n")
            return resp
        last = body["messages"][-1]
        if last["role"] == "tool":
            spoken = json.loads(last["content"])["result"]["spoken"]
            chunks = text_chunks(f"It is {spoken} in London. Anything else?")
        else:
            chunks = tool_call_chunks()
        for c in chunks:  # really streamed, chunk by chunk
            await resp.write(b"data: " + json.dumps(c).encode() + b"\n\n")
            await asyncio.sleep(0.001)
        await resp.write(b"data: [DONE]\n\n")
        return resp


async def serve(fake: FakeOpenAI) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/v1"


async def test_streamed_tool_call_is_assembled(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeOpenAI()
    runner, url = await serve(fake)
    monkeypatch.setenv("TEST_LLM_KEY", "sk-test-secret")
    llm = OpenAICompatibleLLM(LLMConfig(engine="openai-compatible", base_url=url, model="m", api_key_secret="test_llm"),
                              outbound=local_outbound(test_llm="TEST_LLM_KEY"))
    try:
        tools = [ToolSpec("get_current_time", "time", {"type": "object", "properties": {}})]
        events = [e async for e in llm.stream([Message("user", "what time is it")], tools)]
        calls = [e for e in events if isinstance(e, ToolCallsRequested)]
        assert len(calls) == 1 and calls[0].calls[0].name == "get_current_time"
        assert calls[0].calls[0].arguments == {"timezone": "Europe/London"} and calls[0].calls[0].id == "call_1"
        assert Usage(50, 9) in events
        req = fake.requests[0]
        assert req["stream"] is True and req["tools"][0]["function"]["name"] == "get_current_time"
        assert fake.auth[0] == "Bearer sk-test-secret" and "sk-test" not in repr(llm)
    finally:
        await llm.aclose()
        await runner.cleanup()


@pytest.mark.parametrize("mode", ["500", "garbage"])
async def test_server_faults_become_provider_errors(mode: str) -> None:
    runner, url = await serve(FakeOpenAI(mode))
    llm = OpenAICompatibleLLM(LLMConfig(engine="openai-compatible", base_url=url), outbound=LOCAL)
    try:
        with pytest.raises(ProviderError) as e:
            [ev async for ev in llm.stream([Message("user", "hi")], [])]
        assert ("HTTP 500" in str(e.value)) if mode == "500" else ("malformed JSON" in str(e.value))
    finally:
        await llm.aclose()
        await runner.cleanup()


async def test_dead_server_is_a_provider_error() -> None:
    llm = OpenAICompatibleLLM(LLMConfig(engine="openai-compatible", base_url="http://127.0.0.1:9/v1"), outbound=LOCAL)
    try:
        with pytest.raises(ProviderError):
            [ev async for ev in llm.stream([Message("user", "hi")], [])]
    finally:
        await llm.aclose()


@pytest.mark.engines
async def test_whole_call_with_openai_compatible_llm(tmp_path: Path) -> None:
    """The same offline conversation, with the LLM role played by a local server."""
    fake = FakeOpenAI()
    runner, url = await serve(fake)
    try:
        text = re.sub(r"(?m)^llm:\n(?:  .*\n)+", f"llm:\n  engine: openai-compatible\n  base_url: {url}\n  model: local\n",
                      (ROOT / "agents" / "receptionist.yaml").read_text())
        agent = tmp_path / "llm.yaml"
        agent.write_text(text)
        config = tmp_path / "voxd.yaml"  # the local server is allowed by an egress rule, as an operator would
        config.write_text("egress:\n  allow: [{networks: [127.0.0.1/32], uses: [providers]}]\n")
        import numpy as np

        from voxd.media.audio import read_wav_as, write_wav

        speech = read_wav_as(ROOT / "tests/data/speech/festival-kal/what_time.8k.wav")
        write_wav(tmp_path / "in.wav", np.concatenate([np.zeros(16000 * 5, np.int16), speech, np.zeros(16000 * 6, np.int16)]))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "voxd.cli", "call", "--agent", str(agent), "-c", str(config), "--input", str(tmp_path / "in.wav"),
            "--output", str(tmp_path / "out.wav"), "--json", cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 300)
        assert proc.returncode == 0, err.decode()[-2000:]
        rec = json.loads(out)
        caller = [t["text"] for t in rec["turns"] if t["speaker"] == "caller"]
        assert caller and "time" in caller[0].lower()
        bot = rec["turns"][-1]
        tc = bot["tool_calls"][0]
        assert tc["name"] == "get_current_time" and tc["arguments"] == {"timezone": "Europe/London"}
        assert bot["text"] == f"It is {tc['result']['spoken']} in London. Anything else?"
        # the server saw the system prompt, the transcript, and the tool result in the same turn
        second = fake.requests[1]["messages"]
        assert second[0]["role"] == "system" and "Acme Dental" in second[0]["content"]
        assert [m["role"] for m in second[-3:]] == ["user", "assistant", "tool"]
        assert second[-2]["tool_calls"][0]["function"]["name"] == "get_current_time"
    finally:
        await runner.cleanup()
