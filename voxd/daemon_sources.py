"""The daemon's side of the control API: its agents and calls, adapted to the Protocols
in `voxd.api.deps` (functions come from `voxd.tools.function_source.LibraryFunctionSource`)."""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from voxd.agents.catalog import AgentCatalog
from voxd.agents.loader import AgentLoadError, FieldError, LoadedAgent
from voxd.api.agent_yaml import api_errors
from voxd.api.deps import AgentInfo, InvalidAgent
from voxd.call.manager import CallManager
from voxd.core.errors import NotFound, NotSupported
from voxd.core.secrets import SecretBook

if TYPE_CHECKING:
    from voxd.net.sip import SipEndpoint


def _errors(errors: builtins.list[FieldError]) -> builtins.list[dict[str, Any]]:
    return api_errors(errors)


def _info(a: LoadedAgent) -> AgentInfo:
    mtime = a.path.stat().st_mtime if a.path is not None and a.path.exists() else time.time()
    return AgentInfo(a.name, a.version, a.config.description, str(a.path or ""), mtime)


class DaemonAgents:
    def __init__(self, registry: AgentCatalog, writing: set[str] | None = None) -> None:
        self.registry = registry
        self.writing = set() if writing is None else writing  # names the API is writing now

    async def list(self) -> builtins.list[AgentInfo]:
        return [_info(a) for a in self.registry.all()]

    async def get(self, name: str) -> tuple[AgentInfo, str, dict[str, Any]]:
        a = self.registry.get(name)
        if a is None:
            raise NotFound(name)
        return _info(a), a.text, a.config.model_dump(mode="json")

    async def validate(self, yaml_text: str) -> builtins.list[dict[str, Any]]:
        return _errors(await asyncio.to_thread(self.registry.validate_text, yaml_text))

    async def put(self, name: str, yaml_text: str, actor: str) -> AgentInfo:
        try:
            loaded = await asyncio.to_thread(self.registry.parse, yaml_text, name)  # parsing: off the loop
            self.writing.add(name)
            agent = self.registry.write(name, yaml_text, loaded)  # small file, fsync: on the loop so reload listeners run there
        except AgentLoadError as e:
            raise InvalidAgent(_errors(e.errors)) from None
        finally:
            self.writing.discard(name)
        return _info(agent)

    async def delete(self, name: str, actor: str) -> None:
        self.writing.add(name)
        try:
            if not self.registry.delete(name):
                raise NotFound(name)
        finally:
            self.writing.discard(name)


class DaemonCalls:
    def __init__(self, calls: CallManager, agents: AgentCatalog, sip: Callable[[], SipEndpoint | None],
                 secrets: Callable[[], SecretBook] = SecretBook.vendors) -> None:
        self.calls = calls
        self.agents = agents
        self._secrets = secrets  # the declared secrets, current after a reload
        self._sip = sip  # asked per call: a reload may re-bind SIP as a new endpoint

    @property
    def sip(self) -> SipEndpoint | None:
        return self._sip()

    async def active(self) -> builtins.list[dict[str, Any]]:
        return [s.record.to_dict() for s in self.calls.active.values()]

    async def end(self, call_id: str) -> bool:
        return await self.calls.end(call_id)

    async def dial(self, agent: str, to: str, from_: str | None, trunk: str | None = None) -> str:
        from voxd.net.sip_trunk import dial_trunk, pick_trunk

        sip = self.sip
        if sip is None:
            raise NotSupported("outbound calls need the SIP listener (sip.enabled: true)")
        a = self.agents.get(agent)
        if a is None:
            raise NotFound(agent)
        via = pick_trunk(sip, trunk, to)
        if via is not None:
            session = await dial_trunk(sip, a, via, to, secrets=self._secrets(), from_user=from_)
            return session.record.id
        session = await sip.dial(a, to, from_user=from_ or "voxd")
        return session.record.id
