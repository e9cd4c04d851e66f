"""Per-call SIP traces (`sip.trace`): every SIP message the endpoint receives or sends is
kept by Call-ID, credentials masked; when the call ends its trace is written beside the
call record (``<state_dir>/sip-traces/<call id>.jsonl``, one message a line) and deleted
after `retention_hours`. `GET /api/v1/calls/{id}/sip-trace` reads it as text or pcap.

Messages that belong to no call (OPTIONS probes, REGISTER, junk) are dropped after
`UNATTACHED_IDLE_S` and kept `UNATTACHED_MAX` at most per Call-ID; at most
`MAX_BUFFERS` Call-IDs and `MAX_BYTES` of messages are held at once, and
`sip.trace.max_messages` messages per call (the first ones, then a count of the rest):
a flood of distinct Call-IDs costs bounded memory.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from voxd.config.sip import SipTraceConfig
from voxd.proto.sip.trace import TraceEntry, call_id_of, mask_credentials, render_pcap, render_text

log = logging.getLogger("voxd.sip")

Addr = tuple[str, int]
MAX_BUFFERS = 20000
MAX_BYTES = 128 * 1024 * 1024
UNATTACHED_MAX = 8  # messages kept for a Call-ID no call (yet) has
UNATTACHED_IDLE_S = 120.0
LINGER_S = 8.0  # after a call ends: the 200 to its BYE, retransmissions
SWEEP_S = 5.0
PRUNE_S = 3600.0
_SAFE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


@dataclass
class _Buffer:
    entries: list[TraceEntry] = field(default_factory=list)
    size: int = 0
    dropped: int = 0
    record_id: str | None = None
    write_at: float | None = None  # monotonic: when it goes to disk
    last_at: float = field(default_factory=time.monotonic)


class SipTracer:
    def __init__(self, cfg: SipTraceConfig, folder: Path, is_active: Callable[[str], bool] = lambda _: False) -> None:
        self.cfg = cfg
        self.folder = folder
        self.is_active = is_active  # a Call-ID with a call in progress is never dropped
        self._live: dict[str, _Buffer] = {}
        self._task: asyncio.Task[None] | None = None
        self._pruned_at = 0.0
        self._bytes = 0
        self.written = 0

    # ------------------------------------------------------------ capture
    def record(self, direction: str, data: bytes, local: Addr, remote: Addr, transport: str) -> None:
        if not self.cfg.enabled:
            return
        call_id = call_id_of(data)
        if call_id is None:
            return
        buf = self._live.get(call_id)
        if buf is None:
            if len(self._live) >= MAX_BUFFERS:
                self._evict(time.monotonic(), idle_s=0.0)
                if len(self._live) >= MAX_BUFFERS:
                    return
            buf = self._live[call_id] = _Buffer()
        buf.last_at = time.monotonic()
        n = len(buf.entries)
        if (n >= self.cfg.max_messages or self._bytes + len(data) > MAX_BYTES
                or (n >= UNATTACHED_MAX and buf.record_id is None and not self.is_active(call_id))):
            buf.dropped += 1
            return
        buf.entries.append(TraceEntry(time.time(), direction, local, remote, transport, mask_credentials(data)))
        buf.size += len(data)
        self._bytes += len(data)

    def finish(self, sip_call_id: str, record_id: str) -> None:
        """The call ``record_id`` ended: its trace goes to disk after a short linger."""
        buf = self._live.get(sip_call_id)
        if buf is None or not _SAFE_ID.match(record_id):
            return
        buf.record_id = record_id
        buf.write_at = time.monotonic() + LINGER_S

    def carry_over(self, old_call_id: str, new_call_id: str) -> None:
        """A call's INVITE went to another target with a new Call-ID (RFC 3263 failover):
        the earlier attempt's messages stay in the call's trace, before the new ones."""
        old = self._live.pop(old_call_id, None)
        if old is None:
            return
        new = self._live.setdefault(new_call_id, _Buffer())
        new.entries[:0] = old.entries
        new.size += old.size
        new.dropped += old.dropped

    # ------------------------------------------------------------ reading
    def _path(self, record_id: str) -> Path:
        return self.folder / f"{record_id}.jsonl"

    async def entries(self, record_id: str, sip_call_id: str | None) -> list[TraceEntry] | None:
        buf = self._live.get(sip_call_id) if sip_call_id else None
        if buf is not None and buf.record_id in (None, record_id):
            return list(buf.entries)
        if not _SAFE_ID.match(record_id):
            return None
        return await asyncio.to_thread(self._read, self._path(record_id))

    @staticmethod
    def _read(path: Path) -> list[TraceEntry] | None:
        try:
            lines = path.read_text("utf-8").splitlines()
        except FileNotFoundError:
            return None
        out: list[TraceEntry] = []
        for line in lines:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if "dropped" in obj:
                continue
            out.append(TraceEntry.from_json(obj))
        return out

    async def render(self, record_id: str, sip_call_id: str | None, fmt: str) -> bytes | None:
        """The trace as ``text`` or ``pcap``; None when there is none."""
        entries = await self.entries(record_id, sip_call_id)
        if not entries:
            return None
        return render_pcap(entries) if fmt == "pcap" else render_text(entries).encode()

    # ------------------------------------------------------------ upkeep
    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="sip-trace")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self.sweep(float("inf"))  # whatever ended is written now

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            try:
                await self.sweep(time.monotonic())
            except OSError as e:
                log.warning("SIP trace upkeep failed: %s", e)

    async def sweep(self, now: float) -> None:
        due = [(cid, b) for cid, b in self._live.items() if b.write_at is not None and b.write_at <= now]
        for cid, buf in due:
            self._drop(cid)
            assert buf.record_id is not None
            await asyncio.to_thread(self._write, self._path(buf.record_id), buf)
        self._evict(now if now != float("inf") else time.monotonic(), idle_s=UNATTACHED_IDLE_S)
        wall = time.monotonic()
        if wall - self._pruned_at >= PRUNE_S:
            self._pruned_at = wall
            await asyncio.to_thread(self.prune)

    def _evict(self, now: float, idle_s: float) -> None:
        for cid in [c for c, b in self._live.items()
                    if b.record_id is None and now - b.last_at >= idle_s and not self.is_active(c)]:
            self._drop(cid)

    def _drop(self, call_id: str) -> None:
        buf = self._live.pop(call_id, None)
        if buf is not None:
            self._bytes -= buf.size

    def _write(self, path: Path, buf: _Buffer) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps(e.as_json(), separators=(",", ":")) for e in buf.entries]
        if buf.dropped:
            lines.append(json.dumps({"dropped": buf.dropped}))
        tmp = path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n", "utf-8")
        tmp.replace(path)
        self.written += 1

    def prune(self) -> int:
        """Delete traces older than ``retention_hours``; returns how many."""
        if not self.folder.is_dir():
            return 0
        cutoff = time.time() - self.cfg.retention_hours * 3600
        gone = 0
        for path in self.folder.glob("*.jsonl"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    gone += 1
            except FileNotFoundError:
                pass
        return gone
