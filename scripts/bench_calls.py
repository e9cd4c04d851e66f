"""How many calls one voxd process carries, and how fast a turn is answered.

Density (default): N concurrent simulated calls in one process on one event loop,
clocked in real time by the shared `MediaClock`, with instant fake engines
(FakeSTT/FakeLLM/FakeTTS) and the real VAD stack (webrtcvad per frame, Silero
confirmation, Smart Turn v3). Each caller loops a speech WAV with pauses, at a
staggered offset, so turns, replies and barge-ins really happen. Prints CPU ms per
call-second (all threads), RSS MB per added call, event-loop lag p50/p99 (a 10 ms
sleeper) and the turns and interruptions that happened.

`--transport g711` runs every voxd call through the transport layer as a SIP/RTP
call has it (a `CallLeg` on the media clock, its G.711 codec objects decoding the
caller's mu-law and encoding the bot's every tick; no sockets), and reports the
media clock's late ticks: the headroom run is `--calls 100,250,500 --transport g711`.
`--transport none` (default) clocks the sessions directly, as before.

`--recording wav|opus` records every voxd call (caller left, bot right) into a temporary
folder through the leg's recorder tap, as a daemon with `recording: {enabled: true}` does;
compare MB/call and cpu ms/call-s with a run without it (`--recording off`, default).
The notes give the RSS growth over the measured window (flat when nothing grows with
call length) and the bytes written.

`--engine pipecat` runs the same load through one pipecat-ai Pipeline per call
(see `_bench_pipecat.py`); `--engine both` prints the two side by side with the
density ratio. Every (engine, N) runs in a fresh child process so RSS baselines
and model caches never leak between configurations.

`--latency` runs a few calls one at a time on the virtual clock with the offline
engines of agents/receptionist.yaml (whisper, dialog, piper; `--voice espeak` to
swap the voice) and prints the per-turn latency breakdown.

    python scripts/bench_calls.py --engine both --calls 1,10,50,100 --seconds 10
    python scripts/bench_calls.py --calls 50 --seconds 60 --transport g711 --recording wav
    python scripts/bench_calls.py --latency [--voice espeak] [--turn silence] [--realtime] [--speculation on|off]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT / "tests" / "data" / "speech"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FRAME_BYTES = 640
FRAME_S = 0.02
SETTLE_S = 1.0  # calls run this long before the measured window opens
CALLER_VOICES = ("flite-slt", "festival-kal", "flite-awb", "piper-joe")
UTTERANCES = ("what_time", "opening_hours", "twelve_times_seven", "book_tuesday")
PAUSES_S = (2.2, 3.0, 3.7)  # silence after each utterance (bot replies, caller barges in)

def transport_mode() -> str:
    """'none' (sessions clocked directly) or 'g711' (each call a CallLeg with G.711 codecs), from --transport."""
    return os.environ.get("VOXD_BENCH_TRANSPORT", "none")


def recording_mode() -> str:
    """'off', 'wav' or 'opus': every voxd call recorded into a temporary folder, from --recording."""
    return os.environ.get("VOXD_BENCH_RECORDING", "off")


def turn_mode() -> str:
    """'smart' (Smart Turn v3 asked on pauses) or 'silence' (VAD silence only), from --turn."""
    return os.environ.get("VOXD_BENCH_TURN", "smart")


BENCH_AGENT = """\
name: bench
greeting: Hi, this is the benchmark agent.
prompt: You are a benchmark.
turn: {detector: DETECTOR, min_silence_ms: 200, max_silence_ms: 1000}
interruption: {min_speech_ms: 300}
"""

# ---------------------------------------------------------------- shared helpers
@dataclass
class DensityResult:
    engine: str
    calls: int
    seconds: float
    cpu_ms_per_call_s: float
    rss_base_mb: float
    rss_per_call_mb: float
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    caller_turns: int
    bot_replies: int
    interruptions: int
    bot_frames: int
    setup_s: float
    cpu_cores: float = 0.0  # process CPU s per wall s over the window (2 = both cores busy)
    model_cpu_ms_per_call_s: float = 0.0  # Silero + Smart Turn inference, measured in the workers
    models: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def core_cpu_ms_per_call_s(self) -> float:
        """CPU outside model inference: the conversation core / pipeline itself."""
        return self.cpu_ms_per_call_s - self.model_cpu_ms_per_call_s


F = TypeVar("F", bound=Callable[..., Any])


class ModelMeter:
    """Counts calls of a blocking model function and the CPU time its thread spent in them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0
        self.cpu_s = 0.0
        self._lock = threading.Lock()

    def wrap(self, fn: F) -> F:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                d = time.thread_time() - t
                with self._lock:
                    self.calls += 1
                    self.cpu_s += d

        return timed  # type: ignore[return-value]

    def snapshot(self) -> tuple[int, float]:
        with self._lock:
            return self.calls, self.cpu_s


