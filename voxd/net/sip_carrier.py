"""Wiring of the carrier features into the daemon (called by voxd/app.py once the SIP
endpoint exists): registrations as a service with a /readyz check and metrics, the SIP
over TLS listener, and what a SIGHUP changes in them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, Gauge

from voxd.config import VoxdConfig
from voxd.core.secrets import Outbound
from voxd.net.sip_register import Registrations
from voxd.net.sip_tls import SipTlsListener

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

    @property
    def sip(self) -> SipEndpoint | None: ...


def setup_carrier(daemon: CarrierHost) -> None:
    cfg = daemon.cfg.sip
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

    async def reload(old: VoxdConfig, new: VoxdConfig) -> None:
        if new.sip.tls != old.sip.tls or new.sip.tls.enabled:  # same paths, renewed files: re-read
            await tls.reload(new.sip.tls)
        if daemon.sip is not None:
            daemon.sip.connector.reset()  # outbound TLS: CA bundle and client certificate re-read
        regs.book = daemon.outbound.secrets  # passwords are read again: a rotated one applies
        await regs.configure(list(new.sip.registrations))

    daemon.reload_hooks.append(reload)
