"""SIP/RTP load benchmark: N concurrent sipp calls against a voxd daemon process.

For each N: the daemon starts as a child process (its own state folder, SIP on a
free port, RTP in --rtp-range), tshark captures that RTP range on loopback, sipp
places N calls at once (-r/-l/-m: caller speech with rtp_stream, RFC 4733 digits,
BYE) and, while they run, baresip places a few barge-in calls (a long greeting, the
caller talks over it). Printed per N:

- CPU ms per call-second: utime+stime of the daemon process (all threads, from
  /proc/<pid>/stat) over the run, divided by the answered-to-ended seconds of all
  calls in the call records;
- RSS per call: (peak VmRSS during the calls - VmRSS when idle and ready) / N;
- outbound RTP jitter: for every voxd->sipp stream in the capture, |gap between
  consecutive packets - 20 ms|, p50/p99/max over all gaps; packet loss from the RTP
  sequence numbers (out and in);
- barge-in: caller speech onset -> bot audio silent, from baresip's recordings
  (onset in dump-*-enc.wav, where the bot audio stops in dump-*-dec.wav), each
  mapped to the wall clock through the capture (the k-th 20 ms frame of a
  recording is the k-th RTP packet of that direction); voxd's own barge_in_ms from
  the call record alongside.

Modes: `--agent fake` (default: fake STT and LLM, espeak voice, so the engines do
not dominate) or `--agent receptionist` (agents/receptionist.yaml: whisper, the
dialog engine, piper, Smart Turn). Bounded: N defaults to 10,50; at most 200 calls
in all; sipp's own timeout ends a stuck run.

    python scripts/bench_sip.py                      # N = 10, 50 with the fake engines
    python scripts/bench_sip.py --agent receptionist --calls 10
    python scripts/bench_sip.py --srtp               # TLS+SRTP vs plain, CPU per call-second

`--srtp` (scripts/_bench_srtp.py) runs instead: one daemon with a TLS listener and
`srtp: optional` takes alternating rounds of concurrent baresip calls, plain UDP/RTP
and TLS + SDES-SRTP (mediaenc=srtp-mand), and prints the CPU per call-second of each
and what SRTP adds per RTP packet; three such runs (`--srtp-repeat`), and PASS or FAIL
on their median against the target (SRTP adds under 15 %).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.interop.sipd import (  # noqa: E402  (needs the repository root on sys.path)
    SPEECH,
    Baresip,
    free_udp_tcp_port,
    make_ulaw,
    make_wav,
    onset_s,
    read_wav,
    run_checked,
    run_sipp_load,
    silence_from_s,
    stop_process,
    write_load_scenario,
)

MAX_TOTAL_CALLS = 200
FRAME_S = 0.02
BARESIP_RTP = (45000, 45200)

FAKE_AGENT = """
name: bench
greeting: Hello, this is the benchmark line.
stt: {engine: fake, options: {transcripts: ["what time is it"]}}
llm: {engine: fake}
voice: {engine: espeak}
turn: {detector: silence, max_silence_ms: 500}
sip: {numbers: ["500"]}
"""

TALKER_GREETING = ("Thanks for calling the voxd test line where every single call is answered by a robot that "
                   "keeps on talking for quite a long time so that you can interrupt it whenever you like.")

FAKE_TALKER = f"""
name: talker
greeting: {TALKER_GREETING}
stt: {{engine: fake, options: {{transcripts: ["sales please"]}}}}
llm: {{engine: fake}}
voice: {{engine: espeak}}
turn: {{detector: silence, max_silence_ms: 500}}
sip: {{numbers: ["200"]}}
"""


def receptionist_agents() -> dict[str, str]:
    """agents/receptionist.yaml as is (number 500 added), and a copy with the long greeting on 200."""
    text = (ROOT / "agents" / "receptionist.yaml").read_text()
    bench = re.sub(r'numbers: \[.*\]', 'numbers: ["500", "1000"]', text)
    talker = re.sub(r"^greeting: .*$", f"greeting: {TALKER_GREETING}", text, flags=re.M)
    talker = re.sub(r"^name: .*$", "name: talker", talker, flags=re.M)
    talker = re.sub(r'numbers: \[.*\]', 'numbers: ["200"]', talker)
    return {"bench": bench, "talker": talker}


# ---------------------------------------------------------------- daemon process
@dataclass
class DaemonProc:
    workdir: Path
    rtp: tuple[int, int]
    agents: dict[str, str]
    proc: asyncio.subprocess.Process | None = None
    sip_port: int = 0
    sip_extra: dict[str, Any] = field(default_factory=dict)  # more of the sip: block (tls, srtp)

    @property
    def log_path(self) -> Path:
        return self.workdir / "voxd.log"

    async def start(self, ready_within_s: float = 90) -> None:
        adir = self.workdir / "agents"
        adir.mkdir(parents=True, exist_ok=True)
        for name, text in self.agents.items():
            (adir / f"{name}.yaml").write_text(text)
        self.sip_port = free_udp_tcp_port()
        cfg = {
            "state_dir": str(self.workdir / "state"), "agents_dir": str(adir),
            "http": {"port": 0}, "engines": {"preload": True}, "drain_timeout_s": 1,
            # sipp and baresip both call from 127.0.0.1: room for both above the per-source cap of 50
            "sip": {"port": self.sip_port, "rtp_port_min": self.rtp[0], "rtp_port_max": self.rtp[1],
                    "max_calls_per_source": 100, **self.sip_extra},
        }
        (self.workdir / "voxd.json").write_text(json.dumps(cfg))  # JSON is YAML
        log = _open_log(self.log_path)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "voxd.cli", "run", "-c", str(self.workdir / "voxd.json"),
                cwd=ROOT, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT)
        finally:
            log.close()
        deadline = time.monotonic() + ready_within_s
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            if re.search(r'"msg": "voxd \S+ ready', text):
                return
            if self.proc.returncode is not None:
                break
            await asyncio.sleep(0.2)
        raise RuntimeError(f"voxd did not become ready: {self.log_path.read_text(errors='replace')[-2000:]}")

    def tls_port(self) -> int:
        m = re.search(r"SIP over TLS listening on [0-9.]+:(\d+)", self.log_path.read_text(errors="replace"))
        return int(m.group(1)) if m else 0

    def http_port(self) -> int:
        m = re.search(r'ready: .*http=127\.0\.0\.1:(\d+)', self.log_path.read_text(errors="replace"))
        return int(m.group(1)) if m else 0

    async def loop_lag(self) -> dict[float, float]:
        """voxd_event_loop_lag_seconds from /metrics: {bucket upper bound: cumulative count}."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.http_port())
        writer.write(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        body = (await reader.read()).decode(errors="replace")
        writer.close()
        buckets = {}
        for m in re.finditer(r'^voxd_event_loop_lag_seconds_bucket\{le="([^"]+)"\} ([0-9.e+]+)$', body, re.M):
            buckets[float(m.group(1))] = float(m.group(2))
        return buckets

    def cpu_s(self) -> float:
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_kb(self) -> int:
        assert self.proc is not None
        m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{self.proc.pid}/status").read_text())
        return int(m.group(1)) if m else 0

    async def stop(self) -> None:
        if self.proc is not None:
            await stop_process(self.proc, grace_s=20)

    def records(self) -> list[dict[str, Any]]:
        db = sqlite3.connect(self.workdir / "state" / "voxd.db")
        db.row_factory = sqlite3.Row
        try:
            calls = [dict(r) for r in db.execute("SELECT * FROM calls ORDER BY started_at")]
            for c in calls:
                c["metadata"] = json.loads(c["metadata"] or "{}")
                c["turns"] = [dict(t) for t in db.execute("SELECT * FROM turns WHERE call_id = ? ORDER BY idx", (c["id"],))]
                c["dtmf"] = [dict(t) for t in db.execute("SELECT * FROM dtmf WHERE call_id = ? ORDER BY seq", (c["id"],))]
            return calls
        finally:
            db.close()


def _open_log(path: Path) -> Any:
    return open(path, "wb")  # the caller closes it once the child process holds it


# ---------------------------------------------------------------- capture
async def start_capture(path: Path, rtp: tuple[int, int]) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        "tshark", "-i", "lo", "-B", "64", "-f", f"udp portrange {rtp[0]}-{rtp[1]}", "-w", str(path), "-q",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    async with asyncio.timeout(20):  # dumpcap says so once it is capturing
        while b"Capturing on" not in await proc.stderr.readline():
            if proc.returncode is not None:
                raise RuntimeError("tshark exited")
    return proc


@dataclass
class Packet:
    t: float
    src: int
    dst: int
    seq: int
    pt: int


async def read_capture(path: Path, rtp: tuple[int, int]) -> list[Packet]:
    out = await run_checked(["tshark", "-r", str(path), "-d", f"udp.port=={rtp[0]}-{rtp[1]},rtp", "-Y", "rtp",
                             "-T", "fields", "-e", "frame.time_epoch", "-e", "udp.srcport", "-e", "udp.dstport",
                             "-e", "rtp.seq", "-e", "rtp.p_type"], limit_s=120)
    packets = []
    for line in out.splitlines():
        f = line.split("\t")
        if len(f) == 5 and all(f):
            packets.append(Packet(float(f[0]), int(f[1]), int(f[2]), int(f[3]), int(f[4].split(",")[0])))
    return packets


def streams(packets: list[Packet]) -> dict[tuple[int, int], list[Packet]]:
    by: dict[tuple[int, int], list[Packet]] = {}
    for p in packets:
        by.setdefault((p.src, p.dst), []).append(p)
    for v in by.values():
        v.sort(key=lambda p: p.t)
    return by


def seq_loss(pkts: list[Packet]) -> tuple[int, int]:
    """(expected, lost) from 16-bit sequence numbers with wrap-around."""
    if not pkts:
        return 0, 0
    ext = [pkts[0].seq]
    for p in pkts[1:]:
        d = (p.seq - ext[-1]) & 0xFFFF
        ext.append(ext[-1] + (d if d < 0x8000 else d - 0x10000))
    expected = max(ext) - min(ext) + 1
    return expected, max(0, expected - len(set(ext)))


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


# ---------------------------------------------------------------- barge-in
async def barge_calls(workdir: Path, sip_port: int, count: int, start_after_s: float,
                      lead_s: float) -> list[Baresip]:
    await asyncio.sleep(start_after_s)
    voices = ["festival-kal", "flite-slt", "flite-awb", "flite-rms", "flite-kal"]
    done: list[Baresip] = []
    for i in range(count):
        wav = await make_wav(workdir / f"barge{i}.wav", ("silence", lead_s + 0.13 * i),
                             (str(SPEECH / voices[i % len(voices)] / "speak_to_sales.8k.wav"), 2.5))
        b = Baresip(workdir / f"baresip{i}", wav, rtp_range=BARESIP_RTP, quit_after_s=40)
        await b.start()
        try:
            async with asyncio.timeout(30):
                await b.command("dial", f"sip:200@127.0.0.1:{sip_port}")
                await b.wait_event("CALL_ESTABLISHED", 15)
                await b.wait_event("CALL_CLOSED", 25)
        except TimeoutError:
            print(f"  baresip call {i} did not finish", file=sys.stderr)
        finally:
            await b.stop()
        done.append(b)
    return done


@dataclass
class BargeResult:
    recording_ms: float | None
    voxd_ms: float | None
    note: str = ""


def measure_barge(b: Baresip, tx: list[Packet], rx: list[Packet]) -> BargeResult:
    """tx: what baresip sent (its audio packets, in order), rx: what voxd sent it."""
    try:
        enc, dec = b.recordings()
    except AssertionError as e:
        return BargeResult(None, None, str(e)[:80])
    sent, rate = read_wav(enc)
    heard, _ = read_wav(dec)
    onset = onset_s(sent, rate, after_s=1.0)
    if onset is None:
        return BargeResult(None, None, "no caller onset")
    before = heard[max(0, int((onset - 0.3) * rate)): int(onset * rate)]
    if before.size == 0 or float(np.abs(before).max()) < 3000:
        return BargeResult(None, None, "bot was not talking at the caller's onset")
    stop = silence_from_s(heard, rate, after_s=onset, hold_ms=400)
    if stop is None:
        return BargeResult(None, None, "bot never went quiet")
    # wall clock through the capture: frame k of enc = k-th packet baresip sent,
    # frame j of dec = j-th packet voxd sent to baresip
    k, j = int(onset / FRAME_S), int(stop / FRAME_S)
    if k < len(tx) and j < len(rx):
        return BargeResult((rx[j].t - tx[k].t) * 1000, None)
    return BargeResult((stop - onset) * 1000, None, "no capture: start-aligned recordings")


# ---------------------------------------------------------------- one run
@dataclass
class RunResult:
    n: int
    sipp_ok: int = 0
    sipp_failed: int = 0
    call_s: float = 0.0
    cpu_s: float = 0.0
    rss_idle_mb: float = 0.0
    rss_peak_mb: float = 0.0
    jitter: list[float] = field(default_factory=list)
    out_expected: int = 0
    out_lost: int = 0
    in_expected: int = 0
    in_lost: int = 0
    streams_out: int = 0
    barge: list[BargeResult] = field(default_factory=list)
    lag: dict[float, float] = field(default_factory=dict)  # event-loop lag histogram during the calls
    records: int = 0
    end_reasons: dict[str, int] = field(default_factory=dict)


async def run_one(n: int, args: argparse.Namespace, base: Path) -> RunResult:
    work = base / f"n{n}"
    work.mkdir(parents=True)
    rtp = tuple(int(x) for x in args.rtp_range.split("-"))
    agents = receptionist_agents() if args.agent == "receptionist" else {"bench": FAKE_AGENT, "talker": FAKE_TALKER}
    d = DaemonProc(work, (rtp[0], rtp[1]), agents)
    res = RunResult(n)
    cap: asyncio.subprocess.Process | None = None
    await d.start()
    try:
        await asyncio.sleep(1.0)
        res.rss_idle_mb = d.rss_kb() / 1024
        ulaw = await make_ulaw(work / "caller.ulaw", SPEECH / "flite-awb" / "what_time.8k.wav")
        scen = write_load_scenario(work / "load.xml", "500", ulaw, digits="12", talk_ms=args.talk_ms,
                                   tail_ms=4000)
        cap = await start_capture(work / "cap.pcapng", (rtp[0], rtp[1]))
        lag0 = await d.loop_lag()
        cpu0 = d.cpu_s()
        peak = 0

        async def sample_rss() -> None:
            nonlocal peak
            while True:
                peak = max(peak, d.rss_kb())
                await asyncio.sleep(0.25)

        sampler = asyncio.create_task(sample_rss())
        sipp = asyncio.create_task(run_sipp_load(f"127.0.0.1:{d.sip_port}", scen, work, calls=n, concurrent=n,
                                                 rate=min(n, 25), limit_s=args.talk_ms / 1000 + 60))
        barge = asyncio.create_task(barge_calls(work, d.sip_port, args.barge_calls, start_after_s=n / 25 + 1,
                                                 lead_s=args.barge_after_s))
        sipp_res, barge_list = await asyncio.gather(sipp, barge)
        await asyncio.sleep(1.0)
        res.cpu_s = d.cpu_s() - cpu0
        res.lag = {k: v - lag0.get(k, 0.0) for k, v in (await d.loop_lag()).items()}
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        res.rss_peak_mb = peak / 1024
        res.sipp_ok, res.sipp_failed = sipp_res.successful, sipp_res.failed
        if sipp_res.returncode != 0:
            print(f"  sipp exit {sipp_res.returncode}: {sipp_res.errors[-600:]}", file=sys.stderr)
    finally:
        if cap is not None:
            await asyncio.sleep(0.5)
            await stop_process(cap)
        await d.stop()

    recs = d.records()
    res.records = len(recs)
    for r in recs:
        res.end_reasons[r["end_reason"]] = res.end_reasons.get(r["end_reason"], 0) + 1
        if r["answered_at"] and r["ended_at"]:
            res.call_s += r["ended_at"] - r["answered_at"]

    by_stream = streams(await read_capture(work / "cap.pcapng", (rtp[0], rtp[1])))
    def is_baresip(port: int) -> bool:
        return BARESIP_RTP[0] <= port <= BARESIP_RTP[1]

    for (src, dst), pkts in by_stream.items():
        audio = [p for p in pkts if p.pt < 96]
        if is_baresip(src) or is_baresip(dst):
            continue
        if rtp[0] <= src <= rtp[1]:  # voxd -> sipp
            res.streams_out += 1
            times = np.array([p.t for p in audio])
            res.jitter += list(np.abs(np.diff(times) - FRAME_S) * 1000)
            e, lost = seq_loss(pkts)
            res.out_expected += e
            res.out_lost += lost
        elif rtp[0] <= dst <= rtp[1]:  # sipp -> voxd (rtp_stream)
            e, lost = seq_loss(audio)
            res.in_expected += e
            res.in_lost += lost

    talker = [r for r in recs if r["agent"] == "talker"]
    # the baresip calls ran one after another: their streams in order of first packet
    b_tx = sorted((s for (src, _), s in by_stream.items() if is_baresip(src)), key=lambda s: s[0].t)
    for i, b in enumerate(barge_list):
        tx = [p for p in b_tx[i] if p.pt < 96] if i < len(b_tx) else []
        rx = [p for p in by_stream.get((tx[0].dst, tx[0].src), []) if p.pt < 96] if tx else []
        br = measure_barge(b, tx, rx)
        if i < len(talker) and talker[i]["turns"]:
            first = talker[i]["turns"][0]
            br.voxd_ms = first["barge_in_ms"] if first["interrupted"] else None
        res.barge.append(br)
    if not args.keep:
        with contextlib.suppress(OSError):
            (work / "cap.pcapng").unlink()
    return res


def report(r: RunResult, args: argparse.Namespace) -> None:
    per_call_s = r.cpu_s * 1000 / r.call_s if r.call_s else float("nan")
    rec_ms = [b.recording_ms for b in r.barge if b.recording_ms is not None]
    voxd_ms = [b.voxd_ms for b in r.barge if b.voxd_ms is not None]
    print(f"N={r.n} ({args.agent} agent, + {args.barge_calls} baresip barge-in calls)")
    print(f"  sipp: {r.sipp_ok} ok, {r.sipp_failed} failed; records {r.records} {r.end_reasons}")
    print(f"  CPU per call-second:      {per_call_s:.1f} ms  ({r.cpu_s:.1f} s CPU over {r.call_s:.0f} call-seconds)")
    print(f"  RSS per call:             {(r.rss_peak_mb - r.rss_idle_mb) * 1024 / r.n:.0f} kB "
          f"(idle {r.rss_idle_mb:.0f} MB, peak {r.rss_peak_mb:.0f} MB)")
    print(f"  outbound RTP jitter:      p50 {pct(r.jitter, 50):.2f} ms, p99 {pct(r.jitter, 99):.2f} ms, "
          f"max {max(r.jitter) if r.jitter else float('nan'):.1f} ms over {len(r.jitter)} gaps in {r.streams_out} streams")
    print(f"  packet loss:              out {r.out_lost}/{r.out_expected} "
          f"({100 * r.out_lost / max(1, r.out_expected):.2f} %), in {r.in_lost}/{r.in_expected} "
          f"({100 * r.in_lost / max(1, r.in_expected):.2f} %)")
    if r.lag:
        total = r.lag.get(float("inf"), 0.0)
        over = {ms: total - r.lag.get(ms / 1000, total) for ms in (10, 20, 50, 100)}
        print(f"  event-loop lag (50 ms probe): {int(total)} probes; late by >10 ms {int(over[10])}, "
              f">20 ms {int(over[20])}, >50 ms {int(over[50])}, >100 ms {int(over[100])}")
    notes = {b.note for b in r.barge if b.note}
    print(f"  barge-in (recordings):    {', '.join(f'{x:.0f}' for x in rec_ms)} ms"
          + (f"  p50 {statistics.median(rec_ms):.0f} ms, p90 {pct(rec_ms, 90):.0f} ms" if rec_ms else "")
          + (f"  [{'; '.join(notes)}]" if notes else ""))
    print(f"  barge-in (voxd record):   {', '.join(f'{x:.0f}' for x in voxd_ms)} ms")


async def srtp_main(args: argparse.Namespace) -> int:
    from _bench_srtp import (  # scripts/ is sys.path[0]
        extra_us_per_packet,
        report_repeats,
        report_srtp,
        srtp_rounds,
        tight_loop,
        tls_config,
    )

    if args.srtp_calls * args.srtp_rounds * 2 * args.srtp_repeat > MAX_TOTAL_CALLS:
        print(f"at most {MAX_TOTAL_CALLS} calls in all", file=sys.stderr)
        return 2
    extras: list[float] = []
    per_packet: list[float] = []
    for rep in range(args.srtp_repeat):
        base = Path(tempfile.mkdtemp(prefix="bench_sip_srtp."))
        print(f"bench_sip --srtp ({args.agent} agent) run {rep + 1}/{args.srtp_repeat}: {args.srtp_calls} concurrent "
              f"calls x {args.srtp_rounds} rounds of each kind, {'SRTP' if rep % 2 else 'plain'} first; "
              f"load average before {os.getloadavg()[0]:.2f}; work in {base}")
        sip = tls_config(base)
        ca = sip.pop("_ca")
        rtp = tuple(int(x) for x in args.rtp_range.split("-"))
        agents = receptionist_agents() if args.agent == "receptionist" else {"bench": FAKE_AGENT}
        d = DaemonProc(base / "daemon", (rtp[0], rtp[1]), agents, sip_extra=sip)
        await d.start()
        try:
            res = await srtp_rounds(d, base, concurrent=args.srtp_calls, rounds=args.srtp_rounds, ca=ca,
                                    sip_port=d.sip_port, tls_port=d.tls_port(), talk_s=args.talk_ms / 1000,
                                    srtp_first=rep % 2 == 1)
        finally:
            await d.stop()
        extras.append(report_srtp(res, args.srtp_calls))
        per_packet.append(extra_us_per_packet(res))
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    report_repeats(extras, per_packet, tight_loop())
    return 0


async def amain(args: argparse.Namespace) -> int:
    for tool in ("sipp", "tshark", "baresip", "sox"):
        if not shutil.which(tool):
            print(f"{tool} is not installed (scripts/setup.sh)", file=sys.stderr)
            return 2
    if args.srtp:
        return await srtp_main(args)
    ns = [int(x) for x in args.calls.split(",")]
    total = sum(ns) + args.barge_calls * len(ns)
    if total > MAX_TOTAL_CALLS:
        print(f"{total} calls in all: the limit is {MAX_TOTAL_CALLS}", file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="bench_sip."))
    print(f"bench_sip: N={ns}, agent={args.agent}, caller talk {args.talk_ms} ms; work in {base}")
    print(f"load average before: {os.getloadavg()[0]:.2f} (2-core machine: other work skews the numbers)")
    results = []
    all_barge: list[float] = []
    for n in ns:
        t0 = time.monotonic()
        r = await run_one(n, args, base)
        report(r, args)
        print(f"  (run took {time.monotonic() - t0:.0f} s)")
        results.append(r)
        all_barge += [b.recording_ms for b in r.barge if b.recording_ms is not None]
    if all_barge:
        print(f"barge-in over all runs ({len(all_barge)} calls): p50 {statistics.median(all_barge):.0f} ms, "
              f"p90 {pct(all_barge, 90):.0f} ms (target <= 150 ms)")
    last = results[-1]
    print(f"outbound jitter p99 at N={last.n}: {pct(last.jitter, 99):.2f} ms (target <= 5 ms at 50 calls)")
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", default="10,50", help="concurrent calls per run, comma separated (default 10,50)")
    p.add_argument("--agent", choices=["fake", "receptionist"], default="fake")
    p.add_argument("--barge-calls", type=int, default=3, help="baresip barge-in calls per run (sequential)")
    p.add_argument("--barge-after-s", type=float, default=None,
                   help="baresip caller talks this long after answer (default 2; 4 with the receptionist's piper)")
    p.add_argument("--talk-ms", type=int, default=12000, help="sipp: ms from answer to the digits")
    p.add_argument("--rtp-range", default="34000-34998", help="daemon RTP ports (captured by tshark)")
    p.add_argument("--keep", action="store_true", help="keep the work folder (captures, recordings, logs)")
    p.add_argument("--srtp", action="store_true", help="the TLS+SRTP vs plain run (baresip callers) instead")
    p.add_argument("--srtp-calls", type=int, default=5, help="--srtp: concurrent baresip calls per round")
    p.add_argument("--srtp-rounds", type=int, default=2, help="--srtp: rounds of each kind (alternating)")
    p.add_argument("--srtp-repeat", type=int, default=3,
                   help="--srtp: whole runs (a fresh daemon each); the verdict is on their median")
    args = p.parse_args()
    if args.barge_after_s is None:  # piper takes a moment to start a long sentence
        args.barge_after_s = 4.0 if args.agent == "receptionist" else 2.0
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
