"""Run suite files: load each suite and its agent, run its scenarios as calls (or as
text conversations), judge what asks to be judged, and collect the results."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from voxd.agents.loader import AgentLoadError, FieldError, LoadedAgent, load_agent_file
from voxd.agents.schema import LLMConfig
from voxd.call.conversations import ConversationManager
from voxd.config import VoxdConfig
from voxd.suites.audio import HarnessTransport, run_call
from voxd.suites.judge import Judge, judge_config
from voxd.suites.model import LoadedSuite, SuiteError, load_suite_file
from voxd.suites.results import ScenarioResult
from voxd.suites.text import run_conversation
from voxd.suites.transport import Transport
from voxd.tools.library import ToolLibrary

log = logging.getLogger("voxd.suites")


@dataclass
class Options:
    text: bool = False
    virtual: bool = True
    llm: str | None = None  # pin every agent's llm engine (e.g. "dialog")
    select: str | None = None  # only scenarios whose name or tags contain this
    agent: Path | None = None  # test this agent file instead of the suite's own
    transport: str = "harness"  # "harness": frames into the session; "sip": a SIP/RTP call on loopback
    target: str | None = None  # with sip: call this SIP URI instead of starting an endpoint in-process


@dataclass
class RunReport:
    results: list[ScenarioResult] = field(default_factory=list)
    errors: list[FieldError] = field(default_factory=list)  # suites that could not run
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return bool(self.errors) or any(r.status in ("failed", "error") for r in self.results)


def pinned(agent: LoadedAgent, engine: str | None) -> LoadedAgent:
    """The agent with its llm engine replaced (dialog keeps its `dialog:` block)."""
    if engine is None or agent.config.llm.engine == engine:
        return agent
    cfg = agent.config.model_copy(update={"llm": LLMConfig(engine=engine)})
    return LoadedAgent(cfg, f"{agent.version}+{engine}", agent.path, agent.text)


def _selected(loaded: LoadedSuite, select: str | None) -> list[int]:
    sc = loaded.suite.scenarios
    if not select:
        return list(range(len(sc)))
    s = select.lower()
    return [i for i, x in enumerate(sc) if s in x.name.lower() or any(s in t.lower() for t in x.tags)]


async def run_suites(files: list[Path], cfg: VoxdConfig, base: Path, opts: Options,
                     progress: Callable[[ScenarioResult], None] | None = None) -> RunReport:
    report = RunReport()
    t0 = time.perf_counter()
    outbound = cfg.outbound()
    for path in files:
        try:
            loaded = load_suite_file(path)
            agent_file = opts.agent or loaded.agent_path()
            if not agent_file.is_file():
                report.errors.append(FieldError(str(path), loaded.agent_line, "agent",
                                                f"no agent file {loaded.suite.agent!r} (looked for {agent_file})"))
                continue
            agent = load_agent_file(agent_file, outbound)
        except AgentLoadError as e:  # SuiteError too
            report.errors += e.errors
            continue
        judge = Judge(agent, judge_config(pinned(agent, opts.llm or loaded.suite.llm), loaded.suite.judge_llm), outbound)
        chosen = _selected(loaded, opts.select)
        if not chosen:
            continue
        if opts.text:
            library = ToolLibrary(cfg.tools, base_dir=base, outbound=outbound)
            try:
                await library.warm_up([agent.config])
                results = await _text(loaded, agent, library, chosen, outbound, opts, progress, judge)
            finally:
                await library.close()
        else:
            results = await _audio(loaded, agent, cfg, base, chosen, opts, progress, judge)
        report.results += results
    report.seconds = time.perf_counter() - t0
    return report


async def _judged(res: ScenarioResult, loaded: LoadedSuite, index: int, judge: Judge) -> None:
    """Per-step and per-scenario judge: statements, on the transcript so far."""
    scenario = loaded.suite.scenarios[index]
    lines = res.transcript
    for sr in res.steps:
        statement = scenario.steps[sr.index].judge
        if statement:
            sr.verdict = await judge.ask(statement, lines)
            if sr.verdict.failed:
                sr.failures.append(f"judge: {statement!r}: {sr.verdict.verdict}: {sr.verdict.reason}")
    if scenario.judge:
        res.verdict = await judge.ask(scenario.judge, lines)


def _transport(cfg: VoxdConfig, base: Path, opts: Options) -> Transport:
    if opts.transport == "sip":
        from voxd.suites.sipleg import SipTransport

        return SipTransport(cfg, base, target=opts.target)
    return HarnessTransport(cfg, base, virtual=opts.virtual)


async def _audio(loaded: LoadedSuite, agent: LoadedAgent, cfg: VoxdConfig, base: Path, chosen: list[int],
                 opts: Options, progress: Callable[[ScenarioResult], None] | None, judge: Judge) -> list[ScenarioResult]:
    transport = _transport(cfg, base, opts)
    mode = "sip" if opts.transport == "sip" else "audio"
    out: list[ScenarioResult] = []
    try:
        await transport.warm_up(agent)
        for i in chosen:
            sc = loaded.suite.scenarios[i]
            agent_i = pinned(agent, opts.llm or sc.llm or loaded.suite.llm)
            if sc.only == "text":
                res = ScenarioResult(str(loaded.path), agent.name, sc.name, mode, loaded.line_of(i), sc.tags,
                                     status="skipped", note="only: text")
            else:
                res = await _guarded(_one_call(transport, agent_i, loaded, i, mode), loaded, agent_i, i, mode)
                res.xfail = sc.xfail
                await _judged(res, loaded, i, judge)
                res.settle()
            out.append(res)
            if progress:
                progress(res)
    finally:
        await transport.close()
    return out


async def _one_call(transport: Transport, agent: LoadedAgent, loaded: LoadedSuite, i: int,
                    mode: str) -> ScenarioResult:
    sc = loaded.suite.scenarios[i]
    leg = await transport.leg(agent, sc.name)
    return await run_call(leg, agent, loaded, i, sc, mode)


async def _text(loaded: LoadedSuite, agent: LoadedAgent, library: ToolLibrary, chosen: list[int], outbound: object,
                opts: Options, progress: Callable[[ScenarioResult], None] | None, judge: Judge) -> list[ScenarioResult]:
    current = [agent]

    async def lookup(name: str) -> LoadedAgent | None:
        return current[0] if name == agent.name else None

    manager = ConversationManager(lookup, lambda a: library.registry_for(a.config), outbound=outbound)  # type: ignore[arg-type]
    out: list[ScenarioResult] = []
    try:
        for i in chosen:
            sc = loaded.suite.scenarios[i]
            current[0] = pinned(agent, opts.llm or sc.llm or loaded.suite.llm)
            res = await _guarded(run_conversation(manager, agent.name, loaded, i, sc), loaded, agent, i, "text")
            res.xfail = sc.xfail
            if res.status != "skipped":
                await _judged(res, loaded, i, judge)
                res.settle()
            out.append(res)
            if progress:
                progress(res)
    finally:
        await manager.close_all()
    return out


async def _guarded(coro: object, loaded: LoadedSuite, agent: LoadedAgent, i: int,
                   mode: str = "audio") -> ScenarioResult:
    """A scenario whose run raised is an error result naming the exception, not a crash."""
    try:
        return await coro  # type: ignore[no-any-return, misc]
    except Exception as e:
        log.exception("scenario %r crashed", loaded.suite.scenarios[i].name)
        sc = loaded.suite.scenarios[i]
        return ScenarioResult(str(loaded.path), agent.name, sc.name, mode, loaded.line_of(i), sc.tags,
                              status="error", note=f"{type(e).__name__}: {e}")


__all__ = ["Options", "RunReport", "SuiteError", "run_suites"]
