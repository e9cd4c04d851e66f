"""The `voxd test` command."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from voxd.suites.results import ScenarioResult


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    t: argparse.ArgumentParser = sub.add_parser("test", help="run conversation test suites (agents/tests/*.yaml); exit 1 on failures")
    t.add_argument("paths", nargs="*", metavar="PATH", help="suite files or folders (default: <agents>/tests)")
    t.add_argument("--config", "-c", help="voxd.yaml whose tools:, egress: and secrets: apply")
    t.add_argument("--text", action="store_true", help="run as text conversations, without audio (fast)")
    t.add_argument("--llm", help="pin every agent's llm engine for this run (e.g. dialog)")
    t.add_argument("--agent", help="test this agent file instead of the one each suite names")
    t.add_argument("-k", dest="select", help="only scenarios whose name or tags contain this")
    t.add_argument("--realtime", action="store_true", help="pace calls in real time instead of the virtual clock")
    t.add_argument("--transport", choices=("harness", "sip"), default="harness",
                   help="harness: frames straight into the call; sip: a real SIP/RTP call on loopback (real time)")
    t.add_argument("--target", help="with --transport sip: call this running endpoint (sip:agent@127.0.0.1:5080) "
                   "instead of starting one in-process")
    t.add_argument("--junit", default="test-results/voxd-test.xml", help="JUnit XML report ('' for none)")
    t.add_argument("--json", dest="json_out", default="test-results/voxd-test.json", help="JSON report ('' for none)")
    t.add_argument("--quiet", "-q", action="store_true", help="only the summary table")
    return t


async def run_test(args: argparse.Namespace) -> int:
    from voxd.config import ConfigError, load_config
    from voxd.suites.model import suite_files
    from voxd.suites.report import one_line, table, write
    from voxd.suites.runner import Options, run_suites

    try:
        cfg, base = load_config(args.config)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    paths = [Path(p) for p in args.paths]
    if not paths:
        agents_dir = Path(cfg.agents_dir)
        paths = [(agents_dir if agents_dir.is_absolute() else base / agents_dir) / "tests"]
    missing = [p for p in paths if not p.exists()]
    if missing:
        print(f"voxd test: no such file or folder: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    files = suite_files(paths)
    if not files:
        print(f"voxd test: no suite files in {', '.join(map(str, paths))}", file=sys.stderr)
        return 2
    logging.getLogger("voxd").setLevel(logging.ERROR)
    opts = Options(text=args.text, virtual=not args.realtime, llm=args.llm, select=args.select,
                   agent=Path(args.agent) if args.agent else None, transport=args.transport, target=args.target)
    if args.target and args.transport != "sip":
        print("voxd test: --target needs --transport sip", file=sys.stderr)
        return 2
    if args.transport == "sip" and args.text:
        print("voxd test: --text and --transport sip exclude each other", file=sys.stderr)
        return 2

    def progress(r: ScenarioResult) -> None:
        if not args.quiet:
            print(one_line(r), flush=True)

    report = await run_suites(files, cfg, base, opts, progress)
    if not args.quiet:
        print()
    print(table(report))
    write(report, Path(args.junit) if args.junit else None, Path(args.json_out) if args.json_out else None)
    if not report.results and not report.errors:
        print("voxd test: no scenario matched", file=sys.stderr)
        return 2
    return 1 if report.failed else 0
