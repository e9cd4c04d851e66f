"""The function registry: what agents may call, with validated arguments.

A tool is a name, a description, JSON-Schema parameters, a timeout, whether barge-in
may cancel it, and an async handler. Bad arguments from the LLM come back as an
error result the LLM can recover from; they never end the call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import jsonschema

from voxd.core.errors import ToolError
from voxd.providers.base import ToolSpec

__all__ = ["Handler", "Tool", "ToolContext", "ToolError", "ToolRegistry", "ToolResult"]


class ToolContext(Protocol):
    """What a running tool may use of its call."""

    @property
    def call_id(self) -> str: ...

    @property
    def timezone(self) -> str: ...

    @property
    def variables(self) -> dict[str, str]:
        """The call's variables (declared defaults and the values it brought)."""

    def options_for(self, tool: str) -> dict[str, Any]: ...

    async def end_call(self, reason: str) -> None: ...

    async def transfer_call(self, target: str) -> bool: ...

    async def send_dtmf(self, digits: str) -> None: ...


Handler = Callable[[dict[str, Any], ToolContext], Awaitable[Any]]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    handler: Handler
    timeout_s: float = 10.0
    interruptible: bool = True
    builtin: bool = True

    @property
    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description, self.parameters)


@dataclass
class ToolResult:
    name: str
    arguments: dict[str, Any]
    result: Any = None
    error: str | None = None
    duration_ms: float = 0.0

    def for_llm(self) -> str:
        import json

        if self.error is not None:
            return json.dumps({"error": self.error})
        return json.dumps({"result": self.result}, default=str)


@dataclass
class ToolRegistry:
    tools: dict[str, Tool] = field(default_factory=dict)

    def register(self, tool: Tool) -> None:
        jsonschema.Draft202012Validator.check_schema(tool.parameters)
        self.tools[tool.name] = tool

    def get(self, name: str) -> Tool | None:
        return self.tools.get(name)

    def names(self) -> list[str]:
        return sorted(self.tools)

    def specs(self, names: list[str]) -> list[ToolSpec]:
        return [self.tools[n].spec for n in names if n in self.tools]

    def validate(self, name: str, arguments: dict[str, Any]) -> str | None:
        tool = self.tools.get(name)
        if tool is None:
            return f"unknown function {name!r}"
        errors = sorted(
            jsonschema.Draft202012Validator(tool.parameters).iter_errors(arguments),
            key=lambda e: list(e.path),
        )
        if errors:
            e = errors[0]
            where = ".".join(str(p) for p in e.path) or "arguments"
            return f"invalid arguments for {name}: {where}: {e.message}"
        return None

    async def execute(
        self, name: str, arguments: dict[str, Any], ctx: ToolContext, allowed: list[str] | None = None
    ) -> ToolResult:
        """Validate and run one call; never raises except CancelledError."""
        started = time.perf_counter()
        res = ToolResult(name=name, arguments=arguments)
        if allowed is not None and name not in allowed:
            res.error = f"function {name!r} is not available to this agent"
            return res
        problem = self.validate(name, arguments)
        if problem:
            res.error = problem
            return res
        tool = self.tools[name]
        try:
            async with asyncio.timeout(tool.timeout_s):
                res.result = await tool.handler(arguments, ctx)
        except TimeoutError:
            res.error = f"{name} timed out after {tool.timeout_s:g} s"
        except ToolError as e:
            res.error = str(e)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a broken tool must not end the call
            res.error = f"{name} failed: {type(e).__name__}"
        res.duration_ms = (time.perf_counter() - started) * 1000
        return res
