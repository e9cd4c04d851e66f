"""Helpers shared by the real-client SIP tests (baresip, linphonec, sipp load) and
scripts/bench_sip.py: an in-process daemon with test agents, call records, a
scripted baresip over ctrl_tcp, and the WAV measurements both need.

Every process started here is ended here, by its own PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voxd.app import Daemon
from voxd.config import VoxdConfig

ROOT = Path(__file__).parents[2]
SPEECH = ROOT / "tests" / "data" / "speech"
HERE = Path(__file__).parent


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_udp_tcp_port() -> int:
    """A port free for both UDP and TCP (the SIP listener binds both)."""
    for _ in range(50):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError("no free UDP+TCP port")


@contextlib.asynccontextmanager
async def running_daemon(tmp: Path, agents: dict[str, str], rtp: tuple[int, int], *,
                         default_agent: str | None = None, config: dict[str, Any] | None = None,
                         **sip: Any) -> AsyncIterator[Daemon]:
    """The daemon in this process, SIP on a free port, the given agent files (``config``:
    more voxd.yaml blocks)."""
    adir = tmp / "agents"
    adir.mkdir(parents=True, exist_ok=True)
    for name, text in agents.items():
        (adir / f"{name}.yaml").write_text(text)
    cfg = VoxdConfig.model_validate({
        "state_dir": str(tmp / "state"), "agents_dir": str(adir), "default_agent": default_agent,
        "http": {"enabled": False}, "engines": {"preload": True},
        "sip": {"port": free_udp_tcp_port(), "rtp_port_min": rtp[0], "rtp_port_max": rtp[1], "ring_ms": 0, **sip},
        **(config or {}),
    })
    d = Daemon(cfg, tmp)
    await d.start()
    try:
        yield d
    finally:
        await d.stop()


async def call_records(d: Daemon, limit: int = 500, settle_s: float = 10.0) -> list[dict[str, Any]]:
    """Every call record (oldest first) once no call is active any more."""
    assert d.calls is not None and d.db is not None
    for _ in range(int(settle_s * 10)):
        if not d.calls.active:
            break
        await asyncio.sleep(0.1)
    await d.calls.flush()
    repo = d.db.calls()
    rows: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page, cursor = await repo.list(limit=min(limit, 500), cursor=cursor)
        rows += page
        if cursor is None or len(rows) >= limit:
            break
    full = [await repo.get(r["id"]) for r in reversed(rows)]
    return [r for r in full if r is not None]


# ---------------------------------------------------------------- audio
def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Mono int16 samples and the rate (the first channel if there are more)."""
    with wave.open(str(path)) as w:
        rate, ch, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        data = w.readframes(w.getnframes())
    if width != 2:
        raise ValueError(f"{path}: {8 * width}-bit WAV, expected 16-bit")
    x = np.frombuffer(data, np.int16)
    return (x.reshape(-1, ch)[:, 0].copy() if ch > 1 else x), rate


