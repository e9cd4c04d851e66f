"""The `voxd` command: run the daemon, check configuration, run a call from a WAV."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from voxd import __version__


def _run_async(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def cmd_run(args: argparse.Namespace) -> int:
    from voxd.app import serve
    from voxd.config import ConfigError, VoxdConfig, load_config
    from voxd.logs import setup_logging

    def load() -> VoxdConfig:
        """The config file with this command line's overrides (also used on SIGHUP)."""
        cfg, _ = load_config(args.config)
        overrides: dict[str, Any] = {}
        if args.http_port is not None:
            overrides["http"] = cfg.http.model_copy(update={"port": args.http_port})
        if args.sip_port is not None:
            overrides["sip"] = cfg.sip.model_copy(update={"port": args.sip_port})
        if args.agents:
            overrides["agents_dir"] = str(Path(args.agents).resolve())
        return cfg.model_copy(update=overrides) if overrides else cfg

    try:
        cfg = load()
        _, base = load_config(args.config)
    except ConfigError as e:
        print(f"voxd: {e}", file=sys.stderr)
        return 2
    setup_logging(cfg.log_level, cfg.log_levels)
    return int(_run_async(serve(cfg, base, load if args.config else None)))


def cmd_check(args: argparse.Namespace) -> int:
    """Validate agent files: the paths given (files or folders), else the agents folder."""
    import logging

    from voxd.agents.catalog import SUFFIXES, AgentCatalog
    from voxd.agents.loader import AgentLoadError, load_agent_file
    from voxd.agents.orgs import OrgCatalogs
    from voxd.config import ConfigError, load_config

    try:
        cfg, base = load_config(args.config)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 1
    targets = [Path(p) for p in args.paths]
    if args.agents:
        targets.append(Path(args.agents))
    if not targets:
        agents_dir = Path(cfg.agents_dir)
        targets = [agents_dir if agents_dir.is_absolute() else base / agents_dir]
    logging.getLogger("voxd.agents").setLevel(logging.CRITICAL)  # errors are printed below
    outbound = cfg.outbound()  # the daemon's secrets and egress rules
    errors = ok = 0
    for target in targets:
        if target.is_dir():  # agents/*.yaml (the default organisation's) and agents/<org>/*.yaml
            fleet = OrgCatalogs(AgentCatalog(target, outbound=outbound))
            found = rejected = 0
            for report in fleet.reload().values():
                for err in report.errors:  # a number two organisations claim is refused in the second
                    print(err, file=sys.stderr)
                rejected += len(report.errors)
            errors += rejected
            for reg in fleet.catalogs():
                for a in reg.all():
                    org = "" if a.org == "default" else f" org={a.org}"
                    print(f"ok  {a.path}  agent={a.name}{org} version={a.version}")
                found += len(reg.names())
            ok += found
            if not found and not rejected:
                print(f"no agent files in {target}", file=sys.stderr)
                errors += 1
        elif target.is_file() or target.suffix in SUFFIXES:
            try:
                a = load_agent_file(target, outbound)
            except AgentLoadError as e:
                for err in e.errors:
                    print(err, file=sys.stderr)
                errors += max(1, len(e.errors))
                continue
            print(f"ok  {a.path}  agent={a.config.name} version={a.version}")
            ok += 1
        else:
            print(f"{target}: no such file or folder", file=sys.stderr)
            errors += 1
    return 1 if errors or not ok else 0


def cmd_schema(args: argparse.Namespace) -> int:
    from voxd.agents.schema import AgentConfig

    schema = AgentConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "voxd agent"
    text = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_call(args: argparse.Namespace) -> int:
    from voxd.harness import run_harness

    return int(_run_async(run_harness(args)))


def cmd_keys(args: argparse.Namespace) -> int:
    from voxd.api import keys_cli
    from voxd.config import ConfigError, load_config
    from voxd.store.backends import open_store

    try:
        cfg, _ = load_config(args.config)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2

    async def go() -> int:
        db = await open_store(cfg.store.resolved_url(), default_path=cfg.resolved_database(),
                              state_dir=cfg.resolved_state_dir())
        try:
            if args.keys_cmd == "create":
                import time

                expires = time.time() + args.expires_days * 86400 if args.expires_days else None
                try:
                    raw = await keys_cli.create_key(db.for_org(args.org), args.name, args.scope, expires,
                                                    quota_per_day=args.quota_per_day,
                                                    rate_limit_per_minute=args.rate_per_minute)
                except ValueError as e:
                    print(f"voxd keys: {e}", file=sys.stderr)
                    return 2
                print(raw)
                print("Store this key now: it is shown only once.", file=sys.stderr)
            elif args.keys_cmd == "list":
                for k in await keys_cli.list_keys(db):
                    print(json.dumps(k, default=str))
            elif args.keys_cmd == "revoke":
                if not await keys_cli.revoke_key(db, args.key_id):
                    print(f"voxd keys: no key {args.key_id}", file=sys.stderr)
                    return 1
                print(f"revoked {args.key_id}")
            return 0
        finally:
            await db.close()

    return int(asyncio.run(go()))


