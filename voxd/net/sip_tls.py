"""SIP over TLS (`sip.tls`): a listener whose connections join the SIP endpoint's TCP
connection table (voxd/net/sip_tcp.py: the same caps, idle timeout and framing), so
the user agent treats them as reliable and answers on the connection a request came in
on. Python's ssl: TLS 1.2 or later; the certificate and key are re-read on SIGHUP, into
the same context (new handshakes get the new pair) after a scratch load proved them good."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING

from voxd.config.sip import SipTlsConfig

if TYPE_CHECKING:
    from voxd.net.sip import SipEndpoint
    from voxd.net.sip_tcp import SipTcpConnection

log = logging.getLogger("voxd.sip.tls")


def server_context(cfg: SipTlsConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load(ctx, cfg)
    return ctx


def _load(ctx: ssl.SSLContext, cfg: SipTlsConfig) -> None:
    assert cfg.cert_file and cfg.key_file
    ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
    if cfg.ca_file:
        ctx.load_verify_locations(cfg.ca_file)
        ctx.verify_mode = ssl.CERT_OPTIONAL  # a client certificate, when given, must verify


class SipTlsListener:
    def __init__(self, cfg: SipTlsConfig, host: str, endpoint: Callable[[], SipEndpoint | None]) -> None:
        self.cfg = cfg
        self.host = host
        self._endpoint = endpoint
        self.ctx: ssl.SSLContext | None = None
        self.server: asyncio.Server | None = None
        self.port: int | None = None
        self.reloads = 0

    def _protocol(self) -> SipTcpConnection:
        ep = self._endpoint()
        assert ep is not None
        ep.tls_port = self.port  # Via/Contact towards TLS peers name this port (a reload may re-make ep)
        return ep.tcp_peers.protocol()  # the current endpoint's table (a reload may re-bind SIP)

    async def start(self) -> None:
        if not self.cfg.enabled:
            return
        self.ctx = server_context(self.cfg)
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self._protocol, self.host, self.cfg.port, ssl=self.ctx,
                                               ssl_handshake_timeout=10.0)
        self.port = self.server.sockets[0].getsockname()[1]
        if (ep := self._endpoint()) is not None:
            ep.tls_port = self.port
        log.info("SIP over TLS listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    async def reload(self, cfg: SipTlsConfig) -> None:
        """New certificate/key files (or the same files, renewed): loaded for the next
        handshakes. Turning TLS on/off or moving its port takes a restart."""
        if (cfg.enabled, cfg.port) != (self.cfg.enabled, self.cfg.port) and self.server is not None:
            log.warning("reload: turning SIP over TLS on or off or moving its port takes a restart")
        if not cfg.enabled or self.ctx is None:
            return
        try:
            server_context(cfg)  # scratch load: a broken pair never reaches the live context
        except (OSError, ssl.SSLError) as e:
            log.error("reload: TLS certificate/key rejected, keeping the running ones: %s", e)
            return
        _load(self.ctx, cfg)
        self.cfg = cfg.model_copy(update={"enabled": self.cfg.enabled, "port": self.cfg.port})
        self.reloads += 1
        log.info("reload: TLS certificate re-read from %s", cfg.cert_file)