@dataclass
class Window:
    cpu_ms_per_call_s: float
    rss_per_call_mb: float
    cpu_cores: float
    model_cpu_ms_per_call_s: float
    models: str
    rss_growth_per_call_mb: float = 0.0  # over the measured window only

def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0

def caller_cycles() -> list[list[bytes]]:
    """Caller programmes: a speech WAV followed by a pause, as 20 ms frames.

    The frames are shared by every call that plays a cycle (calls only hold an index).
    """
    from voxd.media.audio import read_wav_as

    silence = bytes(FRAME_BYTES)
    cycles: list[list[bytes]] = []
    for i, (voice, utt) in enumerate((v, u) for v in CALLER_VOICES for u in UTTERANCES):
        path = SPEECH / voice / f"{utt}.16k.wav"
        if not path.exists():
            continue
        pcm = read_wav_as(path, 16_000).tobytes()
        frames = [pcm[j : j + FRAME_BYTES] for j in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]
        frames += [silence] * int(PAUSES_S[i % len(PAUSES_S)] / FRAME_S)
        cycles.append(frames)
    if not cycles:
        raise SystemExit(f"no caller WAVs under {SPEECH}")
    return cycles

class Caller:
    """One caller looping its cycle from a staggered offset."""

    __slots__ = ("frames", "pos")

    def __init__(self, frames: list[bytes], offset: int) -> None:
        self.frames = frames
        self.pos = offset % len(frames)

    def next(self) -> bytes:
        f = self.frames[self.pos]
        self.pos = (self.pos + 1) % len(self.frames)
        return f

def callers(n: int) -> list[Caller]:
    cycles = caller_cycles()
    # Spread start offsets over the cycle (golden-ratio stride), so calls never
    # speak in lockstep and the Silero/Smart Turn requests are spread in time.
    return [Caller(cycles[i % len(cycles)], int(((i * 0.618034) % 1.0) * len(cycles[i % len(cycles)])))
            for i in range(n)]

class G711Wire:
    """A bench call's wire as RTP has it, minus the socket: the caller's mu-law is decoded
    (and resampled) every tick, the bot's frames are encoded to mu-law."""

    holding = False

    def __init__(self, who: Caller, bot_frames: list[int]) -> None:
        from voxd.media.codecs import PCMU

        self.who = who
        self.dec = PCMU.decoder()
        self.enc = PCMU.encoder()
        self.bot_frames = bot_frames
        self.ulaw = _ulaw_cycle(who.frames)

    def receive(self) -> Any:
        pos = self.who.pos
        self.who.next()
        return self.dec.decode_packet(self.ulaw[pos])

    def send(self, frame: Any) -> None:
        if frame is not None:
            self.bot_frames[0] += 1
            self.enc.encode(frame)

    def clear(self) -> None:
        return None

    def release(self) -> None:
        pass

    async def hangup(self) -> None:
        pass

    async def transfer(self, target: str) -> bool:
        return False

    async def send_dtmf(self, digits: str) -> None:
        pass


