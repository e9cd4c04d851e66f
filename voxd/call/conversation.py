"""One text conversation: the call session's turn logic without audio.

The same agent YAML, language model (dialog engine or a real LLM), tools and tool loop
(`voxd.call.reply.run_llm_reply`) as a call; the reply's clauses go to a transcript
instead of a voice. Turns are recorded on a `CallRecord` whose `transport` is the
conversation's channel, so the function log, webhooks and the store read it as they
read a call. There is no leg to transfer or send digits on, and no keypad: those
functions are not offered to the model.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from voxd.agents.schema import AgentConfig
from voxd.call.events import EngineError, ToolExecuted, TurnCompleted
from voxd.call.reply import ReplyMetrics, ToolPolicy, run_llm_reply
from voxd.core.calllog import CallRecord, ToolCallRecord, Turn, TurnLatency
from voxd.core.endreason import END_REASONS, EndedBy, EndReason
from voxd.core.redact import default_redactor
from voxd.providers.base import LanguageModel, Message, ProviderError, ToolCall
from voxd.tools.registry import ToolRegistry, ToolResult

log = logging.getLogger("voxd.conversations")

# functions that act on a call leg: a text conversation has none
NEEDS_A_CALL = frozenset({"transfer_call", "send_dtmf"})
SORRY = "Sorry, I'm having trouble right now."


def new_conversation_id() -> str:
    return "conv_" + uuid.uuid4().hex[:20]


@dataclass(frozen=True)
class ConversationOpened:
    record: CallRecord


@dataclass(frozen=True)
class ConversationClosed:
    record: CallRecord


TextEvent = ConversationOpened | TurnCompleted | ToolExecuted | EngineError | ConversationClosed
# what a streaming client is told while a reply is produced: ("text", {"text": clause}) or
# ("tool_call", {...the ToolCallRecord...})
Progress = Callable[[str, dict[str, Any]], None]


class ConversationEnded(Exception):
    """A message for a conversation that has ended."""


@dataclass
class TextReply:
    """A reply's clause sink (`voxd.call.reply.ClauseSink`): collects the text, and tells a
    streaming client each clause as it is written."""

    progress: Progress | None = None
    metrics: ReplyMetrics = field(default_factory=ReplyMetrics)
    clauses: list[str] = field(default_factory=list)

    def say(self, clause: str) -> None:
        clause = clause.strip()
        if not clause:
            return
        self.clauses.append(clause)
        if self.progress is not None:
            self.progress("text", {"text": clause})


class TextTools:
    """`voxd.tools.registry.ToolContext` for a text conversation."""

    def __init__(self, conversation: TextConversation, registry: ToolRegistry) -> None:
        self.conversation = conversation
        self.registry = registry
        self.allowed = [n for n in conversation.agent.tool_names if n not in NEEDS_A_CALL]
        self.progress: Progress | None = None

    @property
    def call_id(self) -> str:
        return self.conversation.record.id

    @property
    def timezone(self) -> str:
        return self.conversation.agent.timezone

    @property
    def variables(self) -> dict[str, str]:
        return self.conversation.record.variables

    def options_for(self, tool: str) -> dict[str, Any]:
        return self.conversation.agent.tool_options(tool)

    async def end_call(self, reason: str) -> None:
        self.conversation.end_requested = reason

    async def transfer_call(self, target: str) -> bool:
        return False  # never offered: there is no call to transfer

    async def send_dtmf(self, digits: str) -> None:
        return None  # never offered: there is no leg to send digits on

    def interruptible(self, name: str) -> bool:
        return True

    async def run(self, call: ToolCall) -> ToolResult:
        res = await self.registry.execute(call.name, call.arguments, self, allowed=self.allowed)
        rec = ToolCallRecord(name=res.name, arguments=default_redactor(res.arguments), result=res.result,
                             error=res.error, started_at=time.time() - res.duration_ms / 1000,
                             duration_ms=round(res.duration_ms, 2), call_id=call.id)
        self.conversation.emit(ToolExecuted(self.conversation.record, rec))
        if self.progress is not None:
            self.progress("tool_call", {"name": rec.name, "arguments": rec.arguments, "result": rec.result,
                                        "error": rec.error, "duration_ms": rec.duration_ms})
        return res


class TextConversation:
    def __init__(
        self,
        agent: AgentConfig,
        agent_version: str,
        llm: LanguageModel,
        tools: ToolRegistry,
        record: CallRecord,
        on_event: Callable[[TextEvent], None] | None = None,
    ) -> None:
        self.agent = agent
        self.agent_version = agent_version
        self.llm = llm
        self.record = record
        self._on_event = on_event
        self.tools = TextTools(self, tools)
        self.messages: list[Message] = [Message("system", agent.prompt)]
        self.policy = ToolPolicy(filler_after_s=0, filler="")  # nobody waits in silence
        self.end_requested: str | None = None
        self.lock = asyncio.Lock()
        self.last_active = time.monotonic()

    @property
    def closed(self) -> bool:
        return self.record.ended_at is not None

    def open(self) -> Turn | None:
        """Start: the agent's greeting is its first turn."""
        self.record.answered_at = self.record.started_at
        self.emit(ConversationOpened(self.record))
        if not self.agent.greeting:
            return None
        turn = self._turn("bot", self.agent.greeting, "greeting")
        self.messages.append(Message("assistant", turn.text))
        self.emit(TurnCompleted(self.record, turn))
        return turn

    def restore(self, turns: list[Turn]) -> None:
        """Carry on a conversation from its stored turns (the daemon restarted)."""
        self.record.turns = list(turns)
        for t in turns:
            if t.text:
                self.messages.append(Message("user" if t.speaker == "caller" else "assistant", t.text))

    async def send(self, text: str, progress: Progress | None = None) -> Turn:
        """The user's message in, the agent's reply (with its tool calls) out."""
        async with self.lock:
            if self.closed:
                raise ConversationEnded(self.record.id)
            self.last_active = time.monotonic()
            t0 = time.perf_counter()
            user = self._turn("caller", text, "speech")
            self.emit(TurnCompleted(self.record, user))
            self.messages.append(Message("user", text))
            turn = self._turn("bot", "", "reply", ended=False)
            sink = TextReply(progress, ReplyMetrics(started=t0))
            self.tools.progress = progress
            try:
                turn.text = await run_llm_reply(self.llm, self.messages, self.tools.registry.specs(self.tools.allowed),
                                                sink, turn, self.tools.run, self.policy)
            except ProviderError as e:
                log.warning("conversation %s: llm error: %s", self.record.id, e)
                self.emit(EngineError(self.record, "llm", str(e), {"provider": e.provider}))
                turn.text = SORRY
                if progress is not None:
                    progress("text", {"text": SORRY})
            finally:
                self.tools.progress = None
            if not turn.text and self.end_requested and self.agent.goodbye:
                turn.text = self.agent.goodbye
                if progress is not None:
                    progress("text", {"text": turn.text})
            turn.ended_at = time.time()
            first = sink.metrics.ms(sink.metrics.first_token)
            turn.latency = TurnLatency(first_token_ms=None if first is None else round(first, 1))
            if turn.text:
                self.messages.append(Message("assistant", turn.text))
            self.emit(TurnCompleted(self.record, turn))
            self.last_active = time.monotonic()
            if self.end_requested is not None:
                await self.close(self.end_requested, "agent")
            return turn

    async def close(self, reason: str, ended_by: EndedBy = "caller") -> None:
        """End it; a reason outside the EndReason vocabulary (the end_call tool's own
        words) is kept in metadata, as calls do."""
        if self.closed:
            return
        self.record.ended_at = time.time()
        if reason in END_REASONS:
            self.record.end_reason = cast(EndReason, reason)
        else:
            self.record.end_reason = "agent_hangup"
            self.record.metadata["hangup_reason"] = reason[:200]
        self.record.ended_by = ended_by
        await self.release()
        self.emit(ConversationClosed(self.record))

    async def release(self) -> None:
        """Close the language model's connections (the conversation may carry on later)."""
        try:
            await self.llm.aclose()
        except Exception:
            log.debug("llm close failed", exc_info=True)

    def _turn(self, speaker: str, text: str, source: str, ended: bool = True) -> Turn:
        now = time.time()
        turn = Turn(index=len(self.record.turns), speaker=speaker, text=text, started_at=now,  # type: ignore[arg-type]
                    ended_at=now if ended else None, source=source)  # type: ignore[arg-type]
        self.record.turns.append(turn)
        return turn

    def emit(self, event: TextEvent) -> None:
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                log.exception("conversation event listener failed")
