"""Streaming chat completions with tools on the official `openai` SDK (engine `openai`).

`base_url` points it at OpenAI or any compatible server (vLLM, llama.cpp, Ollama).
The SDK retries 429 and 5xx answers (honouring Retry-After) up to `max_retries`
times; all of that, and the first streamed chunk, must fit in
`first_token_timeout_s`, or the step fails with a retryable ProviderError so a
fallback can take over before the caller notices dead air. Cancelling the task
that iterates `stream()` (barge-in) closes the HTTP response, which stops
generation on the server. Parallel tool calls arrive interleaved by `index`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai

from voxd.agents.schema import LLMConfig
from voxd.core.egress import refusal
from voxd.core.egress_http import egress_httpx_client
from voxd.core.secrets import Outbound
from voxd.providers.base import (
    LanguageModel,
    LLMEvent,
    Message,
    ProviderError,
    ToolSpec,
)
from voxd.providers.engines import BuildContext, EngineSpec, FreeOptions, register
from voxd.providers.keys import Secret, api_key
from voxd.providers.llm.openai_compat import ToolCallParts, chunk_events, to_openai_messages, to_openai_tools

log = logging.getLogger("voxd.providers.openai")


class OpenAILLM(LanguageModel):
    name = "openai"

    def __init__(self, cfg: LLMConfig, key: Secret | None = None, outbound: Outbound | None = None) -> None:
        self.cfg = cfg
        self.outbound = outbound or Outbound()
        named = bool(cfg.api_key_secret or cfg.api_key_env or cfg.api_key_file)
        local = bool(cfg.base_url) and not named  # a local server with no key named needs none
        self._key = key if key is not None else api_key(cfg, self.name, self.outbound, required=not local)
        self._client: openai.AsyncOpenAI | None = None
        self.client()  # built now, so the first request's deadline is spent on the request

    def __repr__(self) -> str:
        return f"OpenAILLM(base_url={self.cfg.base_url!r}, model={self.cfg.model!r})"

    def client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            self._client = openai.AsyncOpenAI(
                api_key=self._key.reveal() or "none",
                base_url=self.cfg.base_url,
                max_retries=self.cfg.max_retries,
                http_client=egress_httpx_client(self.outbound.policy, "providers"),
                timeout=httpx2.Timeout(self.cfg.timeout_s, connect=min(5.0, self.cfg.first_token_timeout_s)),
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    def _request(self, messages: list[Message], tools: list[ToolSpec]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.cfg.model or "gpt-4o-mini",
            "messages": to_openai_messages(messages),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if tools:
            body["tools"] = to_openai_tools(tools)
            body["parallel_tool_calls"] = True
        if self.cfg.temperature is not None:
            body["temperature"] = self.cfg.temperature
        if self.cfg.max_tokens is not None:
            body["max_tokens"] = self.cfg.max_tokens
        body.update(self.cfg.options)
        return body

    async def stream(self, messages: list[Message], tools: list[ToolSpec]) -> AsyncIterator[LLMEvent]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cfg.first_token_timeout_s
        stream: Any = None
        try:
            try:
                stream = await asyncio.wait_for(
                    self.client().chat.completions.create(**self._request(messages, tools)),
                    max(0.01, deadline - loop.time()),
                )
                chunks = stream.__aiter__()
                first = await asyncio.wait_for(chunks.__anext__(), max(0.01, deadline - loop.time()))
            except TimeoutError:
                raise ProviderError(self.name, f"no first token within {self.cfg.first_token_timeout_s:g}s") from None
            calls = ToolCallParts()
            chunk: Any = first
            while True:
                for ev in chunk_events(chunk.model_dump(exclude_none=True), calls):
                    yield ev
                try:
                    chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    break
            requested = calls.requested()
            if requested is not None:
                yield requested
        except ProviderError:
            raise
        except StopAsyncIteration:
            raise ProviderError(self.name, "empty response stream") from None
        except Exception as e:
            raise _translate(self.name, e) from None
        finally:
            if stream is not None:  # also on cancellation: closing the response aborts generation
                try:
                    await stream.close()
                except Exception:
                    pass


def _translate(provider: str, e: Exception) -> ProviderError:
    """SDK and transport failures as one ProviderError, with whether a retry may help."""
    refused = refusal(e)
    if refused is not None:
        return ProviderError(provider, f"destination refused: {refused}", retryable=False)
    if isinstance(e, openai.APIStatusError):
        code = e.status_code
        return ProviderError(provider, f"HTTP {code}", retryable=code in (408, 409, 429) or code >= 500)
    if isinstance(e, openai.APITimeoutError):
        return ProviderError(provider, "request timed out")
    if isinstance(e, openai.APIConnectionError):
        return ProviderError(provider, f"connection failed: {e}")
    if isinstance(e, json.JSONDecodeError | ValueError):
        return ProviderError(provider, "malformed JSON in stream")
    return ProviderError(provider, f"{type(e).__name__}: {e}")


# ---------------------------------------------------------------- registration


def _build(cfg: LLMConfig, opts: FreeOptions, ctx: BuildContext) -> OpenAILLM:
    return OpenAILLM(cfg, outbound=ctx.outbound)  # options: extra request-body fields


register(EngineSpec("llm", "openai", _build,
                    prices={"prompt_tokens": 0.15e-6, "completion_tokens": 0.60e-6},  # gpt-4o-mini
                    url="https://api.openai.com/v1", secret="openai"))