_ULAW: dict[int, list[bytes]] = {}


def _ulaw_cycle(frames: list[bytes]) -> list[bytes]:
    """A caller cycle as the wire carries it (mu-law, 8 kHz), encoded once and shared."""
    key = id(frames)
    if key not in _ULAW:
        import numpy as np

        from voxd.media.audio import resample
        from voxd.proto.g711 import ulaw_encode

        pcm = np.frombuffer(b"".join(frames), "<i2")
        ulaw = ulaw_encode(resample(pcm, 16_000, 8_000))
        _ULAW[key] = [ulaw[i * 160 : (i + 1) * 160].ljust(160, b"\xff") for i in range(len(frames))]
    return _ULAW[key]


class LagProbe:
    """A task that sleeps 10 ms at a time and records how late it wakes."""

    def __init__(self, period_s: float = 0.01) -> None:
        self.period_s = period_s
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None
        self.recording = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="lag-probe")

    async def _run(self) -> None:
        clock = time.perf_counter  # uvloop's loop.time() has only millisecond resolution
        while True:
            t = clock()
            await asyncio.sleep(self.period_s)
            if self.recording:
                self.samples.append(max(0.0, clock() - t - self.period_s))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def pct(self, q: float) -> float:
        if not self.samples:
            return float("nan")
        s = sorted(self.samples)
        return s[min(len(s) - 1, int(q * len(s)))] * 1000.0

def install_uvloop() -> str:
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"

async def measure(
    probe: LagProbe, n: int, seconds: float, rss0: float, meters: Sequence[ModelMeter]
) -> Window:
    """Settle, then measure process CPU (all threads) and model CPU over `seconds`."""
    await asyncio.sleep(SETTLE_S)
    gc.collect()
    probe.recording = True
    before = [m.snapshot() for m in meters]
    rss_start = rss_mb()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    cpu1, wall1 = time.process_time(), time.perf_counter()
    after = [m.snapshot() for m in meters]
    probe.recording = False
    rss1 = rss_mb()
    wall = wall1 - wall0
    model_s = sum(a[1] - b[1] for a, b in zip(after, before, strict=True))
    desc = ", ".join(
        f"{m.name} {a[0] - b[0]}x{(a[1] - b[1]) * 1000 / max(1, a[0] - b[0]):.1f}ms"
        for m, a, b in zip(meters, after, before, strict=True)
    )
    return Window(
        cpu_ms_per_call_s=(cpu1 - cpu0) * 1000.0 / (n * wall),
        rss_per_call_mb=(rss1 - rss0) / n,
        cpu_cores=(cpu1 - cpu0) / wall,
        model_cpu_ms_per_call_s=model_s * 1000.0 / (n * wall),
        models=desc,
        rss_growth_per_call_mb=(rss1 - rss_start) / n,
    )

