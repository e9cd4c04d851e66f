"""In-memory AgentSource, CallSource and FunctionSource for tests and the benchmark."""

from __future__ import annotations

import asyncio
import builtins
import time
from dataclasses import dataclass, field
from typing import Any

from voxd.api.agent_yaml import validate_agent_yaml
from voxd.api.deps import AgentInfo, InvalidAgent
from voxd.core.errors import NotFound, NotSupported


@dataclass
class MemoryAgentSource:
    agents: dict[str, tuple[AgentInfo, str, dict[str, Any]]] = field(default_factory=dict)
    writes: list[tuple[str, str]] = field(default_factory=list)  # (name, actor)

    async def list(self) -> list[AgentInfo]:
        return [a[0] for a in sorted(self.agents.values(), key=lambda a: a[0].name)]

    async def get(self, name: str) -> tuple[AgentInfo, str, dict[str, Any]]:
        try:
            return self.agents[name]
        except KeyError:
            raise NotFound(f"no agent named {name!r}") from None

    async def validate(self, yaml_text: str) -> builtins.list[dict[str, Any]]:
        return (await asyncio.to_thread(validate_agent_yaml, yaml_text))[1]

    async def put(self, name: str, yaml_text: str, actor: str) -> AgentInfo:
        config, errors = await asyncio.to_thread(validate_agent_yaml, yaml_text)
        if config is None:
            raise InvalidAgent(errors)
        old = self.agents.get(name)
        version = str(int(old[0].version) + 1) if old else "1"
        info = AgentInfo(name=name, version=version, description=config.get("description", ""),
                         path=f"agents/{name}.yaml", updated_at=time.time())
        self.agents[name] = (info, yaml_text, config)
        self.writes.append((name, actor))
        return info

    async def delete(self, name: str, actor: str) -> None:
        if self.agents.pop(name, None) is None:
            raise NotFound(f"no agent named {name!r}")
        self.writes.append((name, actor))


@dataclass
class MemoryCallSource:
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    can_dial: bool = False
    ended: list[str] = field(default_factory=list)
    dialed: list[tuple[str, str, str | None]] = field(default_factory=list)
    trunks: list[str | None] = field(default_factory=list)  # the trunk of each dialled call
    recordings: list[dict[str, Any] | None] = field(default_factory=list)  # each dialled call's override
    variables: list[dict[str, str]] = field(default_factory=list)  # the variables of each dialled call

    async def active(self) -> builtins.list[dict[str, Any]]:
        return list(self.calls.values())

    async def end(self, call_id: str) -> bool:
        if self.calls.pop(call_id, None) is None:
            return False
        self.ended.append(call_id)
        return True

    async def dial(self, agent: str, to: str, from_: str | None, trunk: str | None = None, *,
                   variables: dict[str, str] | None = None, recording: dict[str, Any] | None = None) -> str:
        if not self.can_dial:
            raise NotSupported("no configured transport can place outbound calls")
        self.dialed.append((agent, to, from_))
        self.trunks.append(trunk)
        self.recordings.append(recording)
        self.variables.append(dict(variables or {}))
        return f"call_out{len(self.dialed):04d}"


def _echo(arguments: dict[str, Any]) -> Any:
    return {"echo": arguments}


@dataclass
class MemoryFunctionSource:
    builtins: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        "echo": {"name": "echo", "description": "Returns its arguments.", "builtin": True,
                 "parameters": {"type": "object",
                                "properties": {"text": {"type": "string"}},
                                "required": ["text"]}},
    })
    executed: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = field(
        default_factory=list)

    async def list(self) -> list[dict[str, Any]]:
        return list(self.builtins.values())

    async def get(self, name: str) -> dict[str, Any]:
        try:
            return self.builtins[name]
        except KeyError:
            raise NotFound(f"no function named {name!r}") from None

    async def execute(
        self, name: str, arguments: dict[str, Any], custom: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        self.executed.append((name, arguments, custom))
        started = time.perf_counter()
        if custom is not None:
            return {"result": None, "error": "custom functions are not executed by the fake",
                    "duration_ms": 0.0}
        result = _echo(arguments)
        return {"result": result, "error": None,
                "duration_ms": (time.perf_counter() - started) * 1000}
