"""Starts, tracks and records text conversations, as `CallManager` does calls.

Each conversation gets its agent's language model (per conversation: the dialog engine
keeps slot state) and function registry; its record is saved after every turn, and its
events go to the listeners (webhooks, the function log). Conversations idle longer than
`idle_s` are ended; one whose daemon restarted is carried on from its stored turns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from voxd.agents.loader import LoadedAgent
from voxd.agents.templates import for_call
from voxd.agents.variables import call_values
from voxd.call.conversation import (
    ConversationClosed,
    ConversationEnded,
    ConversationOpened,
    Progress,
    TextConversation,
    TextEvent,
    new_conversation_id,
)
from voxd.core.calllog import CallRecord, ToolCallRecord, Turn, TurnLatency
from voxd.core.endreason import EndedBy
from voxd.core.errors import NotFound
from voxd.core.secrets import Outbound
from voxd.providers.llm.factory import make_llm
from voxd.tools.registry import ToolRegistry

log = logging.getLogger("voxd.conversations")

__all__ = ["ConversationEnded", "ConversationManager"]


class ConversationStore(Protocol):
    """``voxd.store.conversations.ConversationRepository``."""

    async def save(self, record: CallRecord, also: Any = ()) -> None: ...

    async def get(self, conversation_id: str) -> dict[str, Any] | None: ...


class ConversationLimitReached(Exception):
    pass


class ConversationManager:
    def __init__(
        self,
        agents: Callable[[str], Awaitable[LoadedAgent | None]],
        tools_for: Callable[[LoadedAgent], ToolRegistry],
        *,
        repo: ConversationStore | None = None,
        outbound: Outbound | None = None,
        max_active: int = 1000,
        idle_s: float = 1800.0,
    ) -> None:
        self.agents = agents  # name -> the agent as it is now (None: unknown)
        self.tools_for = tools_for
        self.repo = repo
        self.outbound = outbound or Outbound()
        self.max_active = max_active
        self.idle_s = idle_s
        self.active: dict[str, TextConversation] = {}
        self.listeners: list[Callable[[TextEvent], None]] = []
        self._sweeper: asyncio.Task[None] | None = None

    # -- the API's ConversationSource
    async def start(self, agent_name: str, metadata: dict[str, Any] | None = None,
                    variables: dict[str, str] | None = None) -> CallRecord:
        """A new conversation's record (its greeting is the first turn); NotFound for an
        unknown agent."""
        return (await self.open(agent_name, metadata, variables)).record

    async def open(self, agent_name: str, metadata: dict[str, Any] | None = None,
                   variables: dict[str, str] | None = None) -> TextConversation:
        agent = await self.agents(agent_name)
        if agent is None:
            raise NotFound(f"no agent {agent_name!r}")
        await self.expire_idle()
        if len(self.active) >= self.max_active:
            raise ConversationLimitReached(f"{self.max_active} conversations active")
        conv = self._build(agent, CallRecord(id=new_conversation_id(), agent=agent.name, agent_version=agent.version,
                                             transport="text", metadata=dict(metadata or {}),
                                             variables=call_values(agent.config.variables, variables),
                                             org=agent.org))
        conv.open()
        await self._save(conv)
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep(), name="conversation-idle")
        return conv

    async def send(self, conversation_id: str, text: str, progress: Progress | None = None) -> Turn:
        """The agent's reply turn; NotFound for an unknown conversation, ConversationEnded
        for one that has ended."""
        conv = await self.find(conversation_id)
        try:
            return await conv.send(text, progress)
        finally:
            await self._save(conv)
            if conv.closed:
                self.active.pop(conv.record.id, None)

    async def end(self, conversation_id: str, reason: str = "api_end", ended_by: EndedBy = "system") -> CallRecord | None:
        """End it; None when it is not active."""
        conv = self.active.pop(conversation_id, None)
        if conv is None:
            try:
                conv = await self.find(conversation_id)
            except (NotFound, ConversationEnded):
                return None
            self.active.pop(conversation_id, None)
        async with conv.lock:
            await conv.close(reason, ended_by)
        await self._save(conv)
        return conv.record

    async def find(self, conversation_id: str) -> TextConversation:
        conv = self.active.get(conversation_id)
        if conv is not None:
            return conv
        stored = await self.repo.get(conversation_id) if self.repo is not None else None
        if stored is None:
            raise NotFound(f"no conversation {conversation_id!r}")
        if stored["status"] == "ended":
            raise ConversationEnded(conversation_id)
        agent = await self.agents(stored["agent"])
        if agent is None:
            raise ConversationEnded(conversation_id)
        conv = self._build(agent, CallRecord(
            id=stored["id"], agent=stored["agent"], agent_version=agent.version, transport=stored["channel"],
            started_at=stored["started_at"], answered_at=stored["started_at"], metadata=stored["metadata"],
            variables=stored.get("variables") or {}, org=agent.org))
        conv.restore([_turn(t) for t in stored["turns"]])
        self.active[conv.record.id] = conv
        log.info("conversation %s carried on from the store (agent %s)", conv.record.id, agent.name)
        return conv

    # -- housekeeping
    async def expire_idle(self) -> None:
        cutoff = time.monotonic() - self.idle_s
        for cid, conv in list(self.active.items()):
            if conv.last_active < cutoff and not conv.lock.locked():
                await self.end(cid, "idle_timeout")

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(min(60.0, self.idle_s / 4))
            try:
                await self.expire_idle()
            except Exception:
                log.exception("conversation idle sweep failed")

    async def close_all(self, reason: str = "shutdown") -> None:
        """Daemon stop: active conversations stay open in the store and carry on after a restart."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for conv in list(self.active.values()):
            await conv.release()
        self.active.clear()

    # -- plumbing
    def _build(self, agent: LoadedAgent, record: CallRecord) -> TextConversation:
        cfg = for_call(agent.config, record.variables)  # its {placeholders} filled with the variables
        conv = TextConversation(cfg, agent.version, make_llm(cfg, self.outbound),
                                self.tools_for(agent), record, on_event=self._on_event)
        self.active[record.id] = conv
        return conv

    def _on_event(self, event: TextEvent) -> None:
        if isinstance(event, ConversationOpened):
            log.info("conversation %s started: agent=%s", event.record.id, event.record.agent)
        elif isinstance(event, ConversationClosed):
            log.info("conversation %s ended: %s", event.record.id, event.record.end_reason)
        for fn in self.listeners:
            try:
                fn(event)
            except Exception:
                log.exception("conversation event listener failed")

    async def _save(self, conv: TextConversation) -> None:
        if self.repo is None:
            return
        try:
            await self.repo.save(conv.record)
        except Exception:
            log.exception("could not save conversation %s", conv.record.id)


def _turn(d: dict[str, Any]) -> Turn:
    lat = d.get("latency")
    return Turn(index=d["index"], speaker=d["speaker"], text=d["text"], started_at=d["started_at"],
                ended_at=d.get("ended_at"), source=d.get("source", "speech"),
                latency=TurnLatency(**lat) if lat else None,
                tool_calls=[ToolCallRecord(**tc) for tc in d.get("tool_calls", [])])
