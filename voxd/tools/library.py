"""The function library the daemon owns: built-ins, custom functions, per-agent registries.

``ToolLibrary`` holds what tools share across calls (daemon settings, the HTTP client
session, knowledge-base indexes, the signing secret, functions created through the API)
and builds each agent's registry: the built-ins plus the agent's own ``functions:``
plus API-created functions, all of which the agent may call when it lists them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp

from voxd.agents.schema import AgentConfig, FunctionDef, HttpFunction
from voxd.config.tools import ToolsConfig, read_secret
from voxd.core.egress_http import egress_session
from voxd.core.redact import Redactor, default_redactor
from voxd.core.secrets import Outbound
from voxd.core.signing import Signer, SigningError, load_or_create_secret
from voxd.store.repos import Store
from voxd.tools.builtins import builtin_tools
from voxd.tools.calendar_events import calendar_tool
from voxd.tools.http_functions import http_tool
from voxd.tools.knowledge import KnowledgeBases, knowledge_tool
from voxd.tools.mail import email_tool
from voxd.tools.plugins import PluginError, python_tool
from voxd.tools.registry import Tool, ToolError, ToolRegistry
from voxd.tools.weather import weather_tool

log = logging.getLogger(__name__)

SIGNING_KEY_FILE = "function-signing.key"


class ToolLibrary:
    def __init__(
        self,
        config: ToolsConfig | None = None,
        *,
        base_dir: Path | None = None,
        state_dir: Path | None = None,
        db: Store | None = None,
        redactor: Redactor | None = None,
        embedder: Any = "auto",
        outbound: Outbound | None = None,
    ) -> None:
        self.config = config or ToolsConfig()
        self.outbound = outbound or Outbound()  # strict: public destinations, vendor secrets only
        self.base_dir = base_dir or Path.cwd()
        self.state_dir = state_dir
        self.db = db
        self.redactor = redactor or default_redactor
        if embedder == "auto":
            embedder = shared_embedder if self.config.knowledge.embeddings else None
        self.knowledge = KnowledgeBases(self.config.knowledge, self.base_dir, embedder)
        self.plugin_folders = [self._path(p) for p in self.config.plugin_paths]
        self._sessions: dict[str, aiohttp.ClientSession] = {}  # per use: "functions", "tools"
        self._retired: list[aiohttp.ClientSession] = []
        self._signer: Signer | None = None
        self._stored: dict[str, Tool] = {}  # the default organisation's API-created functions
        self._org_stored: dict[str, dict[str, Tool]] = {}  # another organisation's
        self.orgs: Callable[[], Iterable[str]] = lambda: ()  # the others whose agents take calls
        self._refresh_task: asyncio.Task[None] | None = None
        self.base = ToolRegistry()
        for t in self.builtin_tools():
            self.base.register(t)

    def _path(self, raw: str) -> Path:
        p = Path(raw).expanduser()
        return (p if p.is_absolute() else self.base_dir / p).resolve()

    # -- shared resources
    def _session_for(self, use: str) -> aiohttp.ClientSession:
        session = self._sessions.get(use)
        if session is None or session.closed:
            session = self._sessions[use] = egress_session(self.outbound.policy, use)
        return session

    async def http_session(self) -> aiohttp.ClientSession:
        """The client custom HTTP functions use (the outbound policy's "functions" rules)."""
        return self._session_for("functions")

    async def tools_session(self) -> aiohttp.ClientSession:
        """The client built-in tools (get_weather) use (the "tools" rules)."""
        return self._session_for("tools")

    def configure_outbound(self, outbound: Outbound) -> None:
        """A reloaded egress policy or secrets: the next request uses them (pooled
        connections are not reused across a policy change). Functions are rebuilt."""
        if outbound == self.outbound:
            return
        self.outbound = outbound
        self._retired += self._sessions.values()
        self._sessions = {}

    def signer(self) -> Signer:
        """The daemon's signer: tools.signing_secret_env / _file, else a key file in the state
        folder, created on first use (give that secret to integrators to verify requests)."""
        if self._signer is None:
            cfg = self.config
            secret = read_secret(cfg.signing_secret_env, cfg.signing_secret_file)
            if secret is None:
                if self.state_dir is None:
                    raise ToolError("no signing secret configured for HTTP functions (tools.signing_secret_env)")
                secret = load_or_create_secret(self.state_dir / SIGNING_KEY_FILE)
            self._signer = Signer(secret)
            self.redactor.remember(secret)
        return self._signer

    def builtin_tools(self) -> list[Tool]:
        cfg = self.config
        return [
            *builtin_tools(),
            weather_tool(cfg.weather, self.tools_session, lambda: self.outbound.policy),
            knowledge_tool(self.knowledge),
            email_tool(cfg.email),
            calendar_tool(cfg.calendar, self.db),
        ]

    # -- custom functions
    def http_function(
        self, name: str, description: str, parameters: dict[str, Any], spec: HttpFunction,
        *, timeout_s: float | None = None, interruptible: bool = True,
    ) -> Tool:
        if spec.secret_env:
            why = self.outbound.secrets.ref_problem(spec.secret_env, spec.url)
            declared = self.outbound.secrets.resolve_ref(spec.secret_env)
            if why or declared is None:
                raise ToolError(f"http.secret_env: {why}")
            secret = declared.read() or ""
            signer = Signer(secret)
            self.redactor.remember(secret)
        else:
            signer = self.signer()
        return http_tool(
            name, description, parameters, spec, signer=signer, session=self.http_session,
            secrets=self.outbound.secrets, redactor=self.redactor, policy=self.outbound.policy,
            timeout_s=timeout_s, interruptible=interruptible,
        )

    def custom_tool(self, fn: FunctionDef) -> Tool:
        if fn.http is not None:
            return self.http_function(fn.name, fn.description, fn.parameters, fn.http,
                                      timeout_s=fn.timeout_s, interruptible=fn.interruptible)
        assert fn.python is not None
        return python_tool(fn.name, fn.description, fn.parameters, fn.python, self.plugin_folders,
                           timeout_s=fn.timeout_s, interruptible=fn.interruptible)

    def stored_tool(self, rec: dict[str, Any]) -> Tool:
        """A function created through the API (``FunctionRepository`` record)."""
        return self.http_function(rec["name"], rec["description"], rec["parameters"],
                                  HttpFunction.model_validate(rec["http"]))

    async def refresh_stored(self) -> None:
        """Re-read the API-created functions of the default organisation and of ``orgs()``."""
        if self.db is None:
            return
        self._stored = await self._read_stored(self.db)
        others = {}
        for org in self.orgs():
            if org != "default":
                others[org] = await self._read_stored(self.db.for_org(org))
        self._org_stored = others

    async def _read_stored(self, db: Store) -> dict[str, Tool]:
        fresh: dict[str, Tool] = {}
        for rec in await db.functions().list():
            if rec["name"] in self.base.tools:
                continue
            try:
                fresh[rec["name"]] = self.stored_tool(rec)
            except (ToolError, SigningError, ValueError) as e:
                log.error("function %s (API, organisation %s): %s", rec["name"], db.org, e)
        return fresh

    def registry_for(self, agent: AgentConfig, org: str = "default") -> ToolRegistry:
        """The functions this agent's calls can run (``SessionTools`` still limits them to
        ``agent.tool_names``): built-ins, the API-created functions of its organisation
        ``org``, its own. Never raises: a custom function that cannot be built is
        logged and left out, and the LLM hears 'not available' if it calls it."""
        stored = self._stored if org == "default" else self._org_stored.get(org, {})
        reg = ToolRegistry(tools=dict(self.base.tools) | stored)
        for fn in agent.functions:
            if fn.name in self.base.tools:
                log.error("agent %s: function %s has the name of a built-in; left out", agent.name, fn.name)
                continue
            try:
                reg.register(self.custom_tool(fn))
            except (PluginError, ToolError, SigningError, ValueError) as e:
                log.error("agent %s: function %s: %s", agent.name, fn.name, e)
        return reg

    # -- life cycle
    async def start(self) -> None:
        """Load API-created functions and keep them fresh."""
        await self.refresh_stored()
        if self.db is not None and self._refresh_task is None:
            self._refresh_task = asyncio.create_task(self._refresh_loop(), name="functions-refresh")

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.stored_refresh_s)
            try:
                await self.refresh_stored()
            except Exception:
                log.exception("could not reload custom functions")

    async def warm_up(self, agents: list[AgentConfig]) -> None:
        """Index every knowledge-base folder the agents name (off the event loop)."""
        folders: set[Path] = set()
        for a in agents:
            if "search_knowledge_base" not in a.tool_names:
                continue
            try:
                f = self.knowledge.folder(a.tool_options("search_knowledge_base"))
            except ToolError as e:
                log.error("agent %s: %s", a.name, e)
                continue
            if f is not None:
                folders.add(f)
        await self.knowledge.warm_up(sorted(folders))

    async def close(self) -> None:
        if self._refresh_task is not None:
            self._refresh_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh_task
            self._refresh_task = None
        for session in [*self._sessions.values(), *self._retired]:
            await session.close()
        self._sessions, self._retired = {}, []


@functools.cache
def shared_embedder() -> Any:
    """The process's sentence-embedding model (loaded once, on first indexing), or None."""
    try:
        from voxd.tools.embed import load_embedder
    except ImportError:
        return None
    return load_embedder()