# ---------------------------------------------------------------- voxd engine
async def voxd_density(n: int, seconds: float) -> DensityResult:
    import numpy as np

    from voxd.agents.loader import parse_agent
    from voxd.call.manager import CallManager
    from voxd.call.ports import Engines, NullControl
    from voxd.call.session import CallSession
    from voxd.media.codecs import PCMU
    from voxd.media.frame import AudioFrame
    from voxd.media.silero import SileroVAD
    from voxd.media.turn import SmartTurn
    from voxd.net.clock import MediaClock
    from voxd.net.leg import CallLeg, LegEnv
    from voxd.providers.fakes import FakeLLM, FakeSTT, FakeTTS
    from voxd.tools.builtins import default_registry

    detector = "smart_turn" if turn_mode() == "smart" else "silence"
    agent = parse_agent(BENCH_AGENT.replace("DETECTOR", detector), "bench.yaml")
    silero, smart = SileroVAD(), SmartTurn()
    meters = [ModelMeter("silero"), ModelMeter("smart-turn")]
    silero.probability_sync = meters[0].wrap(silero.probability_sync)  # type: ignore[method-assign]
    smart.end_probability_sync = meters[1].wrap(smart.end_probability_sync)  # type: ignore[method-assign]
    await silero.warm_up()
    await smart.warm_up()
    await smart.end_probability(np.zeros(16_000, dtype=np.int16))
    manager = CallManager(default_registry(), max_calls=max(500, n))
    recording = recording_mode()
    rec_dir = room = None
    if recording != "off":
        import tempfile

        from voxd.call.recording import Recordings

        rec_dir = Path(tempfile.mkdtemp(prefix="voxd-bench-rec-"))
        rcfg = agent.config.recording.model_copy(update={"enabled": True, "format": recording})
        agent = dataclasses.replace(agent, config=agent.config.model_copy(update={"recording": rcfg}))
        room = Recordings(rec_dir)
        manager.recorder = room.recorder_for
    people = callers(n)
    gc.collect()
    rss0 = rss_mb()

    t_setup = time.perf_counter()
    clock = MediaClock()
    probe = LagProbe()
    probe.start()
    sessions: list[CallSession] = []
    handles: list[int] = []
    bot_frames = [0]
    recorders: list[Any] = []

    def make_tick(s: CallSession, who: Caller) -> Callable[[], None]:
        rec = manager.recorder(s) if manager.recorder is not None else None  # what a CallLeg taps

        def tick() -> None:
            frame = AudioFrame(who.next())
            if rec is not None:
                rec.caller(s.media_t, frame)
            s.feed_audio(frame)
            out = s.next_frame()
            if out is not None:
                bot_frames[0] += 1
                if rec is not None:
                    rec.bot(s.media_t, out)

        if rec is not None:
            recorders.append(rec)
        return tick

    transport = transport_mode()
    legs = []
    env = LegEnv(manager, clock)
    for who in people:
        engines = Engines(stt=FakeSTT(), llm=FakeLLM(), tts=FakeTTS(),
                          confirm=silero.speech_probability,
                          turn_model=smart.end_probability if detector == "smart_turn" else None)
        if transport == "g711":
            wire = G711Wire(who, bot_frames)
            leg = CallLeg(env, "bench", wire, wire, codec=PCMU)
            s = leg.admit(agent, engines=engines)
            await leg.answered()
            legs.append(leg)
        else:
            s = manager.create(agent, NullControl(), engines=engines)
            await s.start()
            handles.append(clock.register(make_tick(s, who)))
        sessions.append(s)
    setup_s = time.perf_counter() - t_setup

    w = await measure(probe, n, seconds, rss0, meters)
    late, max_lag = clock.late_ticks, clock.max_lag_s
    from voxd.media import inference

    backlog = inference.executor()._work_queue.qsize()  # private, but the one number that shows starvation
    for h in handles:
        clock.unregister(h)
    for leg in legs:
        leg.media_ended()
    for rec in recorders:
        rec.close()
    rec_note = "recording off"
    if rec_dir is not None and room is not None:
        import shutil

        await room.flush()  # every file hashed, as at hang-up
        files = [f for f in rec_dir.glob("call_*") if f.suffix in (".wav", ".ogg")]
        rec_note = (f"recording {recording}: {len(files)} files, {sum(f.stat().st_size for f in files) / 1e6:.1f} MB "
                    f"written")
        shutil.rmtree(rec_dir, ignore_errors=True)
    await clock.stop()
    await probe.stop()
    turns = [t for s in sessions for t in s.record.turns]
    res = DensityResult(
        engine="voxd", calls=n, seconds=seconds, cpu_ms_per_call_s=w.cpu_ms_per_call_s, rss_base_mb=rss0,
        rss_per_call_mb=w.rss_per_call_mb, cpu_cores=w.cpu_cores,
        model_cpu_ms_per_call_s=w.model_cpu_ms_per_call_s, models=w.models, lag_p50_ms=probe.pct(0.50), lag_p99_ms=probe.pct(0.99),
        lag_max_ms=max(probe.samples, default=0.0) * 1000.0,
        caller_turns=sum(1 for t in turns if t.speaker == "caller"),
        bot_replies=sum(1 for t in turns if t.speaker == "bot" and t.index > 0),
        interruptions=sum(s.record.interruptions for s in sessions),
        bot_frames=bot_frames[0], setup_s=setup_s,
        notes=[rec_note, f"RSS growth over the measured window {w.rss_growth_per_call_mb:.3f} MB/call",
               f"N={n} (transport {transport}): media clock {late} late ticks skipped, max lag {max_lag * 1000:.0f} ms; "
               f"inference queue backlog at end {backlog}; calls waiting on a model {sum(s.work.busy > 0 for s in sessions)}"],
    )
    for s in sessions:
        await s.close("ended", ended_by="system")
    return res