def frame_rms(x: np.ndarray, rate: int, frame_ms: int = 10) -> np.ndarray:
    n = rate * frame_ms // 1000
    frames = x[: len(x) // n * n].astype(np.float64).reshape(-1, n)
    return np.sqrt((frames**2).mean(axis=1)) if len(frames) else np.zeros(0)


def voiced_spans(x: np.ndarray, rate: int, threshold: float = 300.0, min_gap_ms: int = 250,
                 frame_ms: int = 10) -> list[tuple[float, float]]:
    """(start_s, end_s) of stretches louder than threshold; gaps shorter than min_gap_ms are bridged."""
    loud = frame_rms(x, rate, frame_ms) > threshold
    spans: list[tuple[float, float]] = []
    start: int | None = None
    last = -1
    for i, v in enumerate(loud):
        if not v:
            continue
        if start is None:
            start = i
        elif (i - last - 1) * frame_ms >= min_gap_ms:
            spans.append((start * frame_ms / 1000, (last + 1) * frame_ms / 1000))
            start = i
        last = i
    if start is not None:
        spans.append((start * frame_ms / 1000, (last + 1) * frame_ms / 1000))
    return spans


def onset_s(x: np.ndarray, rate: int, after_s: float = 0.0, threshold: float = 300.0) -> float | None:
    """The first 10 ms frame at or after after_s louder than threshold."""
    rms = frame_rms(x, rate)
    start = int(after_s * 100)
    idx = np.nonzero(rms[start:] > threshold)[0]
    return None if len(idx) == 0 else (start + int(idx[0])) / 100


def silence_from_s(x: np.ndarray, rate: int, after_s: float, hold_ms: int = 400,
                   threshold: float = 300.0) -> float | None:
    """The first instant at or after after_s from which the signal stays below
    threshold for hold_ms (where bot audio stopped)."""
    rms = frame_rms(x, rate)
    quiet = rms <= threshold
    need = hold_ms // 10
    run = 0
    for i in range(int(after_s * 100), len(quiet)):
        run = run + 1 if quiet[i] else 0
        if run >= need:
            return (i - need + 1) / 100
    return None


async def make_wav(out: Path, *parts: tuple[str, float]) -> Path:
    """An 8 kHz mono s16 WAV from ("silence", seconds) and (speech wav path, trailing pad) parts."""
    pieces: list[str] = []
    tmpdir = out.parent
    for i, (src, pad) in enumerate(parts):
        piece = tmpdir / f".{out.stem}.{i}.wav"
        if src == "silence":
            cmd = ["sox", "-n", "-r", "8000", "-c", "1", "-b", "16", "-e", "signed", str(piece), "trim", "0", str(pad)]
        else:
            cmd = ["sox", src, "-r", "8000", "-c", "1", "-b", "16", "-e", "signed", str(piece), "pad", "0", str(pad)]
        await run_checked(cmd)
        pieces.append(str(piece))
    await run_checked(["sox", *pieces, "-r", "8000", "-c", "1", "-b", "16", "-e", "signed", str(out)])
    for p in pieces:
        os.unlink(p)
    return out


async def run_checked(cmd: list[str], limit_s: float = 30) -> str:
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit_s)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {err.decode(errors='replace')[-800:]}")
    return out.decode(errors="replace")


