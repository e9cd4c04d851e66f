"""`voxd dial`: place one outbound SIP call with an agent, standalone, and print the record."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from pathlib import Path

from voxd.agents.loader import AgentLoadError, LoadedAgent, load_agent_file
from voxd.agents.orgs import DEFAULT_ORG
from voxd.config import ConfigError, VoxdConfig, load_config
from voxd.harness import format_record, standalone_calls
from voxd.net.clock import MediaClock
from voxd.net.sip import SipEndpoint


def _load(args: argparse.Namespace) -> tuple[VoxdConfig, Path, LoadedAgent]:
    cfg, base = load_config(args.config)
    org = getattr(args, "org", None) or DEFAULT_ORG
    agent_path = Path(args.agent)
    if not agent_path.exists():
        folder = base / cfg.agents_dir if org == DEFAULT_ORG else base / cfg.agents_dir / org
        agent_path = folder / f"{args.agent}.yaml"
    # the call is the organisation's: its record says so, and only its trunks are dialled
    return cfg, base, dataclasses.replace(load_agent_file(agent_path, cfg.outbound()), org=org)


async def run_dial(args: argparse.Namespace) -> int:
    try:
        cfg, base, agent = _load(args)
    except (ConfigError, AgentLoadError) as e:
        print(f"voxd dial: {e}", file=sys.stderr)
        return 2
    sip_cfg = cfg.sip.model_copy(update={"port": args.sip_port, "tcp": False})
    calls, library = standalone_calls(cfg, base)
    await library.warm_up([agent.config])
    await calls.warm_up([agent])
    clock = MediaClock()
    endpoint = SipEndpoint(sip_cfg, None, calls, clock)  # type: ignore[arg-type]
    await endpoint.start()
    try:
        from voxd.core.errors import AtCapacity, NotFound
        from voxd.net.sip_trunk import dial_trunk, pick_trunk

        try:
            trunk = pick_trunk(endpoint, getattr(args, "trunk", None), args.target, org=agent.org)
            if trunk is not None:
                session = await dial_trunk(endpoint, agent, trunk, args.target, secrets=cfg.outbound().secrets,
                                           from_user=args.from_user)
            else:
                session = await endpoint.dial(agent, args.target, from_user=args.from_user or "voxd")
        except (ValueError, NotFound, AtCapacity) as e:
            print(f"voxd dial: {e}", file=sys.stderr)
            return 2
        try:
            async with asyncio.timeout(args.max_seconds):
                await session.ended.wait()
        except TimeoutError:
            session.end_with(None, "max_duration")
            await session.ended.wait()
    finally:
        await endpoint.stop()
        await clock.stop()
        await library.close()
    rec = session.record
    print(json.dumps(rec.to_dict(), default=str, indent=2) if args.json else format_record(rec))
    return 0 if rec.answered_at is not None else 1
