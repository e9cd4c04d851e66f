"""`voxd call`: one whole call from a WAV file through the real session and engines.

Prints the transcript (caller and bot turns, tool calls with arguments and results,
digits) and a per-turn latency breakdown; writes what the bot said as a WAV.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from voxd.agents.loader import AgentLoadError, load_agent_file
from voxd.call.driver import drive, frames_of
from voxd.call.manager import CallManager
from voxd.call.ports import NullControl
from voxd.config import VoxdConfig
from voxd.core.calllog import CallRecord
from voxd.media.audio import SAMPLE_RATE, read_wav_as, write_wav
from voxd.tools.library import ToolLibrary


def standalone_calls(cfg: VoxdConfig, base: Path) -> tuple[CallManager, ToolLibrary]:
    """A call manager whose calls see the whole function library (built-ins, get_weather,
    search_knowledge_base, send_email, create_calendar_event and the agent's own functions),
    as in the daemon; without a database, bookings need a CalDAV server."""
    outbound = cfg.outbound()
    library = ToolLibrary(cfg.tools, base_dir=base, outbound=outbound)
    calls = CallManager(library.base, cfg.engines, outbound=outbound,
                        tools_for=lambda a: library.registry_for(a.config))
    return calls, library


def parse_dtmf(spec: str) -> list[tuple[float, str]]:
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        digit, _, at = item.partition("@")
        if len(digit) != 1 or digit not in "0123456789*#ABCD":
            raise ValueError(f"bad digit {digit!r} in --dtmf")
        out.append((float(at or 0), digit))
    return out


def format_record(record: CallRecord) -> str:
    lines = [f"call {record.id}  agent={record.agent}@{record.agent_version}  end={record.end_reason}"]
    events: list[tuple[float, str]] = []
    for t in record.turns:
        who = "caller" if t.speaker == "caller" else "bot   "
        text = t.text
        if t.interrupted:
            text = f"{t.heard_text or ''} [interrupted; planned: {t.text!r}]"
        events.append((t.started_at, f"{who}: {text}"))
        for tc in t.tool_calls:
            res = tc.error if tc.error else json.dumps(tc.result, default=str)
            events.append((t.started_at + 1e-6, f"  tool {tc.name}({json.dumps(tc.arguments)}) -> {res} [{tc.duration_ms:.1f} ms]"))
    for d in record.dtmf:
        events.append((d.at, f"digit: {d.digit} ({d.source})"))
    lines += [e for _, e in sorted(events, key=lambda x: x[0])]
    lat = [t for t in record.turns if t.speaker == "bot" and t.latency is not None]
    if lat:
        lines.append("")
        lines.append("latency (ms)      endpoint  transcript  first-token  first-audio  total")
        for t in lat:
            la = t.latency
            assert la is not None
            total = (la.endpoint_ms or 0) + (la.first_audio_ms or 0)
            lines.append(
                f"turn {t.index:<3}        {_f(la.endpoint_ms)}  {_f(la.transcript_ms, 10)}  {_f(la.first_token_ms, 11)}  {_f(la.first_audio_ms, 11)}  {total:5.0f}"
            )
    if record.interruptions:
        lines.append(f"interruptions: {record.interruptions}")
    return "\n".join(lines)


def _f(v: float | None, width: int = 8) -> str:
    return f"{v:{width}.0f}" if v is not None else " " * (width - 1) + "-"


async def run_harness(args: argparse.Namespace) -> int:
    from voxd.config import ConfigError, load_config

    try:
        cfg, base = load_config(getattr(args, "config", None))
        outbound = cfg.outbound()
        from voxd.providers.llm.local import runtime as local_llm

        local_llm.configure(cfg.local_llm, cfg.resolved_state_dir())  # models folder, threads, timeouts
        agent = load_agent_file(Path(args.agent), outbound)
    except (AgentLoadError, ConfigError) as e:
        print(e, file=sys.stderr)
        return 2
    try:
        dtmf = parse_dtmf(args.dtmf)
        caller = read_wav_as(args.input, SAMPLE_RATE)
    except (ValueError, OSError, EOFError) as e:
        print(f"voxd call: {e}", file=sys.stderr)
        return 2
    manager, library = standalone_calls(cfg, base)
    await library.warm_up([agent.config])
    await manager.warm_up([agent])
    control = NullControl()
    control.transport_name = "harness"
    session = manager.create(agent, control, from_uri=f"file:{args.input}")
    t0 = time.perf_counter()
    result = await drive(session, frames_of(caller.tobytes()), dtmf=dtmf, virtual=not args.realtime, tail_s=args.tail)
    if not session.closed:
        await session.close("caller_hangup", ended_by="caller")
    await library.close()
    wall = time.perf_counter() - t0
    if args.output:
        write_wav(args.output, bytes(result.bot_audio), SAMPLE_RATE)
    if args.json:
        print(json.dumps(session.record.to_dict(), default=str, indent=2))
    else:
        print(format_record(session.record))
        print(f"\n{result.frames * 0.02:.1f} s of call in {wall:.1f} s ({'real time' if args.realtime else 'virtual clock'})")
    return 0
