#!/usr/bin/env python3
"""Accuracy of the receptionist's brain on caller utterances, per engine, side by side.

  python scripts/bench_llm.py [--models qwen2.5-coder-0.5b,qwen2.5-coder-1.5b] [--no-dialog] [--json]

Each utterance is one first turn for agents/receptionist.yaml (its system prompt, its
functions, its dialog examples), given as text (what the recogniser wrote). Scored:
- tool choice: the right function, or a spoken reply where none is wanted;
- arguments: for function calls, the arguments are the right ones (the expression
  evaluates to the right number, the day and time of a booking);
- on facts: for questions about the practice, the reply holds the fact from the prompt.
Latency per step (first event, whole step) is printed for the local models: it depends
on what else the machine runs. Models not installed are skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voxd.agents.loader import load_agent_file  # noqa: E402
from voxd.agents.schema import AgentConfig  # noqa: E402
from voxd.call.toolctx import agent_specs  # noqa: E402
from voxd.providers.base import LanguageModel, Message, TextDelta, ToolCallsRequested, ToolSpec  # noqa: E402
from voxd.providers.llm.dialog import DialogEngine  # noqa: E402
from voxd.providers.llm.local import catalog, runtime  # noqa: E402
from voxd.providers.llm.local.engine import LocalLLM  # noqa: E402
from voxd.tools.builtins import booking_time, default_registry  # noqa: E402
from voxd.tools.calc import evaluate  # noqa: E402

SAY = "say"
PERSON = {"transfer_call", "open_keypad_menu", SAY}  # fine answers to "can I speak to someone"


@dataclass(frozen=True)
class Case:
    category: str
    text: str
    tool: str | set[str]  # expected function, SAY, or a set of acceptable ones
    args: dict[str, Any] | None = None  # expected arguments (expression: its value)
    facts: str | None = None  # regex the spoken reply must match


CASES = [
    # arithmetic
    Case("calculate", "what's twelve times seven", "calculate", {"expression": 84}),
    Case("calculate", "what is 15 plus 27", "calculate", {"expression": 42}),
    Case("calculate", "can you work out one hundred divided by four", "calculate", {"expression": 25}),
    Case("calculate", "what's nine times eight", "calculate", {"expression": 72}),
    Case("calculate", "how much is 250 minus 75", "calculate", {"expression": 175}),
    Case("calculate", "what is six times seven", "calculate", {"expression": 42}),
    Case("calculate", "calculate 3 plus 4 times 2", "calculate", {"expression": 11}),
    Case("calculate", "what's twenty squared", "calculate", {"expression": 400}),
    # the time
    Case("time", "what time is it", "get_current_time"),
    Case("time", "do you have the time please", "get_current_time"),
    Case("time", "what's the time right now", "get_current_time"),
    Case("time", "could you tell me what time it is", "get_current_time"),
    Case("time", "what's today's date", "get_current_time"),
    Case("time", "is it past noon yet", "get_current_time"),
    # booking with a day and a time
    Case("booking", "I'd like to book for Tuesday at three", "book_appointment", {"day": "Tuesday", "time": "15:00"}),
    Case("booking", "can I have an appointment on Friday at 10 am", "book_appointment", {"day": "Friday", "time": "10:00"}),
    Case("booking", "book me in for Monday at two thirty pm", "book_appointment", {"day": "Monday", "time": "14:30"}),
    Case("booking", "I need a check-up on Wednesday at 11 in the morning", "book_appointment", {"day": "Wednesday", "time": "11:00"}),
    Case("booking", "could I come in Thursday at 4 pm", "book_appointment", {"day": "Thursday", "time": "16:00"}),
    Case("booking", "please book an appointment for Monday at nine am", "book_appointment", {"day": "Monday", "time": "09:00"}),
    Case("booking", "I want to see the dentist on Tuesday at 5 pm", "book_appointment", {"day": "Tuesday", "time": "17:00"}),
    Case("booking", "schedule me for Friday at one pm", "book_appointment", {"day": "Friday", "time": "13:00"}),
    # booking without the day or time: ask for it, book nothing
    Case("ask", "I'd like to make an appointment", SAY, facts=r"\b(day|when|time)\b"),
    Case("ask", "can I book a cleaning", SAY, facts=r"\b(day|when|time)\b"),
    Case("ask", "I need to see a dentist", SAY, facts=r"\b(day|when|time|appointment|book)\b"),
    # questions answered from the prompt's facts
    Case("facts", "where are you located", SAY, facts=r"harbour"),
    Case("facts", "what's your address", SAY, facts=r"harbour"),
    Case("facts", "is there parking", SAY, facts=r"park|mill lane|behind"),
    Case("facts", "how much is a check-up", SAY, facts=r"forty[- ]five|45"),
    Case("facts", "how much does a hygienist cleaning cost", SAY, facts=r"sixty|60"),
    Case("facts", "do you do teeth whitening", SAY, facts=r"\byes\b|whitening"),
    Case("facts", "are you open on saturdays", SAY, facts=r"\bno\b|closed|weekend|monday to friday"),
    Case("facts", "what are your opening hours", SAY, facts=r"nine|9"),
    Case("facts", "who are the dentists there", SAY, facts=r"patel|jones"),
    Case("facts", "are you taking new patients", SAY, facts=r"\byes\b|welcome"),
    Case("facts", "can I bring my children", SAY, facts=r"\byes\b|child|welcome"),
    Case("facts", "do you have emergency appointments", SAY, facts=r"\byes\b|same[- ]day|emergency"),
    # a person
    Case("person", "can I speak to someone", PERSON),
    Case("person", "I want to talk to a real person", PERSON),
    Case("person", "put me through to sales please", PERSON),
    # goodbye
    Case("goodbye", "that's all thanks, goodbye", "end_call"),
    Case("goodbye", "okay bye", "end_call"),
    Case("goodbye", "nothing else, thank you, bye", "end_call"),
]


@dataclass
class Outcome:
    tool_ok: bool
    args_ok: bool | None
    facts_ok: bool | None
    said: str
    calls: list[tuple[str, dict[str, Any]]]
    first_s: float
    total_s: float


def _args_ok(case: Case, args: dict[str, Any]) -> bool:
    assert case.args is not None
    for k, want in case.args.items():
        got = args.get(k)
        if k == "expression":
            try:
                if abs(float(evaluate(str(got))) - float(want)) > 1e-9:
                    return False
            except Exception:
                return False
        elif k == "time":
            if booking_time(str(got)) != want:
                return False
        elif str(got).lower() != str(want).lower():
            return False
    return True


async def run_case(llm: LanguageModel, agent: AgentConfig, tools: list[ToolSpec], case: Case) -> Outcome:
    t0 = time.perf_counter()
    first: float | None = None
    said, calls = "", []
    async for ev in llm.stream([Message("system", agent.prompt), Message("user", case.text)], tools):
        first = first or time.perf_counter()
        if isinstance(ev, TextDelta):
            said += ev.text
        elif isinstance(ev, ToolCallsRequested):
            calls += [(c.name, c.arguments) for c in ev.calls]
    total = time.perf_counter() - t0
    chosen = calls[0][0] if calls else SAY
    wanted = case.tool if isinstance(case.tool, set) else {case.tool}
    tool_ok = chosen in wanted
    args_ok = _args_ok(case, calls[0][1]) if case.args is not None and tool_ok and calls else (
        False if case.args is not None else None)
    facts_ok = (tool_ok and bool(re.search(case.facts, said, re.IGNORECASE))) if case.facts else None
    return Outcome(tool_ok, args_ok, facts_ok, said, calls, (first or time.perf_counter()) - t0, total)


def _pct(xs: list[bool]) -> str:
    return f"{100 * sum(xs) / len(xs):.0f}% ({sum(xs)}/{len(xs)})" if xs else "-"


async def bench(engines: list[str], verbose: bool) -> dict[str, dict[str, Any]]:
    # a busy machine slows the model down, it does not make it wrong: no restart for slowness here
    runtime.configure(runtime.settings().model_copy(update={"first_token_timeout_s": 600.0}), runtime.models_dir().parent)
    agent = load_agent_file(ROOT / "agents" / "receptionist.yaml").config
    tools = agent_specs(agent, default_registry())
    results: dict[str, dict[str, Any]] = {}
    for name in engines:
        local: LocalLLM | None = None
        if name != "dialog":
            if catalog.installed(runtime.models_dir(), name) is None:
                print(f"{name}: not installed in {runtime.models_dir()}, skipped", file=sys.stderr)
                continue
            cfg = agent.llm.model_copy(update={"engine": "local", "model": name, "fallback": []})
            local = LocalLLM(agent, cfg)
            t0 = time.perf_counter()
            await local.warm_up(tools)
            print(f"{name}: started and prompt evaluated in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        outs: list[tuple[Case, Outcome]] = []
        for case in CASES:
            llm: LanguageModel = DialogEngine(agent.dialog) if local is None else local  # fresh slot state
            if local is not None:
                local._history = None  # each utterance is a first turn
            o = await run_case(llm, agent, tools, case)
            outs.append((case, o))
            if verbose:
                mark = "ok " if o.tool_ok and o.args_ok is not False and o.facts_ok is not False else "BAD"
                print(f"  [{name}] {mark} {case.text!r} -> {o.calls or o.said!r} ({o.total_s:.2f} s)", file=sys.stderr)
        cats = sorted({c.category for c in CASES}, key=[c.category for c in CASES].index)
        row: dict[str, Any] = {"per_category": {}}
        for cat in cats:
            sub = [o for c, o in outs if c.category == cat]
            row["per_category"][cat] = {
                "tool": _pct([o.tool_ok for o in sub]),
                "args": _pct([o.args_ok for o in sub if o.args_ok is not None]),
                "facts": _pct([o.facts_ok for o in sub if o.facts_ok is not None]),
            }
        row["tool_choice"] = _pct([o.tool_ok for _, o in outs])
        row["arguments"] = _pct([o.args_ok for _, o in outs if o.args_ok is not None])
        row["on_facts"] = _pct([bool(o.facts_ok) for c, o in outs if c.category == "facts"])
        if name != "dialog":
            firsts = sorted(o.first_s for _, o in outs)
            totals = sorted(o.total_s for _, o in outs)
            row["first_event_s_p50"] = round(statistics.median(firsts), 2)
            row["first_event_s_p90"] = round(firsts[int(0.9 * (len(firsts) - 1))], 2)
            row["step_s_p50"] = round(statistics.median(totals), 2)
        results[name] = row
    await runtime.shutdown()
    return results


def table(results: dict[str, dict[str, Any]]) -> str:
    names = list(results)
    cats = list(next(iter(results.values()))["per_category"]) if results else []
    lines = ["| category (n) | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    counts = {c: sum(1 for x in CASES if x.category == c) for c in cats}
    for cat in cats:
        cells = []
        for n in names:
            pc = results[n]["per_category"][cat]
            parts = [f"tool {pc['tool']}"]
            if pc["args"] != "-":
                parts.append(f"args {pc['args']}")
            if pc["facts"] != "-":
                parts.append(f"facts {pc['facts']}")
            cells.append(", ".join(parts))
        lines.append(f"| {cat} ({counts[cat]}) | " + " | ".join(cells) + " |")
    for key in ("tool_choice", "arguments", "on_facts", "first_event_s_p50", "first_event_s_p90", "step_s_p50"):
        lines.append(f"| **{key}** | " + " | ".join(str(results[n].get(key, "-")) for n in names) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(catalog.MODELS), help="comma-separated packaged models")
    ap.add_argument("--no-dialog", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every utterance's result")
    args = ap.parse_args()
    engines = [m for m in args.models.split(",") if m] + ([] if args.no_dialog else ["dialog"])
    results = asyncio.run(bench(engines, args.verbose))
    print(json.dumps(results, indent=2) if args.json else table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
