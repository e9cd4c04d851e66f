"""Real SIP calls from linphonec (Linphone's console client) into the daemon.

linphonec needs a terminal, so it runs under `script` (a pty); the test types its
commands: play a caller WAV as the microphone, record what it hears, call, press
digits, hang up. Two quirks a server must survive are exercised: its offer lists
telephone-event at 48000, 16000 and 8000 Hz (the 8000 Hz one must be chosen for
G.711), and it sends a couple of packets with an unknown payload type at call
start (ignored, the call goes on).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.interop.sipd import (
    SPEECH,
    call_records,
    free_port,
    free_udp_tcp_port,
    make_wav,
    read_wav,
    running_daemon,
    stop_process,
    voiced_spans,
)
from voxd.proto import negotiate

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not (shutil.which("linphonec") and shutil.which("script")),
                       reason="linphonec (linphone-cli) or script not installed"),
]

RC_TEMPLATE = Path(__file__).parent / "linphone" / "linphonerc.in"
RTP = (32200, 32300)

AGENT = """
greeting: Hello! Ask me the time.
voice: {engine: espeak}
turn: {detector: silence, max_silence_ms: 700}
tools: [get_current_time]
dialog:
  intents:
    - {name: time, examples: ["what time is it"], keywords: [time], tool: get_current_time, reply: "It's {result.spoken}."}
