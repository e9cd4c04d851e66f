"""The daemon's side of the control API: its agents and calls, adapted to the Protocols
in `voxd.api.deps` (functions come from `voxd.tools.function_source.LibraryFunctionSource`)."""

from __future__ import annotations

import asyncio
import builtins
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from voxd.agents.catalog import AgentCatalog, ReloadReport
from voxd.agents.loader import AgentLoadError, FieldError, LoadedAgent
from voxd.agents.orgs import DEFAULT_ORG, OrgCatalogs
from voxd.api.agent_yaml import api_errors
from voxd.api.deps import AgentInfo, AgentSource, InvalidAgent
from voxd.call.conversations import ConversationManager
from voxd.call.manager import CallManager
from voxd.call.recording import REQUEST_KEY
from voxd.core.errors import NotFound, NotSupported
from voxd.core.secrets import SecretBook

if TYPE_CHECKING:
    from aiohttp import web

    from voxd.api.ratelimit import BucketSet
    from voxd.config.cluster import RedisConfig
    from voxd.net.sip import SipEndpoint
    from voxd.ops.metrics import Metrics
    from voxd.store.repos import Store

log = logging.getLogger(__name__)


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
    """The live calls of organisation ``org`` (those its agents answered or placed); outbound
    calls use its agents and the trunks that list it (``sip.trunks[].orgs``)."""

    def __init__(self, calls: CallManager, agents: AgentCatalog | Callable[[], AgentCatalog | None],
                 sip: Callable[[], SipEndpoint | None],
                 secrets: Callable[[], SecretBook] = SecretBook.vendors, org: str = DEFAULT_ORG) -> None:
        self.calls = calls
        self._agents = agents  # a catalog, or (another organisation's) asked per call: its folder may come later
        self._secrets = secrets  # the declared secrets, current after a reload
        self._sip = sip  # asked per call: a reload may re-bind SIP as a new endpoint
        self.org = org

    @property
    def sip(self) -> SipEndpoint | None:
        return self._sip()

    @property
    def agents(self) -> AgentCatalog | None:
        return self._agents if isinstance(self._agents, AgentCatalog) else self._agents()

    async def active(self) -> builtins.list[dict[str, Any]]:
        return [s.record.to_dict() for s in self.calls.active.values() if s.record.org == self.org]

    async def end(self, call_id: str) -> bool:
        session = self.calls.active.get(call_id)
        return session is not None and session.record.org == self.org and await self.calls.end(call_id)

    async def dial(self, agent: str, to: str, from_: str | None, trunk: str | None = None, *,
                   variables: dict[str, str] | None = None, recording: dict[str, Any] | None = None) -> str:
        from voxd.net.sip_trunk import dial_trunk, pick_trunk

        sip = self.sip
        if sip is None:
            raise NotSupported("outbound calls need the SIP listener (sip.enabled: true)")
        catalog = self.agents
        a = None if catalog is None else catalog.get(agent)
        if a is None or a.org != self.org:
            raise NotFound(agent)
        meta = {REQUEST_KEY: recording} if recording else None  # read when the call's recorder is made
        via = pick_trunk(sip, trunk, to, org=self.org)
        if via is not None:
            session = await dial_trunk(sip, a, via, to, secrets=self._secrets(), from_user=from_,
                                       variables=variables, metadata=meta)
            return session.record.id
        session = await sip.dial(a, to, from_user=from_ or "voxd", variables=variables, metadata=meta)
        return session.record.id


class OrgAgentDirs:
    """The agents of organisation ``org`` for the API: its live catalog of ``agents/<org>/``
    (the default organisation keeps ``agents/`` itself), the one calls are routed to."""

    def __init__(self, fleet: OrgCatalogs, writing: dict[str, set[str]]) -> None:
        self.fleet, self.writing = fleet, writing
        self._agents: dict[str, DaemonAgents] = {}

    def __call__(self, org: str) -> AgentSource:
        got = self._agents.get(org)
        if got is None:
            try:
                catalog = self.fleet.ensure(org)
            except ValueError:  # a name whose folder is not an organisation's (agents/tests/)
                from voxd.api.services import NoAgents

                return NoAgents()
            got = self._agents[org] = DaemonAgents(catalog, self.writing.setdefault(org, set()))
        return got


def org_calls(calls: CallManager, fleet: OrgCatalogs, sip: Callable[[], SipEndpoint | None],
              secrets: Callable[[], SecretBook], org: str) -> DaemonCalls:
    """The live calls of organisation ``org``, its outbound calls dialled with its agents of
    ``agents/<org>/`` through the trunks listing it."""
    return DaemonCalls(calls, lambda: fleet.catalog(org), sip, secrets, org=org)