# ---------------------------------------------------------------- child process driver
def run_child(args: argparse.Namespace) -> int:
    loop_kind = install_uvloop()
    if args.engine == "voxd":
        res = asyncio.run(voxd_density(args.n, args.seconds))
    else:
        from _bench_pipecat import pipecat_density  # scripts/ is sys.path[0]

        res = asyncio.run(pipecat_density(args.n, args.seconds))
    res.notes.append(f"loop: {loop_kind}")
    print("RESULT " + json.dumps(asdict(res)), flush=True)
    return 0

def spawn(engine: str, n: int, seconds: float, timeout_s: float) -> DensityResult | str:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", engine, "--n", str(n),
           "--seconds", str(seconds)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), LOGURU_LEVEL="WARNING")
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=ROOT, env=env)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout_s:.0f} s"
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return DensityResult(**json.loads(line[len("RESULT "):]))
    tail = (out.stderr or out.stdout).strip().splitlines()[-5:]
    return f"failed (rc={out.returncode}): " + " | ".join(tail)

def calls_per_core(cpu_ms: float) -> float:
    return 1000.0 / cpu_ms if cpu_ms > 0 else float("inf")

def print_density(results: dict[str, dict[int, DensityResult | str]], ns: Sequence[int]) -> None:
    head = (f"{'engine':<8} {'calls':>5} {'cpu ms/call-s':>13} {'model':>6} {'core':>6} {'cores':>5} "
            f"{'calls/core':>10} {'MB/call':>8} "
            f"{'lag p50':>8} {'lag p99':>8} {'lag max':>8} {'turns':>6} {'replies':>7} {'barge-ins':>9} {'setup s':>7}")
    print(head)
    print("-" * len(head))
    for n in ns:
        for engine, by_n in results.items():
            r = by_n.get(n)
            if isinstance(r, DensityResult):
                print(f"{engine:<8} {n:>5} {r.cpu_ms_per_call_s:>13.2f} {r.model_cpu_ms_per_call_s:>6.1f} "
                      f"{r.core_cpu_ms_per_call_s:>6.1f} {r.cpu_cores:>5.2f} {calls_per_core(r.cpu_ms_per_call_s):>10.0f} "
                      f"{r.rss_per_call_mb:>8.2f} {r.lag_p50_ms:>8.2f} {r.lag_p99_ms:>8.2f} {r.lag_max_ms:>8.1f} "
                      f"{r.caller_turns:>6} {r.bot_replies:>7} {r.interruptions:>9} {r.setup_s:>7.1f}")
            elif r is not None:
                print(f"{engine:<8} {n:>5}  {r}")
    if "voxd" in results and "pipecat" in results:
        print("\ndensity ratio (calls per core at equal CPU, voxd / pipecat):")
        for n in ns:
            v, p = results["voxd"].get(n), results["pipecat"].get(n)
            if isinstance(v, DensityResult) and isinstance(p, DensityResult):
                ratio = p.cpu_ms_per_call_s / v.cpu_ms_per_call_s
                core = p.core_cpu_ms_per_call_s / v.core_cpu_ms_per_call_s if v.core_cpu_ms_per_call_s > 0 else 0.0
                print(f"  N={n:<4} voxd {calls_per_core(v.cpu_ms_per_call_s):6.0f}  pipecat "
                      f"{calls_per_core(p.cpu_ms_per_call_s):6.0f}  ratio {ratio:5.1f}x   "
                      f"(outside model inference: {core:5.1f}x)")
        print("  (ratios are only meaningful where neither run saturated the CPU: see the cores column)")
    print("\nmodel inference per configuration (calls x mean CPU per call, measured window):")
    for n in ns:
        for engine, by_n in results.items():
            r = by_n.get(n)
            if isinstance(r, DensityResult):
                print(f"  {engine:<8} N={n:<4} {r.models}")
    notes = sorted({f"{e}: {x}" for by_n in results.values() for r in by_n.values()
                    if isinstance(r, DensityResult) for x in r.notes for e in [r.engine]})
    for note in notes:
        print("  note " + note)