def cmd_chat(args: argparse.Namespace) -> int:
    from voxd.chat import run_chat

    return int(_run_async(run_chat(args)))


def cmd_test(args: argparse.Namespace) -> int:
    from voxd.suites.cli import run_test

    return int(_run_async(run_test(args)))


def cmd_dial(args: argparse.Namespace) -> int:
    from voxd.dial import run_dial

    return int(_run_async(run_dial(args)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="voxd", description="Self-hosted runtime for real-time voice AI agents.")
    p.add_argument("--version", action="version", version=f"voxd {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="start the daemon")
    r.add_argument("--config", "-c", help="path to voxd.yaml (default: built-in defaults)")
    r.add_argument("--agents", help="agents folder (overrides the config)")
    r.add_argument("--http-port", type=int, help="override http.port (0 = any free port)")
    r.add_argument("--sip-port", type=int, help="override sip.port")
    r.set_defaults(fn=cmd_run)

    c = sub.add_parser("check", help="validate the config and agent files; exit 1 on errors")
    c.add_argument("paths", nargs="*", metavar="PATH",
                   help="agent files or folders (default: the config's agents folder)")
    c.add_argument("--config", "-c")
    c.add_argument("--agents", help="agents folder (same as giving it as a PATH)")
    c.set_defaults(fn=cmd_check)

    s = sub.add_parser("schema", help="print the JSON Schema of agent files (for editor completion)")
    s.add_argument("--output", "-o")
    s.set_defaults(fn=cmd_schema)

    k = sub.add_parser("call", help="run one whole call from a WAV file through the real session")
    k.add_argument("--agent", required=True, help="agent YAML file")
    k.add_argument("--config", "-c", help="voxd.yaml whose egress: and secrets: apply (default: public hosts only)")
    k.add_argument("--input", required=True, help="caller audio (WAV, any rate)")
    k.add_argument("--output", help="write what the bot said to this WAV (16 kHz)")
    k.add_argument("--dtmf", default="", help='digits with times in seconds, e.g. "1@4.0,2@4.5"')
    k.add_argument("--realtime", action="store_true", help="pace in real time instead of the virtual clock")
    k.add_argument("--json", action="store_true", help="print the call record as JSON")
    k.add_argument("--tail", type=float, default=1.5, help="seconds of quiet after the bot finishes before hanging up")
    k.set_defaults(fn=cmd_call)

    ks = sub.add_parser("keys", help="manage control-API keys (stored hashed; shown once)")
    ks.add_argument("--config", "-c")
    # -c before or after the subcommand (voxd keys -c F create / voxd keys create -c F): the
    # subcommands' copy is SUPPRESSed unless given, so it never blanks the one before
    after = argparse.ArgumentParser(add_help=False)
    after.add_argument("--config", "-c", default=argparse.SUPPRESS, help="path to voxd.yaml")
    ksub = ks.add_subparsers(dest="keys_cmd", required=True)
    kc = ksub.add_parser("create", help="create a key and print it once", parents=[after])
    kc.add_argument("--name", required=True)
    kc.add_argument("--scope", action="append", required=True, help="repeat for several (admin = all)")
    kc.add_argument("--expires-days", type=float)
    kc.add_argument("--quota-per-day", type=int)
    kc.add_argument("--rate-per-minute", type=int)
    ksub.add_parser("list", help="list keys (never the keys themselves)", parents=[after])
    kr = ksub.add_parser("revoke", help="revoke a key by id", parents=[after])
    kr.add_argument("key_id")
    kc.add_argument("--org", default="default", help="the organisation the key belongs to")
    ks.set_defaults(fn=cmd_keys)

    from voxd.admin_cli import add_parsers

    add_parsers(sub)

    t = sub.add_parser("chat", help="talk to an agent in text on the terminal (its LLM and functions, no audio)")
    t.add_argument("--agent", required=True, help="agent YAML file")
    t.add_argument("--config", "-c", help="voxd.yaml whose tools:, egress: and secrets: apply")
    t.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                   help="a conversation variable (metadata); repeat for several")
    t.add_argument("--quiet-tools", action="store_true", help="do not print function calls")
    t.set_defaults(fn=cmd_chat)

    d = sub.add_parser("dial", help="place an outbound SIP call with an agent and print its transcript")
    d.add_argument("target", help="sip:user@host[:port], or a phone number (+15551234567) with --trunk")
    d.add_argument("--trunk", help="a trunk with outbound settings in voxd.yaml (sip.trunks[].outbound)")
    d.add_argument("--agent", required=True, help="agent YAML file or name in the agents folder")
    d.add_argument("--config", "-c")
    d.add_argument("--from-user", default=None, help="From user (default: the trunk's from_user, else voxd)")
    d.add_argument("--sip-port", type=int, default=0, help="local SIP port (default: any free port)")
    d.add_argument("--max-seconds", type=float, help="hang up after this long")
    d.add_argument("--json", action="store_true", help="print the call record as JSON")
    d.set_defaults(fn=cmd_dial)

    from voxd.providers.llm.local.cli import add_parser as add_models

    add_models(sub)

    from voxd.suites.cli import add_parser as add_test_parser

    add_test_parser(sub).set_defaults(fn=cmd_test)

    args = p.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
