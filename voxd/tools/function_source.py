"""The control API's view of the library (``voxd.api.deps.FunctionSource``): list the
built-ins and run any function once, outside a call, for ``POST .../execute``."""

from __future__ import annotations

import time
from typing import Any

from voxd.tools.library import ToolLibrary
from voxd.tools.registry import ToolError, ToolResult


class _NoCall:
    """ToolContext for a test run from the API: no call to control, no agent options."""

    call_id = ""
    timezone = "UTC"
    variables: dict[str, str] = {}  # noqa: RUF012 (read only)

    def options_for(self, tool: str) -> dict[str, Any]:
        return {}

    async def end_call(self, reason: str) -> None:
        raise ToolError("end_call only works during a call")

    async def transfer_call(self, target: str) -> bool:
        raise ToolError("transfer_call only works during a call")

    async def send_dtmf(self, digits: str) -> None:
        raise ToolError("send_dtmf only works during a call")


class LibraryFunctionSource:
    """``not_found`` is the exception the API expects (``voxd.api.deps.NotFound``); it is
    passed in so that this layer does not import the API."""

    def __init__(self, library: ToolLibrary, not_found: type[Exception] = LookupError) -> None:
        self.library = library
        self.not_found = not_found

    @staticmethod
    def _info(tool: Any) -> dict[str, Any]:
        return {"name": tool.name, "description": tool.description, "parameters": tool.parameters,
                "builtin": True}

    async def list(self) -> list[dict[str, Any]]:
        return [self._info(self.library.base.tools[n]) for n in self.library.base.names()]

    async def get(self, name: str) -> dict[str, Any]:
        tool = self.library.base.get(name)
        if tool is None:
            raise self.not_found(f"no function named {name!r}")
        return self._info(tool)

    async def execute(
        self, name: str, arguments: dict[str, Any], custom: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if custom is None:
            if self.library.base.get(name) is None:
                raise self.not_found(f"no function named {name!r}")
            res = await self.library.base.execute(name, arguments, _NoCall())
        else:
            started = time.perf_counter()
            res = ToolResult(name, arguments)
            try:
                tool = self.library.stored_tool(custom)
            except (ToolError, ValueError) as e:
                res.error = str(e)
            else:
                reg = type(self.library.base)(tools={name: tool})
                res = await reg.execute(name, arguments, _NoCall())
            res.duration_ms = res.duration_ms or (time.perf_counter() - started) * 1000
        redact = self.library.redactor
        return {"result": redact(res.result), "error": redact.text(res.error) if res.error else None,
                "duration_ms": res.duration_ms}