def density(args: argparse.Namespace) -> int:
    ns = [int(x) for x in args.calls.split(",") if x.strip()]
    engines = ["voxd", "pipecat"] if args.engine == "both" else [args.engine]
    results: dict[str, dict[int, DensityResult | str]] = {e: {} for e in engines}
    print(f"{os.cpu_count()} cores (shared with other jobs: absolute numbers are pessimistic); "
          f"{args.seconds:.0f} s measured per configuration after {SETTLE_S:.0f} s settling; "
          f"load average at start {os.getloadavg()[0]:.2f}\n", flush=True)
    for n in ns:
        for e in engines:
            t0 = time.perf_counter()
            results[e][n] = spawn(e, n, args.seconds, timeout_s=args.seconds + SETTLE_S + 90)
            print(f"  ran {e} N={n} in {time.perf_counter() - t0:.1f} s wall "
                  f"(load {os.getloadavg()[0]:.2f})", file=sys.stderr, flush=True)
    print_density(results, ns)
    return 0

# ---------------------------------------------------------------- latency (offline engines)
LATENCY_CASES = (
    ("flite-slt", "what_time"),
    ("flite-slt", "opening_hours"),
    ("festival-kal", "what_time"),
    ("festival-kal", "twelve_times_seven"),
    ("piper-joe", "opening_hours"),
)

