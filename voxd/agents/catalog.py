"""The set of agents the daemon serves, kept in step with the `agents/` folder.

Files are re-read when they change (polling their mtimes: cheap, and it works on
every filesystem), and read and parsed off the event loop (``refresh``; ``reload`` is
the same on the caller's thread, for start-up and tools). A file that fails validation
is reported and the last good version of that agent keeps serving; calls in progress
hold a reference to the `LoadedAgent` they started with, so a reload never changes a
live call. Validation knows the daemon's egress policy and declared secrets
(``outbound``), so an agent naming a secret or destination the daemon would refuse is
refused at load, with its file, line and field.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from voxd.agents.loader import AgentLoadError, FieldError, LoadedAgent, load_agent_file, parse_agent
from voxd.core.secrets import Outbound

if TYPE_CHECKING:
    from voxd.agents.orgs import OrgCatalogs

log = logging.getLogger("voxd.agents")

SUFFIXES = (".yaml", ".yml")
Stamp = tuple[float, int]
Preloaded = dict[Path, tuple[Stamp, LoadedAgent | AgentLoadError]]


@dataclass
class ReloadReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    errors: list[FieldError] = field(default_factory=list)
    before: dict[str, str] = field(default_factory=dict)  # an updated or removed agent's text before

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)


class AgentCatalog:
    def __init__(self, directory: Path, default: str | None = None, outbound: Outbound | None = None,
                 org: str = "default") -> None:
        self.directory = Path(directory)
        self.org = org  # every agent loaded here belongs to it
        self.fleet: OrgCatalogs | None = None  # the other organisations' catalogs (numbers, lookups)
        self.default_name = default
        self.outbound = outbound  # None: validation without the daemon's policy (vendor secrets only)
        self._agents: dict[str, LoadedAgent] = {}
        self._files: dict[Path, tuple[float, int]] = {}  # path -> (mtime, size) last seen
        self._file_agent: dict[Path, str] = {}
        self.errors: dict[Path, list[FieldError]] = {}
        self.listeners: list[Callable[[ReloadReport], None]] = []
        self._watcher = Watcher(self.refresh)

    # -- queries
    def names(self) -> list[str]:
        return sorted(self._agents)

    def get(self, name: str) -> LoadedAgent | None:
        return self._agents.get(name)

    def all(self) -> list[LoadedAgent]:
        return [self._agents[n] for n in self.names()]

    def default(self) -> LoadedAgent | None:
        if self.default_name and self.default_name in self._agents:
            return self._agents[self.default_name]
        names = self.names()
        return self._agents[names[0]] if names else None

    def for_number(self, user: str) -> LoadedAgent | None:
        """Route a dialled number / Request-URI user to an agent (SIP): the agent of any
        organisation that claims the number, else one of this catalog named so, else the default."""
        if self.fleet is not None:
            found = self.fleet.by_number(user)
            if found is not None:
                return found
        for a in self._agents.values():
            if user in a.config.sip.numbers or user == a.name:
                return a
        return self.default()

    def getter(self, org: str) -> Callable[[str], LoadedAgent | None]:
        """Finds agents of ``org`` by name (an inbound lookup hands a call on within its organisation)."""
        if org == self.org or self.fleet is None:
            return self.get if org == self.org else (lambda _name: None)
        other = self.fleet.catalog(org)
        return other.get if other is not None else (lambda _name: None)

    def _claimed(self, loaded: LoadedAgent, path: Path) -> FieldError | None:
        """A number of ``loaded`` that an agent of another organisation already claims."""
        if self.fleet is None or not loaded.config.sip.numbers:
            return None
        mine = set(loaded.config.sip.numbers)
        for catalog in self.fleet.catalogs():
            if catalog is self:
                continue
            for other in catalog.all():
                both = mine.intersection(other.config.sip.numbers)
                if both and other.path is not None and other.path.exists():
                    return FieldError(str(path), None, "sip.numbers",
                                      f"number {sorted(both)[0]!r} is claimed by organisation {catalog.org!r} "
                                      f"({other.path}); a number belongs to one organisation")
        return None

    # -- loading
    def _scan(self) -> dict[Path, tuple[float, int]]:
        out: dict[Path, tuple[float, int]] = {}
        if not self.directory.is_dir():
            return out
        for p in sorted(self.directory.iterdir()):
            if p.suffix in SUFFIXES and not p.name.startswith("."):
                try:
                    st = p.stat()
                except OSError:
                    continue
                out[p] = (st.st_mtime, st.st_size)
        return out

    def _load(self, path: Path) -> LoadedAgent | AgentLoadError:
        try:
            return load_agent_file(path, self.outbound)
        except AgentLoadError as e:
            return e

    async def refresh(self, force: bool = False) -> ReloadReport:
        """``reload``, with the folder scanned and changed files parsed in a worker thread,
        so a large or hostile file never holds the event loop."""
        seen = await asyncio.to_thread(self._scan)
        changed = [p for p, st in seen.items() if force or self._files.get(p) != st]

        def parse() -> Preloaded:
            return {p: (seen[p], self._load(p)) for p in changed}

        return self.reload(force, await asyncio.to_thread(parse) if changed else {})

    def reload(self, force: bool = False, preloaded: Preloaded | None = None) -> ReloadReport:
        report = ReloadReport()
        seen = self._scan()
        for path, stamp in seen.items():
            if not force and self._files.get(path) == stamp:
                continue
            self._files[path] = stamp
            pre = (preloaded or {}).get(path)
            got = pre[1] if pre is not None and pre[0] == stamp else self._load(path)
            try:
                if isinstance(got, AgentLoadError):
                    raise got
                loaded = got
            except AgentLoadError as e:
                self.errors[path] = e.errors
                report.errors += e.errors
                for err in e.errors:
                    log.error("agent file rejected, keeping the last good version: %s", err)
                continue
            if loaded.org != self.org:
                loaded = replace(loaded, org=self.org)
            clash = self._claimed(loaded, path)
            if clash is not None:
                self._files.pop(path, None)  # looked at again next time: the other claim may go away
                if self.errors.get(path) != [clash]:
                    report.errors.append(clash)
                    log.error("%s", clash)
                self.errors[path] = [clash]
                continue
            self.errors.pop(path, None)
            other = self._agents.get(loaded.name)
            if other is not None and other.path != path and other.path in seen:
                err = FieldError(str(path), None, "name", f"agent {loaded.name!r} is already defined in {other.path}")
                self.errors[path] = [err]
                report.errors.append(err)
                log.error("%s", err)
                continue
            old_name = self._file_agent.get(path)
            if old_name and old_name != loaded.name:
                gone = self._agents.pop(old_name, None)
                report.removed.append(old_name)
                if gone is not None:
                    report.before[old_name] = gone.text
            self._file_agent[path] = loaded.name
            prev = self._agents.get(loaded.name)
            if prev is None:
                report.added.append(loaded.name)
            elif prev.version != loaded.version:
                report.updated.append(loaded.name)
                report.before[loaded.name] = prev.text
            self._agents[loaded.name] = loaded
        for path in list(self._files):
            if path not in seen:
                self._files.pop(path)
                self.errors.pop(path, None)
                name = self._file_agent.pop(path, None)
                if name and self._agents.get(name) and self._agents[name].path == path:
                    report.before[name] = self._agents.pop(name).text
                    report.removed.append(name)
        if report.changed:
            log.info("agents reloaded: added=%s updated=%s removed=%s", report.added, report.updated, report.removed)
            for fn in self.listeners:
                fn(report)
        return report

    # -- writing (control API)
    def parse(self, text: str, name: str | None = None) -> LoadedAgent:
        """Validate YAML as a file of this folder would be (thread-safe: run it off the loop)."""
        return parse_agent(text, f"{name or 'agent'}.yaml", default_name=name, outbound=self.outbound)

    def validate_text(self, text: str, name: str | None = None) -> list[FieldError]:
        try:
            loaded = self.parse(text, name)
        except AgentLoadError as e:
            return e.errors
        clash = self._claimed(loaded, self.directory / f"{loaded.name}.yaml")
        return [] if clash is None else [clash]

    def write(self, name: str, text: str, loaded: LoadedAgent | None = None) -> LoadedAgent:
        """Validate (unless ``loaded`` is ``parse(text, name)``'s result), then atomically
        replace agents/<name>.yaml and reload it."""
        if loaded is None:
            loaded = self.parse(text, name)
        if loaded.name != name:
            raise AgentLoadError([FieldError(f"{name}.yaml", None, "name", f"must be {name!r}")])
        existing = self._agents.get(name)
        path = existing.path if existing and existing.path else self.directory / f"{name}.yaml"
        clash = self._claimed(loaded, path)
        if clash is not None:
            raise AgentLoadError([clash])
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self.directory)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        st = path.stat()
        fresh = LoadedAgent(loaded.config, loaded.version, path, text, self.org)
        self.reload(preloaded={path: ((st.st_mtime, st.st_size), fresh)})
        agent = self._agents.get(name)
        assert agent is not None
        return agent

    def delete(self, name: str) -> bool:
        agent = self._agents.get(name)
        if agent is None or agent.path is None:
            return False
        agent.path.unlink(missing_ok=True)
        self.reload()
        return True

    # -- watching
    def start_watching(self, interval_s: float = 1.0) -> None:
        self._watcher.start(interval_s)

    async def stop_watching(self) -> None:
        await self._watcher.stop()


class Watcher:
    """Calls ``refresh`` every ``interval_s`` until stopped; a reload that fails is logged
    and the agents already loaded keep serving."""

    def __init__(self, refresh: Callable[[], Awaitable[object]]) -> None:
        self._refresh = refresh
        self._task: asyncio.Task[None] | None = None

    def start(self, interval_s: float) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._watch(interval_s), name="agents-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _watch(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self._refresh()
            except Exception:
                log.exception("agent reload failed")
