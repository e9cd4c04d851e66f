"""Chat completions with tools over HTTP to any OpenAI-compatible server
(llama.cpp's server, Ollama, vLLM, LM Studio, OpenAI itself), streamed as SSE.

Tool-call arguments arrive as JSON fragments spread over many chunks, keyed by
`index`; they are joined and parsed when the stream ends. Cancelling the task
that iterates `stream()` closes the HTTP response, which aborts generation.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from voxd.agents.schema import LLMConfig
from voxd.core.egress import EgressRefused, refusal
from voxd.core.egress_http import egress_session
from voxd.core.secrets import Outbound
from voxd.providers.base import (
    LanguageModel,
    LLMEvent,
    Message,
    ProviderError,
    TextDelta,
    ToolCallsRequested,
    ToolSpec,
    Usage,
    tool_call_from_json,
)
from voxd.providers.engines import BuildContext, EngineSpec, FreeOptions, register


def to_openai_messages(messages: list[Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        d: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.tool_calls:
            d["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.raw_arguments or json.dumps(c.arguments)},
                }
                for c in m.tool_calls
            ]
            if not m.content:
                d["content"] = None
        if m.role == "tool":
            d["tool_call_id"] = m.tool_call_id
        out.append(d)
    return out


def to_openai_tools(tools: list[ToolSpec]) -> list[dict[str, Any]]:
    return [
        {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
        for t in tools
    ]


class ToolCallParts:
    """Streamed tool calls: each arrives in fragments (id, name, pieces of its JSON
    arguments) keyed by `index`, parallel calls interleaved; joined when the stream ends."""

    def __init__(self) -> None:
        self._parts: dict[int, dict[str, str]] = {}

    def add(self, tc: dict[str, Any]) -> None:
        slot = self._parts.setdefault(int(tc.get("index") or 0), {"id": "", "name": "", "args": ""})
        slot["id"] = tc.get("id") or slot["id"]
        fn = tc.get("function") or {}
        slot["name"] = fn.get("name") or slot["name"]
        slot["args"] += fn.get("arguments") or ""

    def requested(self) -> ToolCallsRequested | None:
        if not self._parts:
            return None
        return ToolCallsRequested(tuple(
            tool_call_from_json(c["id"] or f"call_{i}", c["name"], c["args"]) for i, c in sorted(self._parts.items())
        ))


def chunk_events(chunk: dict[str, Any], calls: ToolCallParts) -> list[LLMEvent]:
    """One streamed chat-completion chunk (as JSON) -> usage and text events; tool-call
    fragments go into `calls`."""
    out: list[LLMEvent] = []
    usage = chunk.get("usage")
    if usage:
        out.append(Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)))
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        if delta.get("content"):
            out.append(TextDelta(delta["content"]))
        for tc in delta.get("tool_calls") or []:
            calls.add(tc)
    return out


def strict_ok(schema: Any) -> bool:
    """Whether a JSON Schema meets OpenAI's strict structured-output rules: every object
    lists all its properties as required and allows no others (checked recursively)."""
    if isinstance(schema, list):
        return all(strict_ok(s) for s in schema)
    if not isinstance(schema, dict):
        return True
    if schema.get("type") == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        if schema.get("additionalProperties") is not False or set(schema.get("required") or []) != set(props):
            return False
    return all(strict_ok(v) for k, v in schema.items() if k in ("properties", "items", "anyOf", "$defs")
               for v in ([v] if k == "items" else (v.values() if isinstance(v, dict) else v)))


class OpenAICompatibleLLM(LanguageModel):
    name = "openai-compatible"

    def __init__(self, cfg: LLMConfig, session: aiohttp.ClientSession | None = None,
                 outbound: Outbound | None = None) -> None:
        from voxd.providers.keys import api_key

        assert cfg.base_url
        self.cfg = cfg
        self.url = cfg.base_url.rstrip("/") + "/chat/completions"
        self.outbound = outbound or Outbound()
        self._session = session
        self._own_session = session is None
        self._api_key = api_key(cfg, self.name, self.outbound, required=False).reveal()

    def __repr__(self) -> str:  # never show the key
        return f"OpenAICompatibleLLM(url={self.url!r}, model={self.cfg.model!r})"

    async def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = egress_session(self.outbound.policy, "providers")
            self._own_session = True
        return self._session

    async def aclose(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()

    async def stream(self, messages: list[Message], tools: list[ToolSpec]) -> AsyncIterator[LLMEvent]:
        body: dict[str, Any] = {
            "model": self.cfg.model or "default",
            "messages": to_openai_messages(messages),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if tools:
            body["tools"] = to_openai_tools(tools)
        if self.cfg.temperature is not None:
            body["temperature"] = self.cfg.temperature
        if self.cfg.max_tokens is not None:
            body["max_tokens"] = self.cfg.max_tokens
        body.update(self.cfg.options)
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        client = await self._client()
        timeout = aiohttp.ClientTimeout(total=self.cfg.timeout_s, sock_read=self.cfg.first_token_timeout_s)
        try:
            async with client.post(self.url, json=body, headers=headers, timeout=timeout) as resp:
                if resp.status >= 400:
                    detail = (await resp.text())[:200]
                    raise ProviderError(self.name, f"HTTP {resp.status}: {detail}", retryable=resp.status in (429, 500, 502, 503, 504))
                async for ev in self._events(resp):
                    yield ev
        except ProviderError:
            raise
        except EgressRefused as e:
            raise ProviderError(self.name, f"destination refused: {e}", retryable=False) from None
        except (aiohttp.ClientError, TimeoutError) as e:
            why = refusal(e)
            if why is not None:
                raise ProviderError(self.name, f"destination refused: {why}", retryable=False) from None
            raise ProviderError(self.name, f"{type(e).__name__}: {e}") from None

    async def complete_json(self, messages: list[Message], schema: dict[str, Any], name: str) -> tuple[str, Usage]:
        """One non-streamed completion held to ``schema`` (``response_format`` of type
        ``json_schema``, strict): the reply's text and usage."""
        body: dict[str, Any] = {
            "model": self.cfg.model or "default", "messages": to_openai_messages(messages), "stream": False,
            "response_format": {"type": "json_schema", "json_schema": {"name": name, "schema": schema,
                                                                      "strict": strict_ok(schema)}},
        }
        if self.cfg.temperature is not None:
            body["temperature"] = self.cfg.temperature
        body.update(self.cfg.options)
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        client = await self._client()
        try:
            async with client.post(self.url, json=body, headers=headers,
                                   timeout=aiohttp.ClientTimeout(total=self.cfg.timeout_s)) as resp:
                if resp.status >= 400:
                    detail = (await resp.text())[:200]
                    raise ProviderError(self.name, f"HTTP {resp.status}: {detail}", retryable=resp.status in (429, 500, 502, 503, 504))
                data = await resp.json(content_type=None)
        except ProviderError:
            raise
        except EgressRefused as e:
            raise ProviderError(self.name, f"destination refused: {e}", retryable=False) from None
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise ProviderError(self.name, f"{type(e).__name__}: {e}") from None
        try:
            text = data["choices"][0]["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise ProviderError(self.name, "no choices[0].message in the response", retryable=True) from None
        usage = data.get("usage") or {} if isinstance(data, dict) else {}
        return str(text), Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))

    async def _events(self, resp: aiohttp.ClientResponse) -> AsyncIterator[LLMEvent]:
        calls = ToolCallParts()
        async for raw in resp.content:
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            try:
                chunk = json.loads(data)
            except json.JSONDecodeError:
                raise ProviderError(self.name, "malformed JSON in stream", retryable=True) from None
            for ev in chunk_events(chunk, calls):
                yield ev
        requested = calls.requested()
        if requested is not None:
            yield requested


# ---------------------------------------------------------------- registration


def _build(cfg: LLMConfig, opts: FreeOptions, ctx: BuildContext) -> OpenAICompatibleLLM:
    return OpenAICompatibleLLM(cfg, outbound=ctx.outbound)  # options: extra request-body fields


def _needs_url(cfg: LLMConfig) -> str | None:
    return None if cfg.base_url else "engine 'openai-compatible' needs base_url"


register(EngineSpec("llm", "openai-compatible", _build, check=_needs_url))
