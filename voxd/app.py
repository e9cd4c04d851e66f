"""The composition root: builds every part of the daemon, starts and stops it in order.

Start: database -> agents (loaded, then watched) -> tools -> calls -> engines warmed
-> listeners (HTTP: /healthz, control API, websocket media; SIP). Stop: refuse new
calls -> end active ones -> listeners -> database.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from voxd import __version__
from voxd.agents.registry import AgentRegistry
from voxd.call.manager import CallManager
from voxd.config import VoxdConfig
from voxd.media import inference
from voxd.net.clock import MediaClock
from voxd.net.ws_media import setup_ws_media
from voxd.tools.builtins import default_registry

log = logging.getLogger("voxd")


class Daemon:
    def __init__(self, cfg: VoxdConfig, base_dir: Path) -> None:
        self.cfg = cfg
        self.base_dir = base_dir
        agents_dir = Path(cfg.agents_dir)
        if not agents_dir.is_absolute():
            agents_dir = base_dir / agents_dir
        self.agents = AgentRegistry(agents_dir, default=cfg.default_agent)
        self.tools = default_registry()
        self.clock = MediaClock()
        self.db: Any = None
        self.calls: CallManager | None = None
        self._runner: web.AppRunner | None = None
        self.http_port: int | None = None
        self.started_at = time.time()
        self.ready = False
        self._stop = asyncio.Event()
        self.extra_stops: list[Any] = []

    async def start(self) -> None:
        from voxd.store.calls import CallRepository
        from voxd.store.db import Database

        inference.configure(self.cfg.engines.inference_threads)
        state = self.cfg.resolved_state_dir()
        state.mkdir(parents=True, exist_ok=True)
        self.db = await Database.open(self.cfg.resolved_database())
        self.calls = CallManager(self.tools, self.cfg.engines, CallRepository(self.db), max_calls=self.cfg.sip.max_calls)
        report = self.agents.reload()
        if not self.agents.names():
            log.warning("no valid agents in %s", self.agents.directory)
        for err in report.errors:
            log.error("%s", err)
        self.agents.start_watching(self.cfg.reload_interval_s)
        if self.cfg.engines.preload:
            await self.calls.warm_up(self.agents.all())
        if self.cfg.http.enabled:
            await self._start_http()
        self.ready = True
        log.info("voxd %s ready: agents=%s http=%s", __version__, self.agents.names(),
                 f"{self.cfg.http.host}:{self.http_port}" if self.http_port else "off")

    def build_http_app(self) -> web.Application:
        assert self.calls is not None
        app = web.Application(client_max_size=1 << 20)
        app.router.add_get("/healthz", self._healthz)
        setup_ws_media(app, self.agents, self.calls, self.clock)
        return app

    async def _start_http(self) -> None:
        app = self.build_http_app()
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.cfg.http.host, self.cfg.http.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.http_port = sockets[0].getsockname()[1] if sockets else self.cfg.http.port

    async def _healthz(self, request: web.Request) -> web.Response:
        assert self.calls is not None
        return web.json_response({
            "status": "ok",
            "version": __version__,
            "uptime_s": round(time.time() - self.started_at, 1),
            "active_calls": len(self.calls.active),
            "agents": self.agents.names(),
        })

    def reload(self) -> None:
        report = self.agents.reload(force=True)
        for err in report.errors:
            log.error("reload: %s", err)

    def request_stop(self) -> None:
        self._stop.set()

    async def run_until_stopped(self) -> None:
        loop = asyncio.get_running_loop()
        for sig, fn in ((signal.SIGTERM, self.request_stop), (signal.SIGINT, self.request_stop), (signal.SIGHUP, self.reload)):
            try:
                loop.add_signal_handler(sig, fn)
            except (NotImplementedError, RuntimeError):
                pass
        await self._stop.wait()

    async def stop(self) -> None:
        self.ready = False
        if self.calls is not None:
            self.calls.accepting = False
            await self.calls.close_all("shutdown")
        for fn in self.extra_stops:
            await fn()
        await self.agents.stop_watching()
        await self.clock.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.db is not None:
            await self.db.close()
        log.info("voxd stopped")


async def serve(cfg: VoxdConfig, base_dir: Path) -> int:
    daemon = Daemon(cfg, base_dir)
    try:
        await daemon.start()
        await daemon.run_until_stopped()
    finally:
        await daemon.stop()
    return 0
