"""Connections voxd opens itself (trunks' and registrations' ``transport: tcp | tls``):
one per peer, kept in the endpoint's connection table (voxd/net/sip_tcp.py) and reused
by every call and REGISTER to that peer; concurrent callers wait on the same attempt.

TLS (RFC 3261 §26, Python's ssl): TLS 1.2 or later, the peer's certificate verified
against the system CA store, or only against ``sip.tls.ca_file`` when one is set, and
its name against the host the trunk or registrar names (not the address it resolved
to). ``sip.tls.cert_file``/``key_file``, when set, are presented as a client certificate
(carriers that authenticate by mutual TLS). The context is rebuilt when `sip.tls`
changes, so a SIGHUP with renewed files applies to the next connection.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING

from voxd.config.sip import SipTlsConfig

if TYPE_CHECKING:
    from voxd.net.sip import SipEndpoint

log = logging.getLogger("voxd.sip.tls")

Addr = tuple[str, int]
CONNECT_TIMEOUT_S = 10.0


class SipConnectError(OSError):
    """No connection to the peer (refused, timed out, or its certificate failed)."""


def client_context(cfg: SipTlsConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cfg.ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cfg.cert_file and cfg.key_file:
        ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
    return ctx


class SipConnector:
    def __init__(self, endpoint: SipEndpoint) -> None:
        self.endpoint = endpoint
        self._pending: dict[Addr, asyncio.Future[None]] = {}
        self._ctx: tuple[SipTlsConfig, ssl.SSLContext] | None = None
        self.opened = 0  # connections opened (the rest were reused)

    def reset(self) -> None:
        """Re-read the CA bundle and client certificate for the next connection (SIGHUP)."""
        self._ctx = None

    def context(self) -> ssl.SSLContext:
        cfg = self.endpoint.cfg.tls
        if self._ctx is None or self._ctx[0] != cfg:
            self._ctx = (cfg, client_context(cfg))
        return self._ctx[1]

    async def ensure(self, peer: Addr, transport: str, server_name: str) -> None:
        """A connection to ``peer`` over ``transport`` (TCP or TLS) exists after this:
        the one already open, or a new one. Raises SipConnectError."""
        peers = self.endpoint.tcp_peers
        conn = peers.get(peer)
        if conn is not None:
            if conn.tls != (transport == "TLS"):
                raise SipConnectError(f"{peer[0]}:{peer[1]} is already connected over {'TLS' if conn.tls else 'TCP'}")
            if conn.tls and server_name not in conn.tls_names:
                await self._verify_name(peer, server_name)  # reused only for names its certificate holds
                conn.tls_names.add(server_name)
            return
        pending = self._pending.get(peer)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._pending[peer] = pending
            try:
                await self._open(peer, transport, server_name)
            except BaseException as e:
                pending.set_exception(e if isinstance(e, SipConnectError) else SipConnectError(str(e)))
                pending.exception()  # retrieved: nobody else may be waiting
                raise
            else:
                pending.set_result(None)
            finally:
                del self._pending[peer]
            return
        await asyncio.shield(pending)

    async def _verify_name(self, peer: Addr, server_name: str) -> None:
        """The open connection was verified for another name (or is one the peer opened):
        a handshake of our own proves the peer's certificate holds ``server_name`` too."""
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(
                peer[0], peer[1], ssl=self.context(), server_hostname=server_name), CONNECT_TIMEOUT_S)
        except ssl.SSLCertVerificationError as e:
            raise SipConnectError(f"TLS certificate of {peer[0]}:{peer[1]} refused for {server_name}: "
                                  f"{e.verify_message}") from None
        except (OSError, TimeoutError, ssl.SSLError) as e:
            raise SipConnectError(f"cannot verify {server_name} at {peer[0]}:{peer[1]}: {e or 'timeout'}") from None
        writer.close()

    async def _open(self, peer: Addr, transport: str, server_name: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            if transport == "TLS":
                await asyncio.wait_for(loop.create_connection(
                    self.endpoint.tcp_peers.protocol, peer[0], peer[1], ssl=self.context(),
                    server_hostname=server_name, ssl_handshake_timeout=CONNECT_TIMEOUT_S), CONNECT_TIMEOUT_S)
            else:
                await asyncio.wait_for(loop.create_connection(self.endpoint.tcp_peers.protocol, peer[0], peer[1]),
                                       CONNECT_TIMEOUT_S)
        except ssl.SSLCertVerificationError as e:
            log.warning("SIP/TLS to %s (%s:%d): certificate refused: %s", server_name, peer[0], peer[1],
                        e.verify_message)
            raise SipConnectError(f"TLS certificate of {server_name} refused: {e.verify_message}") from None
        except (OSError, TimeoutError, ssl.SSLError) as e:
            raise SipConnectError(f"cannot connect over {transport} to {peer[0]}:{peer[1]}: {e or 'timeout'}") from None
        conn = self.endpoint.tcp_peers.get(peer)
        if conn is None:
            raise SipConnectError(f"connection to {peer[0]}:{peer[1]} refused by the connection limits")
        if transport == "TLS":
            conn.tls_names.add(server_name)
        self.opened += 1
        log.info("SIP/%s connection to %s (%s:%d) open", transport, server_name, peer[0], peer[1])
