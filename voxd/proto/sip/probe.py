"""OPTIONS both ways for :class:`~voxd.proto.sip.agent.UserAgent`.

Answering: an out-of-dialog OPTIONS gets the node's state, so a load balancer (a
Kamailio dispatcher probing with OPTIONS) can tell an open node from a draining one:

- open or full: ``200 OK``; draining: ``503 Service Unavailable`` with ``Retry-After``
  (a dispatcher marks the node inactive and stops sending calls);
- every answer carries ``X-Voxd-State: open | full | draining``, ``X-Voxd-Calls`` (SIP
  calls in progress) and ``X-Voxd-Capacity`` (``sip.max_calls``), with ``Allow``,
  ``Accept`` and ``Supported``.

Probing: :meth:`ProbeMixin.options` sends an OPTIONS to a peer (a trunk's keepalive);
its final response (or a 408 when nothing came) arrives as :class:`OptionsResult`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import events as ev
from .dialog import ALLOW, new_branch, new_tag
from .headers import Headers
from .limits import parse_retry_after
from .message import SipRequest, SipResponse
from .transaction import ClientTransaction, ServerTransaction
from .uri import SipUri

if TYPE_CHECKING:
    from .agent import UAConfig

Addr = tuple[str, int]
MAX_PROBES = 1024  # OPTIONS in flight at once; the oldest is forgotten beyond


@dataclass(frozen=True)
class NodeState:
    draining: bool = False
    active: int = 0
    capacity: int = 0
    retry_after: int = 30  # seconds, in the 503 while draining

    @property
    def name(self) -> str:
        if self.draining:
            return "draining"
        return "full" if self.capacity and self.active >= self.capacity else "open"

    def headers(self) -> list[tuple[str, str]]:
        return [("X-Voxd-State", self.name), ("X-Voxd-Calls", str(self.active)),
                ("X-Voxd-Capacity", str(self.capacity))]


NodeStateReader = Callable[[], NodeState]


class ProbeMixin:
    if TYPE_CHECKING:
        config: UAConfig
        node_state: NodeStateReader | None
        _probes: dict[str, float]

        def _start_client(self, req: SipRequest, addr: Addr, now: float) -> ClientTransaction: ...
        def _transport_to(self, addr: Addr) -> str: ...
        def _reply(self, req: SipRequest, addr: Addr, status: int, now: float, *,
                   tx: ServerTransaction | None = None, to_tag: str | None = None,
                   body: bytes = b"", extra: list[tuple[str, str]] | None = None,
                   reason: str = "") -> ServerTransaction: ...

    def _answer_options(self, req: SipRequest, addr: Addr, now: float) -> None:
        state = self.node_state() if self.node_state is not None else NodeState()
        extra = [("Allow", ALLOW), ("Accept", "application/sdp"), ("Supported", "100rel, timer"),
                 *state.headers()]
        if state.draining:
            self._reply(req, addr, 503, now, extra=[("Retry-After", str(state.retry_after)), *extra],
                        reason="Draining")
        else:
            self._reply(req, addr, 200, now, extra=extra)

    def options(self, target: str, peer: Addr, now: float, *, from_host: str | None = None) -> str:
        """Send an OPTIONS to ``target`` (a SIP URI) via ``peer``; returns its Call-ID."""
        uri = SipUri.parse(target)
        cfg = self.config
        call_id = f"{secrets.token_hex(10)}@{cfg.local_host}"
        headers = Headers()
        headers.add("Via", f"SIP/2.0/{self._transport_to(peer)} {cfg.local_host}:{cfg.local_port}"
                           f";branch={new_branch()};rport")
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<sip:{cfg.user}@{from_host or cfg.local_host}>;tag={new_tag()}")
        headers.add("To", f"<{uri.serialize()}>")
        headers.add("Call-ID", call_id)
        headers.add("CSeq", "1 OPTIONS")
        headers.add("Contact", f"<sip:{cfg.user}@{cfg.local_host}:{cfg.local_port}>")
        headers.add("Accept", "application/sdp")
        headers.add("User-Agent", cfg.user_agent)
        self._start_client(SipRequest("OPTIONS", uri.serialize(), headers), peer, now)
        self._probes[call_id] = now
        while len(self._probes) > MAX_PROBES:
            self._probes.pop(next(iter(self._probes)))
        return call_id

    def _probe_answered(self, tx: ClientTransaction, resp: SipResponse, now: float) -> list[ev.Event]:
        sent_at = self._probes.get(tx.request.call_id)
        if sent_at is None or resp.status < 200:
            return []
        del self._probes[tx.request.call_id]
        return [ev.OptionsResult(tx.request.call_id, resp.status, resp.reason,
                                 parse_retry_after(resp.headers.get("Retry-After")),
                                 None if tx.timed_out else now - sent_at)]
