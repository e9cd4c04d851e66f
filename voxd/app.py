"""The composition root: builds every part of the daemon, starts and stops it in order.

Start: database -> agents (loaded, then watched) -> tools -> calls -> engines warmed
-> listeners (HTTP: /healthz, /readyz, /metrics, control API, websocket media; SIP)
-> READY=1 to systemd. Stop (SIGTERM): refuse new calls, let active calls finish
up to the drain timeout, close the rest with a closing line, then listeners and
database; a second SIGTERM forces the exit.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from voxd import __version__
from voxd.agents.catalog import AgentCatalog
from voxd.agents.orgs import OrgCatalogs
from voxd.api.access_log import AccessLogger
from voxd.api.listener import GuardedSite, ListenerGuard, ListenerLimits
from voxd.api.sip import SIP_REGISTRATIONS, SIP_TRUNKS
from voxd.api.sip_trace import SIP_TRACES
from voxd.call.admission import Admission
from voxd.call.conversations import ConversationManager
from voxd.call.lookup import InboundLookups
from voxd.call.manager import CallManager
from voxd.call.org_gate import OrgCallGate
from voxd.config import VoxdConfig
from voxd.media import inference
from voxd.net.clock import MediaClock
from voxd.net.media_auth import MediaAuth
from voxd.net.sip_carrier import setup_carrier
from voxd.net.twilio import TwilioSettings, setup_twilio
from voxd.net.webrtc import WebRtcSettings, setup_webrtc
from voxd.net.webtoken import WEB_TOKENS_KEY, WebTokens, api_key_check
from voxd.net.ws_media import setup_ws_media
from voxd.ops import descriptors
from voxd.ops.metrics import Metrics
from voxd.ops.sdnotify import Notifier
from voxd.providers.llm.local import runtime as local_llm
from voxd.tools.builtins import default_registry

if TYPE_CHECKING:
    from voxd.agents.catalog import ReloadReport
    from voxd.api.deps import ApiDeps
    from voxd.api.routing import RouteTable
    from voxd.core.secrets import Outbound
    from voxd.net.sip import SipEndpoint
    from voxd.net.sip_options import TrunkProbes
    from voxd.net.sip_register import Registrations
    from voxd.net.sip_tls import SipTlsListener
    from voxd.net.sip_trace import SipTracer
    from voxd.store.repos import Store
    from voxd.webhooks.service import Webhooks

log = logging.getLogger("voxd")


class Daemon:
    def __init__(self, cfg: VoxdConfig, base_dir: Path) -> None:
        self.cfg = cfg
        self.base_dir = base_dir
        agents_dir = Path(cfg.agents_dir)
        if not agents_dir.is_absolute():
            agents_dir = base_dir / agents_dir
        self.outbound = cfg.outbound()  # egress policy and declared secrets (egress:, secrets:)
        self.agents = AgentCatalog(agents_dir, default=cfg.default_agent, outbound=self.outbound)
        self.agent_orgs = OrgCatalogs(self.agents)  # and agents/<org>/ for every other organisation
        self.org_writing: dict[str, set[str]] = {}  # per organisation: agents the API is writing
        self.api_writing: set[str] = set()  # agents being written through the API (audited there)
        self.org_conversations: dict[str, ConversationManager] = {}  # other organisations' text conversations
        self.tools = default_registry()
        self.clock = MediaClock()
        self.metrics = Metrics()
        self.notifier = Notifier()
        self.db: Store | None = None
        self.sip: SipEndpoint | None = None
        self.webhooks: Webhooks | None = None
        self.analysis: Any = None  # voxd.analysis.service.AnalysisService, once started
        self.retention: Any = None  # voxd.call.retention.RetentionJob, once started
        self.calls: CallManager | None = None
        self._runner: web.AppRunner | None = None
        self._api_deps: ApiDeps | None = None  # once the HTTP app is built (reload swaps its settings)
        self.http_port: int | None = None
        self.started_at = time.time()
        self.ready = False
        self.draining = False
        self._stop = asyncio.Event()
        self._stop_requests = 0
        self._reload_pending = False
        self.config_loader: Callable[[], VoxdConfig] | None = None  # set by `voxd run` to re-read its file
        self._force = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # transports and services register (start, stop) pairs here
        self.services: list[tuple[str, Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]] = []
        self.extra_routes: list[RouteTable] = []  # routes other parts add to the control API
        self.http_guard = ListenerGuard(self._listener_limits)  # connection caps and slowloris timeouts
        self.registrations: Registrations | None = None  # set up by voxd/net/sip_carrier.py
        self.sip_tls: SipTlsListener | None = None
        self.trunk_probes: TrunkProbes | None = None  # OPTIONS keepalives (voxd/net/sip_options.py)
        self.sip_tracer: SipTracer | None = None  # per-call SIP traces (voxd/net/sip_trace.py)
        self.ready_checks: dict[str, Callable[[], bool]] = {}  # more /readyz checks
        self.reload_hooks: list[Callable[[VoxdConfig, VoxdConfig], Awaitable[None]]] = []  # after SIGHUP's config

    # ------------------------------------------------------------ start
    async def start(self) -> None:
        from voxd.store.backends import open_store

        inference.configure(self.cfg.engines.inference_threads)
        descriptors.raise_limit(self.cfg)
        state = self.cfg.resolved_state_dir()
        state.mkdir(parents=True, exist_ok=True)
        local_llm.configure(self.cfg.local_llm, state)
        # the one place that chooses the store: everything else sees voxd.store.repos.Store
        db: Store = await open_store(self.cfg.store.resolved_url(), default_path=self.cfg.resolved_database(),
                                     state_dir=state)
        self._apply_redaction(self.cfg)
        db.redaction = self.cfg.redaction.policy()
        self.db = db
        from voxd.tools.execlog import ExecutionLogger
        from voxd.tools.library import ToolLibrary

        self.tool_library = ToolLibrary(self.cfg.tools, base_dir=self.base_dir, state_dir=state, db=db,
                                        outbound=self.outbound)
        self.tools = self.tool_library.base
        library = self.tool_library
        library.orgs = self.agent_orgs.orgs  # each organisation's agents run its own API-created functions
        await self.tool_library.start()
        admission = Admission(self.cfg.sip.max_calls, **self.cfg.calls.admission_args())
        self.calls = CallManager(self.tools, self.cfg.engines, db.calls(), max_calls=self.cfg.sip.max_calls,
                                 tools_for=lambda agent: library.registry_for(agent.config, agent.org),
                                 outbound=self.outbound,
                                 admission=admission)
        self.calls.repo_for = lambda org: db.for_org(org).calls()  # another organisation's agent: its calls
        self.calls.lookups = InboundLookups(lambda: self.outbound, library.signer)  # agents' inbound_lookup
        self.calls.org_gate = OrgCallGate(db.orgs, self.calls)  # organisations' calls at once / per day
        self.calls.listeners.append(self.metrics.on_call_event)
        self.function_log = ExecutionLogger(db.executions(), repo_for=lambda org: db.for_org(org).executions())
        self.calls.listeners.append(self.function_log)
        report = self.agent_orgs.reload()["default"]
        if len(self.agent_orgs.orgs()) > 1:
            await library.refresh_stored()  # the functions of the organisations just found
        if not self.agents.names():
            log.warning("no valid agents in %s", self.agents.directory)
        from voxd.webhooks.service import setup_webhooks

        self.webhooks = hooks = setup_webhooks(self)  # after the first load: only later agent changes are events
        from voxd.call.recording import Recordings
        from voxd.daemon_sources import close_cut_calls_at_start

        self.recordings = rec = Recordings(self.cfg.resolved_recordings(), db.calls())
        rec.repo_for = lambda org: db.for_org(org).calls()
        self.calls.recorder = rec.recorder_for  # stopped before webhooks: its last recording.ready goes out
        self.services.append(("recordings", lambda: rec.start(self.cfg.recordings.sweep_interval_s), rec.stop))
        close_cut_calls_at_start(self)  # after recordings are recovered, before analysis and listeners
        from voxd.daemon_sources import setup_retention

        self.retention = setup_retention(self)
        hooks.worker.on_attempt = self.metrics.on_webhook_attempt
        from voxd.daemon_sources import setup_analysis

        self.analysis = setup_analysis(self)  # after webhooks: its results go through their outbox
        self.conversations = self._conversations()
        store = hooks.store

        async def outbox_depth() -> None:
            self.metrics.webhook_depth.set((await store.counts()).get("pending", 0))

        self.metrics.before_scrape.append(outbox_depth)
        self.agents.listeners.append(self._on_agents_changed)
        self.agent_orgs.listeners.append(self._on_org_agents_changed)
        self.agent_orgs.listeners.append(lambda catalog, report: hooks.on_agents_reloaded(report, catalog))
        await self.tool_library.warm_up([a.config for c in self.agent_orgs.catalogs() for a in c.all()])
        self.agent_orgs.start_watching(self.cfg.reload_interval_s)
        if self.cfg.sip.enabled:
            from voxd.net.sip import SipEndpoint

            self.sip = SipEndpoint(self.cfg.sip, self.agents, self.calls, self.clock, accepting=lambda: not self.draining)
            self.services.append(("sip", self.sip.start, self.sip.stop))
            setup_carrier(self)  # registrations (services, /readyz, /metrics), trunks
        if self.cfg.engines.preload:
            self.notifier.notify(STATUS="loading speech models")
            await self.calls.warm_up([a for c in self.agent_orgs.catalogs() for a in c.all()])
        self.engines_loaded = True
        if self.cfg.http.enabled:
            await self._start_http()
        for name, start, _ in self.services:
            await start()
            log.info("%s listening", name)
        self.metrics.start_lag_probe()
        self._start_watchdog()
        self.ready = True
        self.notifier.notify(READY=1, STATUS=self._status())
        self._tasks.append(asyncio.create_task(self._status_loop(), name="sd-status"))
        if self._reload_pending:
            self.reload()
        log.info("voxd %s ready: agents=%s http=%s errors=%d", __version__, self.agents.names(),
                 f"{self.cfg.http.host}:{self.http_port}" if self.http_port else "off", len(report.errors))

    def _conversations(self, org: str = "default") -> ConversationManager:
        from voxd.daemon_sources import text_conversations

        return text_conversations(self, org)

    def _org_conversations(self, org: str) -> ConversationManager:
        """Another organisation's text conversations (one manager per organisation, made on first use)."""
        if org not in self.org_conversations:
            self.org_conversations[org] = self._conversations(org)
        return self.org_conversations[org]

    def build_http_app(self) -> web.Application:
        assert self.calls is not None and self.db is not None
        app = web.Application(client_max_size=1 << 20, middlewares=[self.http_guard.middleware(), self.metrics.middleware])
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self.metrics.handle)
        from voxd.api.app import AppKeyCheck

        tokens = WebTokens.from_state_dir(self.cfg.resolved_state_dir())
        app[WEB_TOKENS_KEY] = tokens  # web pages' and Twilio streams' one-use tokens
        keys = AppKeyCheck(app)  # the API's one key check, injected: transports never read the key store

        def anonymous() -> bool:
            return self.cfg.http.media_unauthenticated

        setup_ws_media(app, self.agents, self.calls, self.clock, accepting=lambda: not self.draining,
                       auth=MediaAuth(tokens, api_key_check(keys), anonymous))
        # settings are read per request from the live config, so SIGHUP applies to the next call
        if self.cfg.twilio.enabled:
            setup_twilio(app, self.agents, self.calls, self.clock, accepting=lambda: not self.draining,
                         settings=lambda: TwilioSettings.from_config(self.cfg.twilio, self.cfg.http.public_url,
                                                                 self.outbound.policy),
                         open_to_anonymous=anonymous)
        if self.cfg.webrtc.enabled:
            setup_webrtc(app, self.agents, self.calls, self.clock, tokens=tokens, keys=keys,
                         accepting=lambda: not self.draining,
                         settings=lambda: WebRtcSettings.from_config(self.cfg.webrtc, self.cfg.http.host))
        from voxd.api import webtokens

        app[webtokens.WEB_TOKEN_MINT] = lambda agent, ttl_s, org: tokens.mint(agent, ttl_s, org=org)
        app[SIP_REGISTRATIONS] = lambda: self.registrations.status() if self.registrations else []
        app[SIP_TRUNKS] = lambda: self.trunk_probes.status() if self.trunk_probes else []
        if self.sip_tracer is not None:
            app[SIP_TRACES] = self.sip_tracer.render
        from voxd.api.app import setup_api
        from voxd.api.deps import ApiDeps, api_settings
        from voxd.core.errors import NotFound
        from voxd.daemon_sources import DaemonAgents, DaemonCalls, OrgAgentDirs, org_calls, rate_buckets
        from voxd.tools.function_source import LibraryFunctionSource

        calls = self.calls
        self._api_deps = ApiDeps(self.db, DaemonAgents(self.agents, self.api_writing),
                                 DaemonCalls(self.calls, self.agents, lambda: self.sip, lambda: self.outbound.secrets),
                                 LibraryFunctionSource(self.tool_library, not_found=NotFound), api_settings(self.cfg.api),
                                 conversations=self.conversations,
                                 org_conversations=self._org_conversations,
                                 org_agents=OrgAgentDirs(self.agent_orgs, self.org_writing),
                                 org_calls=lambda org: org_calls(calls, self.agent_orgs, lambda: self.sip,
                                                                 lambda: self.outbound.secrets, org),
                                 buckets=rate_buckets(self.cfg.redis, self.metrics, app),
                                 recordings=self.cfg.resolved_recordings(),
                                 outbound=lambda: self.outbound)
        setup_api(app, self._api_deps, extra_routes=[webtokens.routes, *self.extra_routes])
        return app

    def _listener_limits(self) -> ListenerLimits:
        h = self.cfg.http
        return ListenerLimits(h.max_connections, h.max_connections_per_source, h.header_timeout_s,
                              h.keepalive_timeout_s, h.body_timeout_s)

    async def _start_http(self) -> None:
        app = self.build_http_app()
        # the guard closes idle and slow connections; aiohttp's own timer is only a backstop
        backstop = max(self.cfg.http.keepalive_timeout_s, self.cfg.http.header_timeout_s) + 5
        access = type("Access", (AccessLogger,), {"trust_forwarded_for": self.cfg.api.trust_forwarded_for})
        self._runner = web.AppRunner(app, access_log=logging.getLogger("voxd.access") if self.cfg.http.access_log
                                     else None, access_log_class=access, handle_signals=False,
                                     keepalive_timeout=backstop)
        await self._runner.setup()
        site = GuardedSite(self._runner, self.cfg.http.host, self.cfg.http.port, self.http_guard)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.http_port = sockets[0].getsockname()[1] if sockets else self.cfg.http.port

    # ------------------------------------------------------------ health
    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({
            "status": "ok",
            "version": __version__,
            "uptime_s": round(time.time() - self.started_at, 1),
            "active_calls": len(self.calls.active) if self.calls else 0,
            "agents": self.agents.names(),
        })

    async def _readyz(self, request: web.Request) -> web.Response:
        checks: dict[str, bool] = {
            "listeners": self.ready,
            "engines": getattr(self, "engines_loaded", False),
            "agents": bool(self.agents.names()),
            "not_draining": not self.draining,
            "database": await self._db_writable(),
            "local_llm": local_llm.ready(),  # every local model in use has a working slot
        }
        checks.update({name: check() for name, check in self.ready_checks.items()})
        room = descriptors.headroom(self.cfg)
        checks["descriptors"] = room.ok
        ok = all(checks.values())
        body: dict[str, Any] = {"ready": ok, "checks": checks, "descriptors": room.as_dict()}
        if local_llm.health():
            body["local_llm"] = local_llm.health()
        return web.json_response(body, status=200 if ok else 503)

    async def _db_writable(self) -> bool:
        return self.db is not None and await self.db.writable()

    # ------------------------------------------------------------ systemd
    def _status(self) -> str:
        n = len(self.calls.active) if self.calls else 0
        return f"{'draining, ' if self.draining else ''}{n} active call{'s' if n != 1 else ''}, agents: {', '.join(self.agents.names())}"

    async def _status_loop(self) -> None:
        last = ""
        while True:
            await asyncio.sleep(1.0)
            status = self._status()
            if status != last:
                self.notifier.notify(STATUS=status)
                last = status

    def _start_watchdog(self) -> None:
        interval = self.notifier.watchdog_interval_s()
        if interval is None:
            return

        async def ping() -> None:  # runs on the event loop: a stalled loop stops the pings
            while True:
                self.notifier.notify(WATCHDOG=1)
                await asyncio.sleep(interval)

        self._tasks.append(asyncio.create_task(ping(), name="sd-watchdog"))

    # ------------------------------------------------------------ signals
    def _on_agents_changed(self, report: ReloadReport) -> None:
        """Index new or changed agents' knowledge bases and functions in the background;
        audit agent files changed on disk (``voxd.daemon_sources.audit_file_changes``)."""
        task = asyncio.ensure_future(self.tool_library.warm_up([a.config for a in self.agents.all()]))
        self._tasks.append(task)
        if self.db is not None:
            from voxd.daemon_sources import audit_file_changes

            self._tasks += audit_file_changes(self.db, self.agents, report, self.api_writing)

    def _on_org_agents_changed(self, catalog: AgentCatalog, report: ReloadReport) -> None:
        """The same for the agents of an organisation other than the default (audited in its log)."""
        self._tasks.append(asyncio.ensure_future(self.tool_library.warm_up([a.config for a in catalog.all()])))
        if self.db is not None:
            from voxd.daemon_sources import audit_file_changes

            writing = self.org_writing.setdefault(catalog.org, set())
            self._tasks += audit_file_changes(self.db.for_org(catalog.org), catalog, report, writing)

    def reload(self) -> None:
        """SIGHUP / `systemctl reload`: re-read the config and the agents.
        A reload asked for while the daemon is still starting runs once it is ready."""
        if not self.ready:
            self._reload_pending = True
            return
        self._reload_pending = False
        self._tasks.append(asyncio.ensure_future(self.reload_now()))

    async def reload_now(self) -> None:
        self.notifier.notify(RELOADING=1, MONOTONIC_USEC=int(time.monotonic() * 1e6))
        try:
            if self.config_loader is not None:
                await self._reload_config()
            reports = await self.agent_orgs.refresh(force=True)
            report = reports["default"]
            if self.db is not None:
                await self.db.audit().append(actor="system", action="reload", target="voxd.yaml",
                                             after={"agents": self.agents.names(), "errors": len(report.errors)})
            for err in (e for r in reports.values() for e in r.errors):
                log.error("reload: %s", err)
            log.info("reload done: %d agents, %d errors", len(self.agents.names()), len(report.errors))
        finally:
            self.notifier.notify(READY=1, STATUS=self._status())

    @staticmethod
    def _apply_redaction(cfg: VoxdConfig) -> None:
        from voxd.logs import set_log_redaction

        set_log_redaction(cfg.redaction.policy().for_logs() if cfg.redaction.enabled else None)

    async def _reload_config(self) -> None:
        """A broken config file is rejected whole and the running config stays.
        Log levels and the agents folder apply at once; listeners whose address
        changed are re-bound (SIP only while it carries no calls)."""
        from voxd.config import ConfigError
        from voxd.logs import setup_logging

        assert self.config_loader is not None
        try:
            new = self.config_loader()
        except ConfigError as e:
            log.error("reload: config rejected, keeping the running one: %s", e)
            return
        old, self.cfg = self.cfg, new
        if (new.log_level, new.log_levels) != (old.log_level, old.log_levels):
            setup_logging(new.log_level, new.log_levels)
        if new.redaction != old.redaction:
            self._apply_redaction(new)
            if self.db is not None:
                self.db.redaction = new.redaction.policy()
        outbound = new.outbound()
        if outbound != self.outbound:
            self._apply_outbound(outbound)
        if (new.webhooks != old.webhooks or new.egress != old.egress) and self.webhooks is not None:
            self.webhooks.configure(new.webhooks, self.outbound.policy)
            log.info("reload: webhook settings applied")
        agents_dir = Path(new.agents_dir)
        self.agents.directory = agents_dir if agents_dir.is_absolute() else self.base_dir / agents_dir
        self.agents.default_name = new.default_agent
        if self._runner is not None and (new.http.host, new.http.port) != (old.http.host, old.http.port):
            site = GuardedSite(self._runner, new.http.host, new.http.port, self.http_guard)
            try:
                await site.start()
            except OSError as e:
                log.error("reload: cannot listen on %s:%d, keeping the old HTTP address: %s",
                          new.http.host, new.http.port, e)
            else:
                for old_site in [x for x in self._runner.sites if x is not site]:
                    await old_site.stop()
                sockets = getattr(site._server, "sockets", None) or []
                self.http_port = sockets[0].getsockname()[1] if sockets else new.http.port
                log.info("HTTP re-bound to %s:%s", new.http.host, self.http_port)
        if new.api != old.api and self._api_deps is not None:
            from voxd.api.deps import api_settings

            self._api_deps.settings = api_settings(new.api, pepper=self._api_deps.settings.pepper)
            log.info("reload: API limits applied")
        if self.calls is not None:
            # the daemon-wide cap, whatever the transport, and each transport's share of it
            self.calls.admission.configure(new.sip.max_calls, **new.calls.admission_args())
        if new.sip.enabled != old.sip.enabled or new.http.enabled != old.http.enabled:
            log.warning("reload: turning a listener on or off takes a restart")
        if self.sip is not None and new.sip != old.sip:
            await self._reload_sip(old, new)
        for hook in self.reload_hooks:  # registrations, the TLS listener's certificate
            await hook(old, new)

    def _apply_outbound(self, outbound: Outbound) -> None:
        """A reloaded egress: or secrets: block: validation, functions and the next call's
        engines use it (agents are re-validated by the reload that follows)."""
        self.outbound = outbound
        self.agents.outbound = outbound
        if getattr(self, "tool_library", None) is not None:
            self.tool_library.configure_outbound(outbound)
        if self.calls is not None:
            self.calls.outbound = outbound
        if getattr(self, "conversations", None) is not None:
            self.conversations.outbound = outbound
        for manager in self.org_conversations.values():
            manager.outbound = outbound
        log.info("reload: egress policy and declared secrets applied")

    async def _reload_sip(self, old: VoxdConfig, new: VoxdConfig) -> None:
        """Settings apply to the next call at once; the listener's address, TCP and the
        RTP port range are re-bound, but only while no SIP call is up."""
        assert self.sip is not None and self.calls is not None
        bound = ("host", "port", "tcp", "rtp_port_min", "rtp_port_max")
        if all(getattr(new.sip, f) == getattr(old.sip, f) for f in bound):
            self.sip.configure(new.sip)
            log.info("reload: SIP settings applied")
        elif self.sip.sip_calls:
            log.warning("reload: SIP address, TCP and RTP port changes wait until the %d active SIP calls end; "
                        "reload again then (the other SIP settings are applied)", len(self.sip.sip_calls))
            kept = new.sip.model_copy(update={f: getattr(old.sip, f) for f in bound})
            self.cfg = new.model_copy(update={"sip": kept})
            self.sip.configure(kept)
        else:
            from voxd.net.sip import SipEndpoint

            await self.sip.stop()
            self.sip = SipEndpoint(new.sip, self.agents, self.calls, self.clock,
                                   accepting=lambda: not self.draining)
            await self.sip.start()
            self.services = [x if x[0] != "sip" else ("sip", self.sip.start, self.sip.stop) for x in self.services]
            log.info("reload: SIP re-bound to %s:%d", new.sip.host, self.sip.port)

    def request_stop(self) -> None:
        self._stop_requests += 1
        self._stop.set()
        if self._stop_requests >= 2:
            log.warning("second stop request: forcing exit")
            self._force.set()

    def install_signal_handlers(self) -> None:
        """Installed before start(), so a signal sent right after READY=1 (or during
        start-up) never meets the default action, which for SIGHUP is to exit."""
        loop = asyncio.get_running_loop()
        for sig, fn in ((signal.SIGTERM, self.request_stop), (signal.SIGINT, self.request_stop), (signal.SIGHUP, self.reload)):
            try:
                loop.add_signal_handler(sig, fn)
            except (NotImplementedError, RuntimeError):
                pass

    async def run_until_stopped(self) -> None:
        await self._stop.wait()

    # ------------------------------------------------------------ stop
    async def drain(self) -> None:
        """Refuse new calls; wait for active ones up to drain_timeout_s; close the rest."""
        if self.calls is None:
            return
        self.draining = True
        self.calls.accepting = False
        self.notifier.notify(STOPPING=1, STATUS=self._status())
        if self.registrations is not None:
            await self.registrations.stop()  # Expires: 0 first: the carrier stops sending calls here
        deadline = time.monotonic() + self.cfg.drain_timeout_s
        if self.calls.active:
            log.info("draining %d active calls (up to %.0f s)", len(self.calls.active), self.cfg.drain_timeout_s)
        await self._wait_calls_or_force(deadline - time.monotonic())
        if self.calls.active and not self._force.is_set():
            for session in list(self.calls.active.values()):
                if session.record.answered_at is None:  # still ringing: nobody would hear a closing line
                    await session.close("shutdown", ended_by="system")
                else:
                    session.end_with(self.cfg.drain_message, "shutdown")
            await self._wait_calls_or_force(15.0)
        await self.calls.close_all("shutdown")

    async def _wait_calls_or_force(self, seconds: float) -> None:
        assert self.calls is not None
        waits = [asyncio.ensure_future(self.calls.wait_empty()), asyncio.ensure_future(self._force.wait())]
        try:
            await asyncio.wait(waits, timeout=max(0.0, seconds), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def stop(self) -> None:
        self.ready = False
        try:
            await self.drain()
        finally:
            for _, _, stop in reversed(self.services):
                try:
                    await stop()
                except Exception:
                    log.exception("service stop failed")
            for t in self._tasks:
                t.cancel()
            await self.metrics.stop()
            if getattr(self, "conversations", None) is not None:
                await self.conversations.close_all()
            for manager in self.org_conversations.values():
                await manager.close_all()
            if getattr(self, "function_log", None) is not None:
                await self.function_log.close()
            if getattr(self, "tool_library", None) is not None:
                await self.tool_library.close()
            lookups = self.calls.lookups if self.calls is not None else None
            if lookups is not None:
                await lookups.aclose()
            await self.agent_orgs.stop_watching()
            await local_llm.shutdown()
            await self.clock.stop()
            if self._runner is not None:
                await self._runner.cleanup()
            await self.http_guard.close()
            if self.db is not None:
                await self.db.close()
            self.notifier.close()
            log.info("voxd stopped")


async def serve(cfg: VoxdConfig, base_dir: Path, loader: Callable[[], VoxdConfig] | None = None) -> int:
    daemon = Daemon(cfg, base_dir)
    daemon.config_loader = loader
    daemon.install_signal_handlers()
    try:
        await daemon.start()
        await daemon.run_until_stopped()
    finally:
        await daemon.stop()
    return 0