async def stop_process(proc: asyncio.subprocess.Process, grace_s: float = 3.0) -> None:
    """End a process we started: SIGTERM, then SIGKILL (by its own PID only)."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), grace_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


# ---------------------------------------------------------------- baresip
BARESIP_CONFIG = """\
poll_method		epoll
sip_listen		127.0.0.1:{sip_port}
net_interface		127.0.0.1
audio_player		aubridge,nil
audio_source		aufile,{source}
audio_alert		aubridge,nil
audio_srate		{srate}
audio_channels		1
module_path		/usr/lib/baresip/modules
module			g711.so
module			aufile.so
module			aubridge.so
module			sndfile.so
module_app		account.so
module_app		menu.so
module_app		ctrl_tcp.so
snd_path		{rec}
ctrl_tcp_listen		127.0.0.1:{ctrl_port}
"""


def _open_log(path: Path) -> Any:
    return open(path, "wb")  # the caller closes it once the child process holds it


def baresip_available() -> bool:
    return shutil.which("baresip") is not None and Path("/usr/lib/baresip/modules/sndfile.so").exists()


@dataclass
class Baresip:
    """One headless baresip caller: aufile microphone, sndfile recorder, ctrl_tcp control.

    sip_listen takes port P for UDP/TCP and P+1 for TLS, so ports are picked apart.
    """

    workdir: Path
    source_wav: Path
    rtp_range: tuple[int, int] = (0, 0)
    quit_after_s: int = 60
    account: str = "<sip:caller@127.0.0.1>;regint=0;audio_codecs=PCMU"
    extra_config: str = ""  # more config lines (modules such as srtp.so, sip_cafile ...)
    srate: int = 8000  # audio_srate: the microphone WAV's and the recordings' rate (16000 for G.722)
    proc: asyncio.subprocess.Process | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    _reader: asyncio.StreamReader | None = None
    _writer: asyncio.StreamWriter | None = None
    _pump: asyncio.Task[None] | None = None
    _event_seen: asyncio.Event = field(default_factory=asyncio.Event)
    _responses: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)

    @property
    def rec_dir(self) -> Path:
        return self.workdir / "rec"

    async def start(self) -> None:
        cfg = self.workdir / "cfg"
        cfg.mkdir(parents=True, exist_ok=True)
        self.rec_dir.mkdir(parents=True, exist_ok=True)
        sip_port = free_udp_tcp_port()
        while True:  # P+1 must be free too (TLS)
            ctrl_port = free_port(socket.SOCK_STREAM)
            if abs(ctrl_port - sip_port) > 1:
                break
        text = BARESIP_CONFIG.format(sip_port=sip_port, source=self.source_wav, rec=self.rec_dir, ctrl_port=ctrl_port,
                                     srate=self.srate)
        if self.rtp_range[0]:
            text += f"rtp_ports\t\t{self.rtp_range[0]}-{self.rtp_range[1]}\n"
        (cfg / "config").write_text(text + self.extra_config)
        (cfg / "accounts").write_text(self.account + "\n")
        (cfg / "contacts").write_text("")
        log = _open_log(self.workdir / "baresip.log")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                "baresip", "-f", str(cfg), "-t", str(self.quit_after_s),
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT, cwd=self.workdir)
        finally:
            log.close()
        for _ in range(100):
            try:
                self._reader, self._writer = await asyncio.open_connection("127.0.0.1", ctrl_port)
                break
            except OSError:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"baresip exited: {self.log()[-1500:]}") from None
                await asyncio.sleep(0.1)
        else:
            raise RuntimeError(f"baresip ctrl_tcp did not open: {self.log()[-1500:]}")
        self._pump = asyncio.create_task(self._read_loop())

    def log(self) -> str:
        p = self.workdir / "baresip.log"
        return p.read_bytes().decode(errors="replace").replace("\r", "\n") if p.exists() else ""

    async def _read_loop(self) -> None:
        assert self._reader is not None
        buf = b""
        while True:
            chunk = await self._reader.read(4096)
            if not chunk:
                return
            buf += chunk
            while b":" in buf:
                head, _, rest = buf.partition(b":")
                n = int(head)
                if len(rest) < n + 1:
                    break
                msg = json.loads(rest[:n])
                buf = rest[n + 1:]
                if msg.get("event"):
                    self.events.append(msg)
                    self._event_seen.set()
                else:
                    await self._responses.put(msg)

    async def command(self, command: str, params: str = "", limit_s: float = 5.0) -> dict[str, Any]:
        assert self._writer is not None
        body = json.dumps({"command": command, "params": params, "token": command}).encode()
        self._writer.write(b"%d:%s," % (len(body), body))
        await self._writer.drain()
        return await asyncio.wait_for(self._responses.get(), limit_s)

    async def wait_event(self, type_: str, within_s: float) -> dict[str, Any]:
        async with asyncio.timeout(within_s):
            while True:
                for e in self.events:
                    if e.get("type") == type_:
                        return e
                self._event_seen.clear()
                await self._event_seen.wait()

    async def stop(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        if self.proc is not None:
            await stop_process(self.proc)

    def recordings(self) -> tuple[Path, Path]:
        """(what baresip sent, what it received): sndfile's dump-*-enc.wav and dump-*-dec.wav."""
        enc = sorted(self.rec_dir.glob("dump-*-enc.wav"))
        dec = sorted(self.rec_dir.glob("dump-*-dec.wav"))
        if not enc or not dec:
            raise AssertionError(f"no sndfile recordings in {self.rec_dir}: {self.log()[-1500:]}")
        return enc[-1], dec[-1]


async def baresip_call(workdir: Path, source_wav: Path, uri: str, *, digits: tuple[tuple[float, str], ...] = (),
                       timeout_s: float = 60.0, **options: Any) -> Baresip:
    """Dial uri, press digits (RFC 4733, `sndcode`) at the given seconds after
    answer, and wait until the call closes (the source WAV ends). Returns the
    stopped Baresip (recordings, events, log). ``options``: Baresip's account, extra_config."""
    b = Baresip(workdir, source_wav, quit_after_s=int(timeout_s) + 5, **options)
    await b.start()
    try:
        async with asyncio.timeout(timeout_s):
            await b.command("dial", uri)
            await b.wait_event("CALL_ESTABLISHED", 15)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            for at, digit in digits:
                await asyncio.sleep(max(0.0, t0 + at - loop.time()))
                await b.command("sndcode", digit)
            await b.wait_event("CALL_CLOSED", timeout_s)
    finally:
        await b.stop()
    return b


