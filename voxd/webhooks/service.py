"""``Webhooks``: store, outbox, sender and worker put together, and ``setup_webhooks(daemon)``.

The daemon calls ``setup_webhooks(self)`` once its database, call manager and agents are
loaded; that subscribes to call and agent events and registers a ``("webhooks", start,
stop)`` service. The control API finds the running instance with ``for_database(db)``.
"""

from __future__ import annotations

import copy
import logging
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from voxd.agents.catalog import AgentCatalog, ReloadReport
from voxd.call.conversation import TextEvent
from voxd.call.events import CallEnded, CallEvent, CallStarted
from voxd.config import VoxdConfig, WebhooksConfig
from voxd.core.egress import EgressPolicy
from voxd.core.sealing import Sealer
from voxd.core.secrets import Outbound
from voxd.core.signing import new_secret
from voxd.store.repos import (
    FAILED,
    PENDING,
    AttemptResult,
    Endpoint,
    Message,
    Store,
    Transaction,
    TxnWrite,
    WebhookRepo,
)
from voxd.webhooks import events
from voxd.webhooks.delivery import DeliveryWorker, Sender, private_allowed, url_problem
from voxd.webhooks.outbox import Outbox

if TYPE_CHECKING:
    from voxd.call.manager import CallManager

log = logging.getLogger("voxd.webhooks")

_RUNNING: weakref.WeakKeyDictionary[Store, Webhooks] = weakref.WeakKeyDictionary()


