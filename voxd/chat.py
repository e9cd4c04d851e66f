"""`voxd chat`: talk to an agent in text on the terminal, through the engine text
conversations use (``voxd.call.conversations``): its language model, functions and
dialog, no audio. Each line read is a message; the reply streams as it is written."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from voxd.agents.loader import AgentLoadError, LoadedAgent, load_agent_file
from voxd.call.conversations import ConversationManager
from voxd.config import ConfigError, load_config
from voxd.tools.library import ToolLibrary

QUIT = {"/quit", "/exit", "/bye"}


class Printer:
    """Prints a reply as it streams: its clauses on one ``bot :`` line, functions on their own."""

    def __init__(self, out: Any, show_tools: bool) -> None:
        self.out = out
        self.show_tools = show_tools
        self.open = False

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "text":
            self.out.write(f" {data['text']}" if self.open else f"bot   : {data['text']}")
            self.open = True
        elif kind == "tool_call" and self.show_tools:
            res = data["error"] if data["error"] else json.dumps(data["result"], default=str)
            self.end_line()
            self.out.write(f"  tool {data['name']}({json.dumps(data['arguments'])}) -> {res}\n")
        self.out.flush()

    def end_line(self) -> None:
        if self.open:
            self.out.write("\n")
            self.open = False


async def run_chat(args: argparse.Namespace) -> int:
    try:
        cfg, base = load_config(args.config)
        outbound = cfg.outbound()
        agent = load_agent_file(Path(args.agent), outbound)
    except (ConfigError, AgentLoadError) as e:
        print(e, file=sys.stderr)
        return 2
    library = ToolLibrary(cfg.tools, base_dir=base, outbound=outbound)

    async def lookup(name: str) -> LoadedAgent | None:
        return agent if name == agent.name else None

    manager = ConversationManager(lookup, lambda a: library.registry_for(a.config), outbound=outbound)
    out = sys.stdout
    tty = sys.stdin.isatty()
    try:
        await library.warm_up([agent.config])
        conv = await manager.open(agent.name, dict(kv.split("=", 1) for kv in args.var))
        for t in conv.record.turns:
            out.write(f"bot   : {t.text}\n")
        printer = Printer(out, not args.quiet_tools)
        while not conv.closed:
            if tty:
                out.write("you   > ")
            out.flush()
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                break
            text = line.strip()
            if not text:
                continue
            if text in QUIT:
                break
            if not tty:
                out.write(f"you   : {text}\n")
            await manager.send(conv.record.id, text, printer)
            printer.end_line()
        if not conv.closed:
            await manager.end(conv.record.id, "caller_hangup", "caller")
        out.write(f"(conversation {conv.record.id} ended: {conv.record.end_reason})\n")
    finally:
        await manager.close_all()
        await library.close()
    return 0
