"""Kamailio as a carrier on loopback: a generated config (tests/interop/kamailio/*.cfg
with @NAMES@ filled in), a random port, started in the foreground and stopped by PID.
Its log is kept so tests can read the "carrier:" lines the config writes."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

CONFIGS = Path(__file__).parent / "kamailio"
KAMAILIO = shutil.which("kamailio") or "/usr/sbin/kamailio"


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = int(u.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


@dataclass
class Kamailio:
    port: int
    log: Path
    proc: asyncio.subprocess.Process

    def lines(self) -> list[str]:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [line for line in text.splitlines() if "carrier: " in line]

    def grep(self, needle: str) -> list[str]:
        return [line for line in self.lines() if needle in line]


def render(name: str, out: Path, **values: str) -> Path:
    text = (CONFIGS / name).read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    assert "@" not in "".join(x for x in text.splitlines() if not x.lstrip().startswith("#")).replace(
        "\"@", "").replace("@\"", ""), "unfilled placeholder"
    out.write_text(text)
    return out


@contextlib.asynccontextmanager
async def kamailio(tmp: Path, config: str = "carrier.cfg", **values: str) -> AsyncIterator[Kamailio]:
    port = free_port()
    cfg = render(config, tmp / config, PORT=str(port), **values)
    check = await asyncio.create_subprocess_exec(KAMAILIO, "-c", "-f", str(cfg), stdout=asyncio.subprocess.PIPE,
                                                 stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(check.communicate(), 30)
    assert check.returncode == 0, f"kamailio config: {out.decode(errors='replace')[-3000:]}"
    log = tmp / "kamailio.log"
    with log.open("wb") as sink:
        proc = await asyncio.create_subprocess_exec(
            KAMAILIO, "-f", str(cfg), "-DD", "-E", "-m", "32", "-M", "4", "-Y", str(tmp),
            "-P", str(tmp / "kamailio.pid"), stdout=sink, stderr=sink)
    k = Kamailio(port, log, proc)
    try:
        for _ in range(100):  # listening once it answers an OPTIONS ping
            if proc.returncode is not None:
                raise AssertionError(f"kamailio exited: {log.read_text()[-3000:]}")
            if await _answers_options(port):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"kamailio did not start: {log.read_text()[-3000:]}")
        yield k
    finally:
        if proc.returncode is None:
            proc.terminate()  # by PID: the main process takes its children down
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _answers_options(port: int) -> bool:
    msg = (f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKping\r\n"
           "Max-Forwards: 70\r\nFrom: <sip:ping@127.0.0.1>;tag=p\r\nTo: <sip:127.0.0.1>\r\n"
           "Call-ID: ping@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        s.sendto(msg.replace(b"127.0.0.1:9", f"127.0.0.1:{s.getsockname()[1]}".encode()), ("127.0.0.1", port))
        loop = asyncio.get_running_loop()
        try:
            data = await asyncio.wait_for(loop.sock_recv(s, 4096), 0.3)
        except (TimeoutError, OSError):
            return False
        return data.startswith(b"SIP/2.0 200")
