"""A local `/v1/chat/completions` server streaming SSE chunks as documented
(`chat.completion.chunk` objects, `tool_calls` deltas keyed by index, a final
usage chunk with `stream_options.include_usage`, then `data: [DONE]`).

`script` is a list of replies, one per request: a string is streamed word by word;
a list of (name, arguments) is a set of parallel tool calls. `faults` makes the
first requests fail: "429", "500", "stall" (headers then silence), "garbage"
(malformed JSON after some text), "hang" (no response at all).

A non-streamed request with ``response_format: {type: json_schema}`` (structured output)
is answered with one ``chat.completion`` whose message content is the next of
``structured`` (a string, or a function of the request body returning one). As the
hosted API does, a ``strict`` schema that breaks the strict rules (an object not
listing all its properties as required, or allowing others) is refused with 400.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

Reply = str | list[tuple[str, dict[str, Any]]]


class FakeOpenAI:
    def __init__(self, script: list[Reply] | None = None, faults: list[str] | None = None,
                 structured: list[str | Callable[[dict[str, Any]], str]] | None = None) -> None:
        self.script = list(script or [])
        self.structured = list(structured or [])
        self.faults = list(faults or [])
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self.statuses: list[int] = []
        self.disconnects = 0
        self.url = ""
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def start(self, port: int = 0) -> FakeOpenAI:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/v1"
        return self

    async def stop(self) -> None:
        self._closing.set()  # release stalled handlers
        if self._runner is not None:
            await self._runner.cleanup()

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": "fake-model", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.auth.append(request.headers.get("Authorization"))
        fault = self.faults.pop(0) if self.faults else None
        if fault in ("429", "500"):
            self.statuses.append(int(fault))
            return web.json_response(
                {"error": {"message": "slow down" if fault == "429" else "boom", "type": "server_error"}},
                status=int(fault), headers={"retry-after-ms": "10"},
            )
        if fault == "hang":
            await self._closing.wait()
        if body.get("stream") is False:
            return self._structured(body)
        self.statuses.append(200)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            if fault == "stall":
                await self._closing.wait()
            reply = self.script.pop(0) if self.script else "Okay."
            if isinstance(reply, str):
                words = reply.split(" ")
                for i, w in enumerate(words):
                    if fault == "garbage" and i == 2:
                        await resp.write(b"data: {\"id\": \"chatcmpl-fake\", \"choices\": [\n\n")
                        return resp
                    delta = {"role": "assistant", "content": ""} if i == 0 else {}
                    delta["content"] = w + (" " if i < len(words) - 1 else "")
                    await self._send(resp, self._chunk(delta))
                await self._send(resp, self._chunk({}, "stop"))
            else:
                for i, (name, args) in enumerate(reply):  # parallel calls, arguments split in two
                    raw = json.dumps(args)
                    await self._send(resp, self._chunk({"role": "assistant", "tool_calls": [
                        {"index": i, "id": f"call_{len(self.requests)}_{i}", "type": "function",
                         "function": {"name": name, "arguments": raw[: len(raw) // 2]}}]}))
                for i, (_name, args) in enumerate(reply):
                    raw = json.dumps(args)
                    await self._send(resp, self._chunk({"tool_calls": [
                        {"index": i, "function": {"arguments": raw[len(raw) // 2 :]}}]}))
                await self._send(resp, self._chunk({}, "tool_calls"))
            usage = {"prompt_tokens": 10 * len(body["messages"]), "completion_tokens": 7, "total_tokens": 10 * len(body["messages"]) + 7}
            await self._send(resp, {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0,
                                    "model": "fake-model", "choices": [], "usage": usage})
            await resp.write(b"data: [DONE]\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnects += 1
            raise
        return resp

    def _structured(self, body: dict[str, Any]) -> web.Response:
        fmt = body.get("response_format") or {}
        spec = fmt.get("json_schema") or {}
        if fmt.get("type") != "json_schema" or not isinstance(spec.get("schema"), dict) or not spec.get("name"):
            self.statuses.append(400)
            return web.json_response({"error": {"message": "response_format.json_schema with name and schema required"}},
                                     status=400)
        if spec.get("strict") and not _strict(spec["schema"]):
            self.statuses.append(400)
            return web.json_response({"error": {"message": "Invalid schema for response_format: strict mode needs "
                                                "additionalProperties false and every property required"}}, status=400)
        reply = self.structured.pop(0) if self.structured else "{}"
        content = reply(body) if callable(reply) else reply
        self.statuses.append(200)
        return web.json_response({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": "fake-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10 * len(body["messages"]), "completion_tokens": len(content) // 4,
                      "total_tokens": 10 * len(body["messages"]) + len(content) // 4}})

    async def _send(self, resp: web.StreamResponse, obj: dict[str, Any]) -> None:
        await resp.write(b"data: " + json.dumps(obj).encode() + b"\n\n")
        await asyncio.sleep(0.002)


def _strict(schema: Any) -> bool:
    if isinstance(schema, dict):
        if schema.get("type") == "object":
            props = schema.get("properties") or {}
            if schema.get("additionalProperties") is not False or sorted(schema.get("required") or []) != sorted(props):
                return False
        return all(_strict(v) for v in schema.values())
    if isinstance(schema, list):
        return all(_strict(v) for v in schema)
    return True