sip: {numbers: ["300"]}
"""

ANSI = re.compile(rb"\x1b\[[0-9;?]*[a-zA-Z]")


class Linphonec:
    """linphonec under a pty, its own HOME (call history database) and rc file."""

    def __init__(self, workdir: Path, *, use_info: bool, use_rfc2833: bool) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.use_info = use_info
        self.use_rfc2833 = use_rfc2833
        self.proc: asyncio.subprocess.Process | None = None
        self.output = b""
        self._changed = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None

    async def start(self) -> None:
        home = self.workdir / "home"
        (home / ".local" / "share" / "linphone").mkdir(parents=True, exist_ok=True)
        rtp_port = free_port() & ~1
        rc = self.workdir / "linphonerc"
        text = RC_TEMPLATE.read_text()
        for k, v in {"SIP_PORT": free_udp_tcp_port(), "RTP_PORT": rtp_port,
                     "USE_INFO": int(self.use_info), "USE_RFC2833": int(self.use_rfc2833)}.items():
            text = text.replace(f"@{k}@", str(v))
        rc.write_text(text)
        env = dict(os.environ, HOME=str(home), TERM="dumb")
        self.proc = await asyncio.create_subprocess_exec(
            "script", "-q", "-e", "-c", f"linphonec -c {rc}", "/dev/null",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            cwd=self.workdir, env=env, start_new_session=True)
        self._pump = asyncio.create_task(self._read())
        await self.expect(rb"linphonec> ", 15)

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            chunk = await self.proc.stdout.read(4096)
            if not chunk:
                self._changed.set()
                return
            self.output += ANSI.sub(b"", chunk).replace(b"\r", b"")
            self._changed.set()

    def text(self) -> str:
        return self.output.decode(errors="replace")

    async def send(self, line: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def expect(self, pattern: bytes, within_s: float, start: int = 0) -> int:
        """Wait for pattern in the output after offset start; returns the offset after the match."""
        rx = re.compile(pattern)
        try:
            async with asyncio.timeout(within_s):
                while True:
                    m = rx.search(self.output, start)
                    if m:
                        return m.end()
                    if self.proc is not None and self.proc.returncode is not None:
                        raise AssertionError(f"linphonec exited: {self.text()[-2000:]}")
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"linphonec never printed {pattern!r}: {self.text()[-2000:]}") from None

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(Exception):
                await self.send("quit")
                await asyncio.wait_for(self.proc.wait(), 5)
            await stop_process(self.proc)
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump


async def linphone_call(workdir: Path, uri: str, source_wav: Path, digits: str, *, use_info: bool,
                        use_rfc2833: bool, digits_at_s: float, hangup_at_s: float) -> Linphonec:
    lp = Linphonec(workdir, use_info=use_info, use_rfc2833=use_rfc2833)
    await lp.start()
    try:
        async with asyncio.timeout(hangup_at_s + 30):
            await lp.send("soundcard use files")
            await lp.expect(rb"wav files instead of soundcard", 5)
            await lp.send(f"play {source_wav}")
            await lp.send(f"record {workdir / 'heard.wav'}")
            await lp.send(f"call {uri}")
            connected = await lp.expect(rb"Call \d+ with .* connected", 15)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await asyncio.sleep(digits_at_s)
            for d in digits:  # one digit a line: linphonec sends each at once
                await lp.send(d)
                await asyncio.sleep(0.6)
            await asyncio.sleep(max(0.0, t0 + hangup_at_s - loop.time()))
            await lp.send("terminate")
            await lp.expect(rb"Call \d+ with .* ended", 10, start=connected)
    finally:
        await lp.stop()
    return lp


@pytest.fixture
def chosen(monkeypatch: pytest.MonkeyPatch) -> list[negotiate.Negotiated]:
    """Every SDP answer the daemon negotiates (wrapping voxd.proto.negotiate.answer)."""
    seen: list[negotiate.Negotiated] = []
    real = negotiate.answer

    def spy(*args: Any, **kwargs: Any) -> negotiate.Negotiated:
        neg = real(*args, **kwargs)
        seen.append(neg)
        return neg

    monkeypatch.setattr(negotiate, "answer", spy)
    return seen


async def caller_wav(tmp: Path) -> Path:
    return await make_wav(tmp / "caller.wav", ("silence", 3.5),
                          (str(SPEECH / "festival-kal" / "what_time.8k.wav"), 12.0))


def assert_heard_bot(path: Path) -> None:
    heard, rate = read_wav(path)
    assert voiced_spans(heard, rate), "linphone heard only silence"
    assert float(np.abs(heard).max()) > 3000


@pytest.mark.timeout(120)
async def test_sip_info_digits_codec_and_early_packets(tmp_path: Path, chosen: list[negotiate.Negotiated]) -> None:
    """use_info=1, use_rfc2833=0: digits arrive as SIP INFO (application/dtmf-relay)."""
    src = await caller_wav(tmp_path)
    async with running_daemon(tmp_path, {"front": AGENT}, RTP) as d:
        lp = await linphone_call(tmp_path / "lp", f"sip:300@127.0.0.1:{d.sip.port}", src, "19",
                                 use_info=True, use_rfc2833=False, digits_at_s=9.0, hangup_at_s=13.0)
        (rec,) = await call_records(d)

    assert "Media streams established" in lp.text()
    assert [n.codec.name for n in chosen] == ["PCMU"] and chosen[0].telephone_event is None
    assert rec["metadata"]["codec"] == "PCMU"
    assert [(x["digit"], x["source"]) for x in rec["dtmf"]] == [("1", "sip-info"), ("9", "sip-info")]
    assert rec["end_reason"] == "caller_hangup"
    said = [(t["speaker"], t["text"]) for t in rec["turns"]]
    assert said[0] == ("bot", "Hello! Ask me the time.")
    assert any(s == "caller" and "time" in t.lower() for s, t in said), said
    rtp = rec["metadata"]["rtp"]
    # linphone's first packets carry a payload type nobody negotiated: counted, ignored
    print(f"linphone rtp counters: {rtp}")
    assert rtp["received"] > 300 and rtp["sent"] > 300 and rtp["ignored"] >= 0, rtp
    assert_heard_bot(tmp_path / "lp" / "heard.wav")


@pytest.mark.timeout(120)
async def test_multirate_telephone_event_offer(tmp_path: Path, chosen: list[negotiate.Negotiated]) -> None:
    """use_rfc2833=1: the offer has telephone-event/48000, /16000 and /8000; the
    answer takes the 8000 Hz one with PCMU and digits arrive as RFC 4733."""
    src = await caller_wav(tmp_path)
    async with running_daemon(tmp_path, {"front": AGENT}, RTP) as d:
        lp = await linphone_call(tmp_path / "lp", f"sip:300@127.0.0.1:{d.sip.port}", src, "42",
                                 use_info=False, use_rfc2833=True, digits_at_s=9.0, hangup_at_s=13.0)
        (rec,) = await call_records(d)

    assert "Media streams established" in lp.text()
    (neg,) = chosen
    assert neg.codec.name == "PCMU"
    assert neg.telephone_event is not None and neg.telephone_event.clock_rate == 8000
    answer = neg.sdp.serialize().decode()
    assert "telephone-event/8000" in answer and "telephone-event/48000" not in answer, answer
    assert [(x["digit"], x["source"]) for x in rec["dtmf"]] == [("4", "rfc4733"), ("2", "rfc4733")]
    assert rec["metadata"]["codec"] == "PCMU" and rec["end_reason"] == "caller_hangup"
    rtp = rec["metadata"]["rtp"]
    print(f"linphone rtp counters: {rtp}")
    assert rtp["received"] > 300 and rtp["sent"] > 300, rtp
    assert_heard_bot(tmp_path / "lp" / "heard.wav")
