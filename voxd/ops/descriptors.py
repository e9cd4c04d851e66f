"""File descriptors: how many the configured caps can use, how many are free.

Every connection, RTP socket and open file costs a descriptor, and a process out of
them fails in the worst places (a caller gets `503 No media ports`, a reload hits
EMFILE, /healthz stops answering). The caps in voxd.yaml bound what a flood can
hold; `budget` adds them up so the limit (systemd's LimitNOFILE, `ulimit -n`) can be
sized from them, and `/readyz` reports the headroom left.
"""

from __future__ import annotations

import logging
import os
import resource
from dataclasses import dataclass

from voxd.config import VoxdConfig

log = logging.getLogger("voxd.ops")

BASE = 256  # models, the database and its WAL, logs, the loop's own, engine threads
PER_SIP_CALL = 2  # RTP and RTCP sockets
PER_WEBRTC_CALL = 6  # ICE gathers a few UDP sockets per call (host, STUN, TURN)
RESERVE = 64  # free descriptors below which the daemon reports itself not ready


@dataclass(frozen=True)
class Headroom:
    open: int
    limit: int
    budget: int

    @property
    def free(self) -> int:
        return self.limit - self.open

    @property
    def ok(self) -> bool:
        return self.free >= RESERVE

    def as_dict(self) -> dict[str, int]:
        return {"open": self.open, "limit": self.limit, "free": self.free, "budget": self.budget}


def budget(cfg: VoxdConfig) -> int:
    """Descriptors the daemon may need with every listener at its configured cap."""
    n = BASE
    if cfg.http.enabled:
        n += cfg.http.max_connections or 4096  # 0 means no cap: assume a busy server
    calls = cfg.sip.max_calls
    if cfg.sip.enabled:
        ports = (cfg.sip.rtp_port_max - cfg.sip.rtp_port_min + 1) // 2
        n += PER_SIP_CALL * min(calls, ports)
        if cfg.sip.tcp:
            n += cfg.sip.tcp_max_connections
    if cfg.http.enabled and cfg.webrtc.enabled:
        n += PER_WEBRTC_CALL * calls
    return n


def open_count() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # not Linux: count what answers fstat below the limit (slow, rare)
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        count = 0
        for fd in range(min(limit, 65536)):
            try:
                os.fstat(fd)
            except OSError:
                continue
            count += 1
        return count


def headroom(cfg: VoxdConfig) -> Headroom:
    return Headroom(open=open_count(), limit=resource.getrlimit(resource.RLIMIT_NOFILE)[0], budget=budget(cfg))


def raise_limit(cfg: VoxdConfig) -> Headroom:
    """At start: lift the soft limit towards the budget (as far as the hard limit allows)
    and say so in the log when the caps can exhaust what is left."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = budget(cfg)
    if soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError) as e:  # e.g. systemd's SystemCallFilter=~@resources
            log.debug("cannot raise RLIMIT_NOFILE: %s", e)
    room = headroom(cfg)
    if room.limit < want:
        log.warning("file descriptor limit %d is below the %d the configured caps may use "
                    "(http.max_connections, sip.tcp_max_connections, max_calls): floods are still "
                    "refused per source, but raise LimitNOFILE / ulimit -n", room.limit, want)
    return room