async def latency(args: argparse.Namespace) -> int:
    from voxd.agents.loader import parse_agent
    from voxd.call.driver import drive, frames_of
    from voxd.call.ports import NullControl
    from voxd.media.audio import read_wav_as

    text = (ROOT / "agents" / "receptionist.yaml").read_text()
    agent = parse_agent(text, "agents/receptionist.yaml")
    if args.voice:
        vcfg = agent.config.voice.model_copy(update={"engine": args.voice, "voice": None})
        agent = dataclasses.replace(agent, config=agent.config.model_copy(update={"voice": vcfg}))
    turn_update: dict[str, object] = {"speculative_stt": {"auto": None, "on": True, "off": False}[args.speculation]}
    if args.turn:
        turn_update["detector"] = "smart_turn" if args.turn == "smart" else "silence"
    tcfg = agent.config.turn.model_copy(update=turn_update)
    agent = dataclasses.replace(agent, config=agent.config.model_copy(update={"turn": tcfg}))
    if args.llm != "agent":  # dialog, or a packaged model for engine: local (no fallback)
        lcfg = {"engine": "dialog"} if args.llm == "dialog" else {"engine": "local", "model": args.llm}
        agent = dataclasses.replace(agent, config=agent.config.model_validate(
            {**agent.config.model_dump(exclude={"llm"}), "llm": lcfg}))
    lag = _LagProbe()
    lag.start()
    # as `voxd call` builds them: the whole function library (the receptionist books with
    # book_appointment, which the five core built-ins do not hold)
    from voxd.config import VoxdConfig
    from voxd.harness import standalone_calls

    manager, library = standalone_calls(VoxdConfig(), ROOT)
    await library.warm_up([agent.config])
    t0 = time.perf_counter()
    await manager.warm_up([agent])
    print(f"agent receptionist: stt={agent.config.stt.engine}/{agent.config.stt.model} "
          f"llm={agent.config.llm.engine} voice={agent.config.voice.engine} turn={agent.config.turn.detector} "
          f"speculative_stt={agent.config.turn.speculative_stt} clock={'real' if args.realtime else 'virtual'}; "
          f"warm-up {time.perf_counter() - t0:.1f} s; "
          f"{os.cpu_count()} shared cores, load {os.getloadavg()[0]:.2f}\n")
    print(f"{'caller':<13} {'utterance':<19} {'turn':>4} {'endpoint':>8} {'transcript':>10} {'first-token':>11} "
          f"{'first-audio':>11}  {'total':>6}  caller -> bot")
    cols: dict[str, list[float]] = {"endpoint": [], "transcript": [], "first_token": [], "first_audio": [], "sum": []}
    tokens: list[tuple[int, float]] = []
    for voice, utt in LATENCY_CASES:
        path = SPEECH / voice / f"{utt}.16k.wav"
        if not path.exists():
            continue
        pcm = read_wav_as(path, 16_000).tobytes()
        caller = bytes(int(1.0 / FRAME_S) * FRAME_BYTES) + pcm  # a second of quiet, then the question
        session = manager.create(agent, NullControl())
        await drive(session, frames_of(caller), virtual=not args.realtime, tail_s=1.0, max_s=60.0)
        if not session.closed:
            await session.close("caller_hangup")
        caller_text = " / ".join(t.text for t in session.record.turns if t.speaker == "caller")
        for m in session.record.metadata.get("usage", {}).get("turns", []):
            if m.get("role") == "llm" and m.get("units", {}).get("completion_tokens") and m.get("duration_ms"):
                tokens.append((m["units"]["completion_tokens"], m["duration_ms"]))
        for t in session.record.turns:
            la = t.latency
            if t.speaker != "bot" or la is None:
                continue
            vals = {"endpoint": la.endpoint_ms, "transcript": la.transcript_ms,
                    "first_token": la.first_token_ms, "first_audio": la.first_audio_ms}
            total = (la.endpoint_ms or 0.0) + (la.first_audio_ms or 0.0)  # stages after endpoint are cumulative
            for k, v in vals.items():
                if v is not None:
                    cols[k].append(v)
            cols["sum"].append(total)
            print(f"{voice:<13} {utt:<19} {t.index:>4} {_ms(la.endpoint_ms, 8)} {_ms(la.transcript_ms, 10)} "
                  f"{_ms(la.first_token_ms, 11)} {_ms(la.first_audio_ms, 11)}  {total:6.0f}  "
                  f"{caller_text!r} -> {t.text[:48]!r}")
    print(f"{'p50 over turns':<38} {_p50(cols['endpoint'], 8)} {_p50(cols['transcript'], 10)} "
          f"{_p50(cols['first_token'], 11)} {_p50(cols['first_audio'], 11)}  {_p50(cols['sum'], 6)}")
    print(f"{'p90 over turns':<38} {_p90(cols['endpoint'], 8)} {_p90(cols['transcript'], 10)} "
          f"{_p90(cols['first_token'], 11)} {_p90(cols['first_audio'], 11)}  {_p90(cols['sum'], 6)}")
    lag.stop()
    print(f"\nevent-loop lag p99 {lag.p99():.1f} ms, max {lag.max():.1f} ms over {len(lag.lags)} probes (10 ms timer)")
    if tokens:
        n, ms = sum(t for t, _ in tokens), sum(d for _, d in tokens)
        print(f"LLM: {n} tokens generated in {ms / 1000:.1f} s of steps = {1000 * n / ms:.1f} tokens/s (prompt included)")
    print(f"RSS: daemon {_rss_mb(os.getpid()):.0f} MB" + "".join(
        f", model {p.label} {_rss_mb(p.pid):.0f} MB" for rt in _local_runtimes() for p in rt.procs if p.pid))
    print("\nendpoint: end of caller speech -> end of turn decided, in media time (VAD silence + Smart Turn; "
          "the virtual clock waits for the model). transcript / first-token / first-audio: wall ms from that "
          "decision to the STT text, the first LLM token and the first bot audio ready to play (cumulative). "
          "total = endpoint + first-audio: end of caller speech -> bot audio.")
    return 0