def audit_file_changes(db: Store, agents: AgentCatalog, report: ReloadReport,
                       writing: set[str]) -> builtins.list[asyncio.Task[None]]:
    """Audit rows (actor ``system``) for agent files changed on disk; not for those the API
    is writing (``writing``): the API audits its own."""
    changes = [(kind, n) for kind, names in (("added", report.added), ("updated", report.updated),
                                             ("removed", report.removed)) for n in names if n not in writing]
    if not changes:
        return []
    audit = db.audit()  # ``db`` is bound to the catalog's organisation
    before = dict(report.before)
    folder = "agents" if agents.org == DEFAULT_ORG else f"agents/{agents.org}"

    async def record() -> None:
        for kind, name in changes:
            agent = agents.get(name)
            await audit.append(actor="system", action=f"agent_file_{kind}", target=f"{folder}/{name}",
                               before=before.get(name), after=None if agent is None else agent.text)

    return [asyncio.ensure_future(record())]


def rate_buckets(cfg: RedisConfig, metrics: Metrics, app: web.Application) -> BucketSet | None:
    """The API's rate-limit buckets: in Redis, shared by every node, when ``redis.url`` is
    set (their health on /metrics, closed with the HTTP app), else None (local)."""
    url = cfg.resolved_url()
    if url is None:
        return None
    from voxd.api.shared_limits import RedisBuckets

    buckets = RedisBuckets(url, timeout_s=cfg.timeout_s, retry_s=cfg.retry_s)
    counted = [0]

    async def refresh() -> None:
        metrics.redis_up.set(1 if buckets.up else 0)
        metrics.ratelimit_fallbacks.inc(buckets.fallbacks - counted[0])
        counted[0] = buckets.fallbacks

    async def close(_app: web.Application) -> None:
        await buckets.close()

    metrics.before_scrape.append(refresh)
    app.on_cleanup.append(close)
    return buckets
def text_conversations(daemon: Any, org: str = DEFAULT_ORG) -> ConversationManager:
    """Text conversations of ``org`` for a ``voxd.app.Daemon``: its agents, the function
    library and egress of calls; stored with its calls; their events go to the function
    log and its webhooks."""
    assert daemon.db is not None and daemon.webhooks is not None

    async def agent(name: str) -> LoadedAgent | None:
        found: LoadedAgent | None = daemon.agents.getter(org)(name)  # asked each time: the folder may appear later
        return found

    conversations = ConversationManager(agent, lambda a: daemon.tool_library.registry_for(a.config, a.org),
                                        repo=daemon.db.for_org(org).conversations(), outbound=daemon.outbound)
    conversations.listeners += [daemon.function_log, daemon.webhooks.on_text_event]
    return conversations


def setup_analysis(daemon: Any) -> Any:
    """The post-call analysis worker of a ``voxd.app.Daemon`` whose store, calls, agents,
    webhooks and metrics exist: jobs owed in the ended call's transaction, its results
    in ``/metrics`` and ``call.analyzed`` through the webhook outbox; a service."""
    from voxd.analysis.service import AnalysisService

    def agent_for(org: str, name: str) -> Any:
        loaded = daemon.agent_orgs.get(org, name)  # the call's organisation's agent
        return None if loaded is None else loaded.config

    hooks = daemon.webhooks
    svc = AnalysisService(daemon.db, agent_for, outbound=daemon.outbound, outbox_write=hooks.outbox.add_in,
                          after_commit=hooks.outbox.committed,
                          retry_s=tuple(daemon.cfg.analysis.retry_schedule_s))
    if daemon.calls.repo is not None:
        daemon.calls.transactional.append(svc.writer)
    svc.listeners.append(daemon.metrics.on_analysis)
    daemon.services.append(("analysis", svc.start, svc.stop))
    return svc


def setup_retention(daemon: Any) -> Any:
    """The purge job of each organisation's retention (``voxd.call.retention``); a service."""
    from voxd.call.retention import RetentionJob

    rec = daemon.cfg.recordings
    job = RetentionJob(daemon.db, daemon.cfg.resolved_recordings(), rec.org_retention_interval_s,
                       rec.org_retention_batch)
    daemon.services.append(("retention", job.start, job.stop))
    return job


def close_cut_calls_at_start(daemon: Any) -> None:
    """A service of a ``voxd.app.Daemon`` on a store of its own (SQLite): at start, after
    recordings are recovered and before the analysis worker and any listener, the calls a
    killed predecessor left open are ended as ``node_lost`` and owed their analysis.
    (On a shared store another node's open calls are live: the cluster closes a lost
    node's calls instead.)"""
    from voxd.store.calls import close_cut_calls
    from voxd.store.db import Database

    db = daemon.db
    if not isinstance(db, Database):
        return

    async def start() -> None:
        for call in await close_cut_calls(db):
            log.warning("call %s was cut short by an unclean stop: ended as node_lost", call["id"])
            if call["answered"]:
                await db.for_org(call["org"]).analysis().enqueue(call["id"])

    async def stop() -> None:
        return None

    daemon.services.append(("cut-calls", start, stop))