# ---------------------------------------------------------------- sipp load
LOAD_SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!-- One load-test caller: speech (rtp_stream), an RFC 4733 digit, BYE. -->
<scenario name="voxd load call">
  <send retrans="500"><![CDATA[
INVITE sip:@USER@@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
From: "sipp load" <sip:load@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:@USER@@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: sip:load@[local_ip]:[local_port]
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [rtpstream_audio_port] RTP/AVP 0 96
a=rtpmap:0 PCMU/8000
a=rtpmap:96 telephone-event/8000
a=fmtp:96 0-15
a=ptime:20
  ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true" rtd="true"/>
  <send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
From: "sipp load" <sip:load@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Contact: sip:load@[local_ip]:[local_port]
Max-Forwards: 70
Content-Length: 0

  ]]></send>
  <nop><action><exec rtp_stream="@ULAW@,1,0"/></action></nop>
  <pause milliseconds="@TALK_MS@"/>
  <nop><action><exec play_dtmf="@DIGITS@"/></action></nop>
  <pause milliseconds="@TAIL_MS@"/>
  <send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
From: "sipp load" <sip:load@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 2 BYE
Contact: sip:load@[local_ip]:[local_port]
Max-Forwards: 70
Content-Length: 0

  ]]></send>
  <recv response="200"/>
</scenario>
"""


def write_load_scenario(out: Path, user: str, ulaw: Path, *, digits: str = "5", talk_ms: int = 3000,
                        tail_ms: int = 3000) -> Path:
    text = LOAD_SCENARIO
    for k, v in {"USER": user, "ULAW": str(ulaw), "DIGITS": digits, "TALK_MS": str(talk_ms),
                 "TAIL_MS": str(tail_ms)}.items():
        text = text.replace(f"@{k}@", v)
    out.write_text(text)
    return out


async def make_ulaw(out: Path, speech: Path, lead_s: float = 0.5, tail_s: float = 0.5) -> Path:
    """Headerless mu-law (what sipp's rtp_stream wants: it would play a WAV header as audio)."""
    await run_checked(["sox", str(speech), "-t", "raw", "-e", "u-law", "-b", "8", "-r", "8000", "-c", "1",
                       str(out), "pad", str(lead_s), str(tail_s)])
    return out


@dataclass
class SippResult:
    returncode: int
    successful: int
    failed: int
    stderr: str
    errors: str


async def run_sipp_load(target: str, scenario: Path, workdir: Path, *, calls: int, concurrent: int,
                        rate: float, limit_s: float = 110.0) -> SippResult:
    """sipp -r rate -l concurrent -m calls against target (host:port); its per-call
    outcome from -trace_stat (the last row of the CSV)."""
    proc = await asyncio.create_subprocess_exec(
        "sipp", target, "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(free_port()),
        "-mi", "127.0.0.1", "-mp", str(free_port() & ~1), "-r", str(rate), "-l", str(concurrent), "-m", str(calls),
        "-timeout", f"{int(limit_s)}s", "-timeout_error", "-max_recv_loops", "5000", "-nostdin",
        "-trace_stat", "-fd", "1", "-trace_err", "-error_file", str(workdir / "sipp_errors.log"),
        "-stf", str(workdir / "sipp_stat.csv"),
        cwd=workdir, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), limit_s + 15)
    finally:
        await stop_process(proc)
    successful = failed = -1
    stat = workdir / "sipp_stat.csv"
    if stat.exists():
        rows = [r.split(";") for r in stat.read_text().splitlines() if r.strip()]
        if len(rows) >= 2:
            head, last = rows[0], rows[-1]
            successful = int(last[head.index("SuccessfulCall(C)")])
            failed = int(last[head.index("FailedCall(C)")])
    errors = (workdir / "sipp_errors.log").read_text(errors="replace") if (workdir / "sipp_errors.log").exists() else ""
    assert proc.returncode is not None
    return SippResult(proc.returncode, successful, failed, err.decode(errors="replace"), errors)