class Webhooks:
    def __init__(self, db: Store, cfg: WebhooksConfig | None = None, policy: EgressPolicy | None = None,
                 sealer: Sealer | None = None) -> None:
        self.cfg = cfg or WebhooksConfig()
        # secrets sealed at rest; the key beside the database unless the daemon gives its own
        if sealer is None:
            sealer = Sealer.ephemeral() if str(db.path) == ":memory:" else Sealer.load(Path(db.path).parent)
        self.db = db
        self._sealer = sealer
        self.store = db.webhooks(sealer)
        self.sender = Sender(self.cfg, policy)
        self.worker = DeliveryWorker(self.store, self.sender, self.cfg)
        self._org_stores: dict[str, WebhookRepo] = {}
        self.outbox = Outbox(self.store, self.worker.wake, store_for=self._store_of)
        self.running = False
        self.transactional = False  # call start/end rows are written with the call record
        self._agents: AgentCatalog | None = None

    def for_org(self, org: str) -> Webhooks:
        """This instance with its store bound to ``org`` (endpoints, messages and the
        delivery log of that organisation); the worker and sender are shared."""
        if org == self.store_org:
            return self
        view = copy.copy(self)
        view.store = self.db.for_org(org).webhooks(self._sealer)
        return view

    def _store_of(self, org: str) -> WebhookRepo:
        if org == self.db.org:
            return self.store
        got = self._org_stores.get(org)
        if got is None:
            got = self._org_stores[org] = self.db.for_org(org).webhooks(self._sealer)
        return got

    @property
    def store_org(self) -> str:
        return self.db.org

    def configure(self, cfg: WebhooksConfig, policy: EgressPolicy | None = None) -> None:
        """Apply a reloaded `webhooks:` block (and `egress:` policy): retry schedule, jitter,
        concurrency, timeouts, response excerpts and the destination rules take effect for
        the next attempt."""
        self.cfg = cfg
        self.sender.configure(cfg, policy)
        self.worker.cfg = cfg
        self.worker.wake()

    @property
    def allow_private(self) -> bool:
        return private_allowed(self.cfg)

    def url_problem(self, url: str) -> str | None:
        return url_problem(url, self.sender.policy)

    # -- lifecycle
    async def start(self) -> None:
        sealed = await self.store.seal_existing()
        if sealed:
            log.info("webhooks: sealed the secrets of %d endpoints stored in plain text", sealed)
        self.outbox.start()
        self.worker.start()
        self.running = True
        _RUNNING[self.db] = self
        counts = await self.store.counts()
        if counts.get(PENDING):
            log.info("webhooks: resuming %d pending deliveries", counts[PENDING])

    async def stop(self) -> None:
        self.running = False
        await self.outbox.stop()
        await self.worker.stop()
        await self.sender.close()
        _RUNNING.pop(self.db, None)

    # -- event sources
    def on_call_event(self, event: CallEvent) -> None:
        if self.transactional and isinstance(event, (CallStarted, CallEnded)):
            return  # written with the call record by `writer`
        try:
            self.outbox.publish(events.from_call_event(event), org=event.record.org)  # its organisation's endpoints
        except Exception:
            log.exception("webhooks: could not build the payload for %s", type(event).__name__)

    def on_text_event(self, event: TextEvent) -> None:
        """A text conversation's event (``ConversationManager.listeners``)."""
        try:
            self.outbox.publish(events.from_text_event(event), org=event.record.org)  # its organisation's endpoints
        except Exception:
            log.exception("webhooks: could not build the payload for %s", type(event).__name__)

    def writer(self, event: CallEvent) -> tuple[TxnWrite, Callable[[], None]] | None:
        """For CallManager.transactional: the outbox rows for a call's start or end, written
        in the same transaction as the call record."""
        if not isinstance(event, (CallStarted, CallEnded)):
            return None
        msgs = events.from_call_event(event)
        if not msgs:
            return None

        org = event.record.org

        async def write(conn: Transaction) -> object:
            return await self.outbox.add_in(conn, msgs, org)

        return write, lambda: self.outbox.committed(msgs)

    def on_agents_reloaded(self, report: ReloadReport, catalog: AgentCatalog | None = None) -> None:
        """``agent.deployed`` / ``agent.updated`` to the endpoints of the catalog's organisation
        (``catalog``: an organisation's own; None: the default one watched)."""
        if catalog is None:
            catalog = self._agents
        if catalog is None:
            return
        out: list[Message] = []
        kinds: tuple[tuple[Literal["agent.deployed", "agent.updated"], list[str]], ...] = (
            ("agent.deployed", report.added), ("agent.updated", report.updated))
        for kind, names in kinds:
            for name in names:
                agent = catalog.get(name)
                if agent is not None:
                    out.append(events.agent_message(kind, name, agent.version))
        self.outbox.publish(out, org=catalog.org)

    def watch_agents(self, registry: AgentCatalog) -> None:
        self._agents = registry
        registry.listeners.append(self.on_agents_reloaded)

    # -- API operations
    async def create_endpoint(self, created_by: str, **fields: Any) -> Endpoint:
        ep = await self.store.create_endpoint(secret=new_secret(), created_by=created_by, **fields)
        self.worker.endpoints_changed()
        return ep

    async def rotate_secret(self, endpoint_id: str, overlap_s: float) -> Endpoint | None:
        ep = await self.store.rotate_secret(endpoint_id, new_secret(), overlap_s)
        self.worker.endpoints_changed()
        return ep

    async def replay(self, endpoint_id: str, delivery_id: str) -> str | None:
        """A new delivery of the same message (same webhook-id), due now."""
        old = await self.store.due_delivery(endpoint_id, delivery_id)
        msg = None if old is None else await self.store.message(old.message_id)
        if msg is None:
            return None
        new_id = await self.store.add_delivery(endpoint_id, msg, "replay")
        self.worker.wake()
        return new_id

    async def test(self, endpoint: Endpoint) -> tuple[str, str, AttemptResult]:
        """Send a ``webhook.test`` now (once, no retries, endpoint health untouched).
        Returns (delivery id, status, attempt)."""
        msg = events.message("webhook.test", events.TestInfo(webhook_id=endpoint.id))
        did = await self.store.add_delivery(endpoint.id, msg, "test", status=FAILED)
        due = await self.store.due_delivery(endpoint.id, did)
        assert due is not None
        if self.running:
            status, result = await self.worker.attempt(due, retry=False, affects_health=False)
        else:  # the API without a daemon (tests, tools): a one-off client
            async with Sender(self.cfg, self.sender.policy) as sender:
                worker = DeliveryWorker(self.store, sender, self.cfg)
                status, result = await worker.attempt(due, retry=False, affects_health=False)
        return did, status, result


def for_database(db: Store) -> Webhooks:
    """The daemon's running instance for ``db``, or a stand-alone one (API-only use)."""
    return _RUNNING.get(db) or Webhooks(db)


class WebhookHost(Protocol):
    """What ``setup_webhooks`` needs of the daemon (``voxd.app.Daemon``)."""

    cfg: VoxdConfig
    outbound: Outbound
    agents: AgentCatalog
    services: list[tuple[str, Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]]

    @property
    def db(self) -> Store | None: ...

    @property
    def calls(self) -> CallManager | None: ...


def setup_webhooks(daemon: WebhookHost) -> Webhooks:
    """Wire webhooks into a ``voxd.app.Daemon`` whose ``db`` and ``calls`` exist (call it
    after the first agent load, or every agent is announced as deployed at each start)."""
    assert daemon.db is not None and daemon.calls is not None, "setup_webhooks before the store and calls exist"
    hooks = Webhooks(daemon.db, daemon.cfg.webhooks, daemon.outbound.policy,
                     Sealer.load(daemon.cfg.resolved_state_dir()))
    daemon.calls.listeners.append(hooks.on_call_event)
    if daemon.calls.repo is not None:
        daemon.calls.transactional.append(hooks.writer)
        hooks.transactional = True
    hooks.watch_agents(daemon.agents)
    daemon.services.append(("webhooks", hooks.start, hooks.stop))
    return hooks