def _ms(v: float | None, w: int) -> str:
    return f"{v:{w}.0f}" if v is not None else " " * (w - 1) + "-"

def _p90(vs: list[float], w: int) -> str:
    return f"{sorted(vs)[int(0.9 * (len(vs) - 1))]:{w}.0f}" if vs else " " * (w - 1) + "-"

class _LagProbe:
    """How late a 10 ms timer fires on the event loop: what a model on the loop's thread would cost."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            self.lags.append(max(0.0, (time.perf_counter() - t - 0.01) * 1000))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def p99(self) -> float:
        return sorted(self.lags)[int(0.99 * (len(self.lags) - 1))] if self.lags else 0.0

    def max(self) -> float:
        return max(self.lags, default=0.0)

def _rss_mb(pid: int | None) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0

def _local_runtimes() -> list[Any]:
    from voxd.providers.llm.local import runtime

    return list(runtime._runtimes.values())

def _p50(vs: list[float], w: int) -> str:
    return f"{statistics.median(vs):{w}.0f}" if vs else " " * (w - 1) + "-"

# ---------------------------------------------------------------- entry point
def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", choices=["voxd", "pipecat", "both"], default="voxd")
    p.add_argument("--calls", default="1,10,50,100", help="comma-separated concurrent call counts")
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per configuration")
    p.add_argument("--latency", action="store_true", help="per-turn latency with the offline engines")
    p.add_argument("--voice", choices=["piper", "espeak"], default=None, help="override the agent's voice (--latency)")
    p.add_argument("--realtime", action="store_true", help="--latency on the real clock (pauses take their real time)")
    p.add_argument("--llm", default="agent",
                   help="--latency brain: agent (as in receptionist.yaml), dialog, or a packaged model name")
    p.add_argument("--speculation", choices=["auto", "on", "off"], default="auto",
                   help="--latency with the agent's turn.speculative_stt unset (auto), true or false")
    p.add_argument("--turn", choices=["smart", "silence"], default=None,
                   help="end of turn: Smart Turn v3 on pauses (default) or VAD silence only (both engines)")
    p.add_argument("--transport", choices=["none", "g711"], default=None,
                   help="voxd: clock sessions directly (none, default) or through a CallLeg with G.711 codecs")
    p.add_argument("--recording", choices=["off", "wav", "opus"], default=None,
                   help="voxd: record every call (the leg's recorder tap) into a temporary folder")
    p.add_argument("--child", choices=["voxd", "pipecat"], help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.turn:
        os.environ["VOXD_BENCH_TURN"] = args.turn
    if args.transport:
        os.environ["VOXD_BENCH_TRANSPORT"] = args.transport
    if args.recording:
        os.environ["VOXD_BENCH_RECORDING"] = args.recording
    if args.child:
        args.engine = args.child
        return run_child(args)
    if args.latency:
        install_uvloop()
        return asyncio.run(latency(args))
    return density(args)

if __name__ == "__main__":
    raise SystemExit(main())
