"""The agents of every organisation: ``agents/*.yaml`` are the default organisation's (the
layout from before organisations), ``agents/<org>/*.yaml`` those of organisation ``<org>``.

One `AgentCatalog` per folder, each re-read on change like the default one; a folder that
appears is picked up at the next poll, one that goes away takes its agents with it (its
catalog stays, empty, for the API to write into). A SIP
number belongs to one organisation: a file claiming a number another organisation's agent
already has is refused at load (the first claim keeps serving), and ``by_number`` routes a
dialled number to the agent of the organisation that owns it. ``agents/tests/`` (test
suites) is not an organisation's folder.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from pathlib import Path

from voxd.agents.catalog import AgentCatalog, ReloadReport, Watcher
from voxd.agents.loader import LoadedAgent

log = logging.getLogger("voxd.agents")

DEFAULT_ORG = "default"
# folders of agents/ that are not organisations: agents/tests/ holds `voxd test` suites
NOT_ORGS = frozenset({"tests"})
ORG_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")  # an organisation's id (as voxd.store.orgs has it)

# told of each organisation's reload that changed something: (its catalog, the report)
OrgListener = Callable[[AgentCatalog, ReloadReport], None]


class OrgCatalogs:
    def __init__(self, default: AgentCatalog) -> None:
        self.default = default
        default.fleet = self
        self._orgs: dict[str, AgentCatalog] = {}
        self.listeners: list[OrgListener] = []  # for the organisations' catalogs (not the default's)
        self._watcher = Watcher(self.refresh)

    @property
    def root(self) -> Path:
        return self.default.directory  # follows a SIGHUP that moves agents_dir

    # -- queries
    def catalogs(self) -> list[AgentCatalog]:
        return [self.default, *(self._orgs[o] for o in sorted(self._orgs))]

    def orgs(self) -> list[str]:
        return [DEFAULT_ORG, *sorted(self._orgs)]

    def catalog(self, org: str) -> AgentCatalog | None:
        return self.default if org == DEFAULT_ORG else self._orgs.get(org)

    def get(self, org: str, name: str) -> LoadedAgent | None:
        catalog = self.catalog(org)
        return None if catalog is None else catalog.get(name)

    def by_number(self, user: str) -> LoadedAgent | None:
        """The agent, of whichever organisation, that claims ``user`` in ``sip.numbers``."""
        if not user:
            return None
        for catalog in self.catalogs():
            for agent in catalog.all():
                if user in agent.config.sip.numbers:
                    return agent
        return None

    def ensure(self, org: str) -> AgentCatalog:
        """The catalog of ``org``, made (for ``agents/<org>/``, which need not exist yet) if new."""
        got = self.catalog(org)
        if got is None:
            if not ORG_ID_RE.match(org) or org in NOT_ORGS:
                raise ValueError(f"not an organisation name: {org!r}")
            got = self._orgs[org] = self._new(org)
        return got

    def _new(self, org: str) -> AgentCatalog:
        catalog = AgentCatalog(self.root / org, outbound=self.default.outbound, org=org)
        catalog.fleet = self

        def tell(report: ReloadReport) -> None:
            for fn in self.listeners:
                try:
                    fn(catalog, report)
                except Exception:
                    log.exception("agent listener failed for organisation %s", org)

        catalog.listeners.append(tell)
        return catalog

    # -- loading
    def _folders(self) -> list[str]:
        root = self.root
        if not root.is_dir():
            return []
        out = []
        for p in sorted(root.iterdir()):
            if not p.is_dir() or p.name.startswith("."):
                continue
            if p.name == DEFAULT_ORG:
                log.warning("%s: the default organisation's agents are the files of %s itself; "
                            "this folder is not read", p, root)
            elif ORG_ID_RE.match(p.name) and p.name not in NOT_ORGS:
                out.append(p.name)
        return out

    def _sync_folders(self, folders: list[str]) -> None:
        for org in folders:
            if org not in self._orgs:
                self._orgs[org] = self._new(org)
        for org, catalog in list(self._orgs.items()):
            catalog.directory = self.root / org
            catalog.outbound = self.default.outbound

    def reload(self, force: bool = False) -> dict[str, ReloadReport]:
        """Every organisation's folder read again (changed files only unless ``force``)."""
        folders = self._folders()
        self._sync_folders(folders)
        return {c.org: c.reload(force) for c in self.catalogs()}

    async def refresh(self, force: bool = False) -> dict[str, ReloadReport]:
        """``reload`` with the folders scanned and files parsed off the event loop."""
        folders = await asyncio.to_thread(self._folders)
        self._sync_folders(folders)
        reports = {}
        for catalog in self.catalogs():
            reports[catalog.org] = await catalog.refresh(force)
        return reports

    # -- watching
    def start_watching(self, interval_s: float = 1.0) -> None:
        self._watcher.start(interval_s)

    async def stop_watching(self) -> None:
        await self._watcher.stop()
