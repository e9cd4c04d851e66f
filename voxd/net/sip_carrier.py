"""Wiring of the carrier features into the daemon (called by voxd/app.py once the SIP
endpoint exists): registrations as a service with a /readyz check and metrics, the SIP
over TLS listener, trunk OPTIONS keepalives with metrics, and what a SIGHUP changes in them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, Gauge

from voxd.config import VoxdConfig
from voxd.core.secrets import Outbound
from voxd.net.sip_options import TrunkProbes
from voxd.net.sip_register import Registrations
from voxd.net.sip_tls import SipTlsListener
from voxd.net.sip_trace import SipTracer

if TYPE_CHECKING:
    from voxd.net.sip import SipEndpoint

Service = tuple[str, Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]


class MetricsHost(Protocol):
    """The daemon's metrics (voxd.ops.metrics.Metrics): its registry and scrape hooks."""

    registry: CollectorRegistry
    before_scrape: list[Callable[[], Awaitable[None]]]


class CarrierHost(Protocol):
    """What ``setup_carrier`` needs of the daemon (``voxd.app.Daemon``)."""

    cfg: VoxdConfig
    outbound: Outbound
    @property
    def metrics(self) -> MetricsHost: ...
    services: list[Service]
    ready_checks: dict[str, Callable[[], bool]]
    reload_hooks: list[Callable[[VoxdConfig, VoxdConfig], Awaitable[None]]]
    registrations: Registrations | None
    sip_tls: SipTlsListener | None
    trunk_probes: TrunkProbes | None
    sip_tracer: SipTracer | None

    @property
    def sip(self) -> SipEndpoint | None: ...


def setup_tracer(daemon: CarrierHost) -> SipTracer:
    """Per-call SIP traces: started before the SIP endpoint, stopped after it (the calls
    it closes at shutdown are written too)."""
    def active(call_id: str) -> bool:
        return daemon.sip is not None and call_id in daemon.sip.sip_calls

    tracer = SipTracer(daemon.cfg.sip.trace, daemon.cfg.resolved_state_dir() / "sip-traces", active)
    daemon.sip_tracer = tracer
    at = next((i for i, (name, _, _) in enumerate(daemon.services) if name == "sip"), len(daemon.services))
    daemon.services.insert(at, ("sip-trace", tracer.start, tracer.stop))
    if daemon.sip is not None:
        daemon.sip.tracer = tracer
    return tracer


def setup_carrier(daemon: CarrierHost) -> None:
    cfg = daemon.cfg.sip
    tracer = setup_tracer(daemon)
    tls = SipTlsListener(cfg.tls, cfg.host, lambda: daemon.sip)
    daemon.sip_tls = tls
    daemon.services.append(("sip-tls", tls.start, tls.stop))
    regs = Registrations(list(cfg.registrations), lambda: daemon.sip, daemon.outbound.secrets)
    daemon.registrations = regs
    daemon.services.append(("sip-registrations", regs.start, regs.stop))  # stopped before SIP
    daemon.ready_checks["sip_registrations"] = regs.ready
    registry = daemon.metrics.registry
    up = Gauge("voxd_sip_registration_up", "1 while the registration's binding holds",
               ["registration"], registry=registry)
    expires = Gauge("voxd_sip_registration_expires_seconds", "Seconds until the binding lapses",
                    ["registration"], registry=registry)
    failures = Gauge("voxd_sip_registration_failures", "Consecutive failed REGISTER attempts",
                     ["registration"], registry=registry)
    last = Gauge("voxd_sip_registration_last_status", "Status of the last final response to a REGISTER",
                 ["registration"], registry=registry)

    async def refresh() -> None:
        for s in regs.status():
            name = s["name"]
            up.labels(name).set(1 if s["registered"] else 0)
            expires.labels(name).set(s["expires_in_s"] or 0)
            failures.labels(name).set(s["failures"])
            last.labels(name).set(s["last_status"] or 0)

    daemon.metrics.before_scrape.append(refresh)
    probes = TrunkProbes(list(cfg.trunks), lambda: daemon.sip)
    daemon.trunk_probes = probes
    daemon.services.append(("sip-trunk-keepalives", probes.start, probes.stop))
    trunk_up = Gauge("voxd_sip_trunk_up", "1 while the trunk answers its OPTIONS keepalives (0: down, -1: unknown)",
                     ["trunk"], registry=registry)
    trunk_rtt = Gauge("voxd_sip_trunk_options_rtt_seconds", "Round trip of the trunk's last answered OPTIONS",
                      ["trunk"], registry=registry)
    trunk_blocked = Gauge("voxd_sip_trunk_blocked_seconds", "Seconds before a new call may go (503 Retry-After)",
                          ["trunk"], registry=registry)

    async def refresh_trunks() -> None:
        for s in probes.status():
            name = s["name"]
            trunk_up.labels(name).set({"up": 1, "down": 0}.get(s["state"], -1))
            trunk_rtt.labels(name).set((s["rtt_ms"] or 0) / 1000)
            trunk_blocked.labels(name).set(s["blocked_for_s"])

    daemon.metrics.before_scrape.append(refresh_trunks)

    async def reload(old: VoxdConfig, new: VoxdConfig) -> None:
        if new.sip.tls != old.sip.tls or new.sip.tls.enabled:  # same paths, renewed files: re-read
            await tls.reload(new.sip.tls)
        if daemon.sip is not None:
            daemon.sip.connector.reset()  # outbound TLS: CA bundle and client certificate re-read
        regs.book = daemon.outbound.secrets  # passwords are read again: a rotated one applies
        await regs.configure(list(new.sip.registrations))
        if new.sip.trunks != old.sip.trunks:
            await probes.configure(list(new.sip.trunks))
        tracer.cfg = new.sip.trace
        if daemon.sip is not None:  # a re-bound endpoint is a new object
            daemon.sip.tracer = tracer
            probes.attach(daemon.sip)

    daemon.reload_hooks.append(reload)
