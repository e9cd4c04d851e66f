"""The analysis worker: durable jobs in the store, run after each call, retried with backoff.

A call's job is written in the transaction that stores the ended call (``writer``, a
``CallManager.transactional`` hook), so a crash cannot lose it; at start the worker picks
up whatever is pending (a daemon killed mid-analysis resumes it). A failed attempt is
retried after ``retry_s[attempt]``; when the model keeps failing, the last attempt
analyses without it (dialog slots, template summary) and keeps the model's error. The
result, the closed job and the ``call.analyzed`` outbox rows commit together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from voxd.agents.schema import AgentConfig
from voxd.analysis.analyse import analyse, headline
from voxd.call.events import CallEnded, CallEvent
from voxd.core.secrets import Outbound
from voxd.providers import engines
from voxd.providers.base import LanguageModel, ProviderError, StructuredOutput
from voxd.providers.engines import BuildContext
from voxd.store.repos import AnalysisJob, AnalysisRepo, Message, Store, Transaction, TxnWrite
from voxd.webhooks.events import analyzed_message

log = logging.getLogger("voxd.analysis")

RETRY_S = (5.0, 30.0, 120.0, 600.0)
IDLE_POLL_S = 5.0

AgentLookup = Callable[[str, str], AgentConfig | None]  # (org, agent name)
OutboxWrite = Callable[[Transaction, list[Message], str], Awaitable[object]]  # (.., organisation)


def structured_model(agent: AgentConfig, outbound: Outbound) -> tuple[StructuredOutput | None, str | None]:
    """The first model of the analysis's (or the agent's) llm chain that can be held to
    a schema, and its engine name; (None, None) if none can."""
    a = agent.analysis
    if a.engine == "dialog" or (a.engine == "auto" and "analysis" not in agent.model_fields_set):
        return None, None  # auto: a model (and its cost) only for an agent that asks for an analysis
    chain = [a.llm] if a.llm is not None else [agent.llm, *agent.llm.fallback]
    for cfg in chain:
        try:
            llm = engines.build("llm", cfg, BuildContext(outbound, agent))
        except Exception as e:  # a model that cannot be built: the next one, or none
            log.warning("analysis: cannot build llm %s for agent %s: %s", cfg.engine, agent.name, e)
            continue
        if isinstance(llm, LanguageModel) and isinstance(llm, StructuredOutput):
            return llm, cfg.engine
    return None, None


class AnalysisService:
    def __init__(self, db: Store, agent_for: AgentLookup, *, outbound: Outbound | None = None,
                 outbox_write: OutboxWrite | None = None, after_commit: Callable[[list[Message]], None] | None = None,
                 retry_s: tuple[float, ...] = RETRY_S) -> None:
        self.db = db
        self.repo: AnalysisRepo = db.analysis()
        self.agent_for = agent_for
        self.outbound = outbound or Outbound()
        self.outbox_write = outbox_write
        self.after_commit = after_commit
        self.retry_s = retry_s
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []  # (agent, analysis), e.g. /metrics
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.done = 0

    # -- owed at the call's end, in the call record's transaction
    def writer(self, event: CallEvent) -> tuple[TxnWrite, Callable[[], None]] | None:
        if not isinstance(event, CallEnded) or event.record.answered_at is None:
            return None
        r = event.record
        agent = self.agent_for(r.org, r.agent)
        if agent is not None and not agent.analysis.enabled:
            return None
        repo = self.repo if r.org == self.db.org else self.db.for_org(r.org).analysis()  # the job is the call's org's

        async def write(conn: Transaction) -> object:
            await repo.enqueue_in(conn, r.id)
            return None

        return write, self.wake

    def wake(self) -> None:
        self._wake.set()

    # -- the worker
    async def start(self) -> None:
        counts = await self.repo.counts()
        if counts.get("pending"):
            log.info("analysis: resuming %d pending jobs", counts["pending"])
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="analysis-worker")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while not self._stopping:
            try:
                for job in await self.repo.due(time.time()):
                    await self.run_job(job)
                nxt = await self.repo.next_due_at()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("analysis: worker pass failed")
                nxt = None
            wait = IDLE_POLL_S if nxt is None else max(0.0, min(IDLE_POLL_S, nxt - time.time()))
            self._wake.clear()
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel that
            # coincides with the wake-up, and stop() would then wait forever
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def run_job(self, job: AnalysisJob) -> bool:
        """One attempt; True when the analysis is stored."""
        store = self.db.for_org(job.org)
        call = await store.calls().get(job.call_id)
        if call is None:
            await self.repo.failed_attempt(job.call_id, "the call is not in the store", None)
            return False
        agent = self.agent_for(job.org, call["agent"]) or AgentConfig(name=call["agent"])
        last = job.attempts >= len(self.retry_s)
        model, engine = structured_model(agent, self.outbound)
        try:
            try:
                analysis = await analyse(call, agent, model, engine=engine, prices=engines.list_prices())
            except ProviderError as e:
                if not last:
                    raise
                analysis = await analyse(call, agent, None, model_error=str(e))
        except Exception as e:
            delay = self.retry_s[min(job.attempts, len(self.retry_s) - 1)]
            log.warning("analysis of %s failed (attempt %d): %s", job.call_id, job.attempts + 1, e)
            await self.repo.failed_attempt(job.call_id, f"{type(e).__name__}: {e}",
                                           None if last else time.time() + delay)
            return False
        finally:
            aclose = getattr(model, "aclose", None)
            if aclose is not None:
                await aclose()
        msgs = [analyzed_message(job.call_id, call["agent"], analysis, call.get("variables"))]
        also: list[TxnWrite] = []
        if self.outbox_write is not None:
            write = self.outbox_write

            async def emit(conn: Transaction) -> object:
                return await write(conn, msgs, job.org)  # to the call's organisation's endpoints

            also.append(emit)
        await self.repo.complete(job, analysis, headline(analysis), also)
        if self.after_commit is not None and also:
            self.after_commit(msgs)
        self.done += 1
        log.info("call %s analysed: outcome=%s method=%s", job.call_id, analysis.get("outcome"), analysis.get("method"))
        for fn in self.listeners:
            try:
                fn(call["agent"], analysis)
            except Exception:
                log.exception("analysis listener failed")
        return True

    async def wait_idle(self, timeout_s: float = 30.0) -> None:
        """Until no job is due now (tests, shutdown)."""
        async with asyncio.timeout(timeout_s):
            while await self.repo.due(time.time(), 1):
                self.wake()
                await asyncio.sleep(0.05)
