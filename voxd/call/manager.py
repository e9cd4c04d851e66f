"""Starts, tracks and records calls: the one place transports ask for a session.

It builds each call's engines from its agent (speech engines and models shared
process-wide, a language model per call), keeps the active calls, persists each
call record at start and end, and fans call events out to listeners (API, webhooks,
metrics).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from voxd.agents.loader import LoadedAgent
from voxd.agents.templates import for_call
from voxd.agents.variables import call_values
from voxd.call.admission import Admission, AdmissionRefused
from voxd.call.events import CallEnded, CallEvent, CallStarted
from voxd.call.lookup import InboundLookups
from voxd.call.ports import CallControl, Engines
from voxd.call.recording import CallRecorder
from voxd.call.session import CallSession
from voxd.call.toolctx import agent_specs
from voxd.config import EnginesConfig
from voxd.core.calllog import CallRecord, new_call_id
from voxd.core.endreason import EndReason
from voxd.core.secrets import Outbound
from voxd.media.vad import FrameVAD
from voxd.providers.factory import make_stt, make_tts
from voxd.providers.llm.factory import make_llm
from voxd.providers.llm.local.warm import uses_local, warm_agent
from voxd.store.repos import CallRepo
from voxd.store.repos import TxnWrite as StoreTxnWrite
from voxd.tools.registry import ToolRegistry

log = logging.getLogger("voxd.calls")

# a row writer that commits with the call record, and what to run once it has committed
TxnWrite = tuple[StoreTxnWrite, Callable[[], None]]


class CallLimitReached(Exception):
    pass


class CallManager:
    def __init__(
        self,
        tools: ToolRegistry,
        engines: EnginesConfig | None = None,
        repo: CallRepo | None = None,
        max_calls: int = 500,
        tools_for: Callable[[LoadedAgent], ToolRegistry] | None = None,
        outbound: Outbound | None = None,
        admission: Admission | None = None,
    ) -> None:
        self.tools = tools
        self.tools_for = tools_for  # per-agent registries (built-ins + the agent's own functions)
        self.engines_cfg = engines or EnginesConfig()
        self.outbound = outbound or Outbound()  # where hosted engines may connect, and with which keys
        self.repo = repo  # the default organisation's calls
        # the calls of another organisation (its agents' calls are stored there); None: all in ``repo``
        self.repo_for: Callable[[str], CallRepo] | None = None
        self.admission = admission or Admission(max_calls)  # no transport shares unless configured
        self.active: dict[str, CallSession] = {}
        self.listeners: list[Callable[[CallEvent], None]] = []
        # writers whose rows must commit with the call record (e.g. the webhook outbox):
        # given CallStarted/CallEnded, each returns (write inside the transaction, after commit)
        self.transactional: list[Callable[[CallEvent], TxnWrite | None]] = []
        self.accepting = True
        self._bg: set[asyncio.Task[None]] = set()
        self._empty = asyncio.Event()
        self._empty.set()
        # each call's recorder (voxd.call.recording.Recordings.recorder_for); None: nothing is recorded
        self.recorder: Callable[[CallSession], CallRecorder | None] | None = None
        self._silero: Any = None
        self._smart_turn: Any = None
        self.lookups: InboundLookups | None = None  # agents' inbound_lookup (set by the daemon)

    @property
    def max_calls(self) -> int:
        return self.admission.max_calls

    # -- models shared by all calls
    def _confirmer(self) -> Any:
        if not self.engines_cfg.silero_confirm:
            return None
        if self._silero is None:
            from voxd.media.silero import SileroVAD

            self._silero = SileroVAD()
        return self._silero.speech_probability

    def _turn_model(self) -> Any:
        if self._smart_turn is None:
            from voxd.media.turn import SmartTurn

            self._smart_turn = SmartTurn()
        return self._smart_turn.end_probability

    def engines_for(self, agent: LoadedAgent) -> Engines:
        cfg = agent.config
        return Engines(
            stt=make_stt(cfg.stt, self.outbound),
            llm=make_llm(cfg, self.outbound),
            tts=make_tts(cfg.voice, self.outbound),
            confirm=self._confirmer(),
            turn_model=self._turn_model() if cfg.turn.detector == "smart_turn" else None,
        )

    async def warm_up(self, agents: list[LoadedAgent]) -> None:
        """Load every model the agents need before the first call arrives."""
        jobs = []
        if self.engines_cfg.silero_confirm:
            self._confirmer()
            jobs.append(self._silero.warm_up())
        if any(a.config.turn.detector == "smart_turn" for a in agents):
            self._turn_model()
            jobs.append(self._smart_turn.warm_up())
        for a in agents:
            jobs.append(make_stt(a.config.stt, self.outbound).warm_up())
            jobs.append(make_tts(a.config.voice, self.outbound).warm_up())
            if uses_local(a.config):  # start the model process, evaluate the agent's prompt once
                registry = self.tools_for(a) if self.tools_for is not None else self.tools
                jobs.append(warm_agent(a.config, agent_specs(a.config, registry)))
        for job in jobs:
            try:
                await job
            except Exception as e:
                log.error("engine warm-up failed: %s", e)

    # -- calls
    def create(
        self,
        agent: LoadedAgent,
        control: CallControl,
        *,
        from_uri: str = "",
        to_uri: str = "",
        direction: str = "inbound",
        metadata: dict[str, Any] | None = None,
        engines: Engines | None = None,
        listener: Callable[[CallEvent], None] | None = None,
        source: str = "",
        authenticated: bool = True,
        variables: dict[str, str] | None = None,
    ) -> CallSession:
        """A new call's session, if admission allows it: not draining, under the total,
        its transport's share, and (for a call nobody authenticated) the unauthenticated caps."""
        if not self.accepting:
            raise CallLimitReached("draining")
        try:
            self.admission.check(control.transport_name, source, authenticated)
        except AdmissionRefused as e:
            raise CallLimitReached(str(e)) from e
        record = CallRecord(
            id=new_call_id(),
            agent=agent.name,
            agent_version=agent.version,
            transport=control.transport_name,
            from_uri=from_uri,
            to_uri=to_uri,
            direction=direction,  # type: ignore[arg-type]
            metadata=dict(metadata or {}),
            variables=call_values(agent.config.variables, variables),
            org=agent.org,
        )
        if record.variables:  # the agent as this call runs it: its {placeholders} filled
            agent = dataclasses.replace(agent, config=for_call(agent.config, record.variables))
        session = CallSession(
            agent.config,
            agent.version,
            engines or self.engines_for(agent),
            self.tools_for(agent) if self.tools_for is not None else self.tools,
            control,
            record,
            vad=FrameVAD(self.engines_cfg.vad_aggressiveness),
            on_event=self._on_event if listener is None else _both(self._on_event, listener),
        )
        self.admission.admit(record.id, control.transport_name, source, authenticated)
        self.active[record.id] = session
        self._empty.clear()
        log.info("call %s started: agent=%s version=%s transport=%s", record.id, agent.name, agent.version, record.transport)
        return session

    def rejected(self, agent: LoadedAgent, transport: str, reason: str, *, from_uri: str = "", to_uri: str = "",
                 metadata: dict[str, Any] | None = None, variables: dict[str, str] | None = None) -> CallRecord:
        """A call refused before it was answered (its inbound lookup said so): recorded, with
        the reason, and announced like an unanswered outbound call (started, then ended
        unanswered); it took no slot."""
        now = time.time()
        record = CallRecord(id=new_call_id(), agent=agent.name, agent_version=agent.version, transport=transport,
                            from_uri=from_uri, to_uri=to_uri, started_at=now, ended_at=now, end_reason="rejected",
                            ended_by="system", metadata={**(metadata or {}), "rejected": reason},
                            variables=call_values(agent.config.variables, variables), org=agent.org)
        log.info("call %s rejected before answer: agent=%s transport=%s: %s", record.id, agent.name, transport, reason)
        self._on_event(CallStarted(record))
        self._on_event(CallEnded(record))
        return record

    def _on_event(self, event: CallEvent) -> None:
        if isinstance(event, CallStarted):
            self._persist(event.record, self._txn_writes(event))
        elif isinstance(event, CallEnded):
            self.active.pop(event.record.id, None)
            self.admission.release(event.record.id)
            if not self.active:
                self._empty.set()
            log.info("call %s ended: %s", event.record.id, event.record.end_reason)
            self._persist(event.record, self._txn_writes(event))
        for fn in self.listeners:
            try:
                fn(event)
            except Exception:
                log.exception("call event listener failed")

    def _txn_writes(self, event: CallEvent) -> list[TxnWrite]:
        out = []
        for writer in self.transactional:
            try:
                w = writer(event)  # built now, from the record as it is at this event
            except Exception:
                log.exception("transactional writer failed")
                continue
            if w is not None:
                out.append(w)
        return out

    def _persist(self, record: CallRecord, writes: list[TxnWrite] | None = None) -> None:
        repo = self.repo_of(record.org)
        if repo is None:
            return
        task = asyncio.ensure_future(self._save(repo, record, writes or []))
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    def repo_of(self, org: str) -> CallRepo | None:
        """Where the calls of ``org`` are stored."""
        if org == "default" or self.repo is None or self.repo_for is None:
            return self.repo
        return self.repo_for(org)

    async def _save(self, repo: CallRepo, record: CallRecord, writes: list[TxnWrite]) -> None:
        try:
            await repo.save(record, also=[w[0] for w in writes])
        except Exception:
            log.exception("could not save call %s", record.id)
            return
        for _, after in writes:
            after()

    async def end(self, call_id: str, reason: EndReason = "api_hangup") -> bool:
        session = self.active.get(call_id)
        if session is None:
            return False
        try:
            await session.control.hangup()
        finally:
            await session.close(reason, ended_by="system")
        return True

    async def wait_empty(self) -> None:
        await self._empty.wait()

    async def close_all(self, reason: EndReason = "shutdown") -> None:
        for call_id in list(self.active):
            await self.end(call_id, reason)
        await self.flush()

    async def flush(self) -> None:
        """Wait until every call record has been written."""
        while self._bg:
            await asyncio.gather(*list(self._bg), return_exceptions=True)


def _both(a: Callable[[CallEvent], None], b: Callable[[CallEvent], None]) -> Callable[[CallEvent], None]:
    def call(event: CallEvent) -> None:
        a(event)
        try:
            b(event)
        except Exception:
            log.exception("transport event listener failed")

    return call
