"""The SQLite store implements the repository Protocols callers depend on (voxd.store.repos)."""

from __future__ import annotations

from voxd.store import repos
from voxd.store.db import Database


async def test_sqlite_store_hands_out_every_repository(db: Database) -> None:
    store: repos.Store = db  # checked by mypy: Database is a Store
    assert isinstance(store, repos.Store)
    for repo, proto in (
        (store.calls(), repos.CallRepo), (store.api_keys("pepper"), repos.ApiKeyRepo),
        (store.functions(), repos.FunctionRepo), (store.executions(), repos.ExecutionLogRepo),
        (store.agent_changes(), repos.AgentChangeRepo), (store.calendar(), repos.CalendarRepo),
        (store.webhooks(), repos.WebhookRepo),
    ):
        assert isinstance(repo, proto), f"{type(repo).__name__} is not a {proto.__name__}"
    assert await store.writable()


async def test_repositories_share_one_transaction(db: Database) -> None:
    """A call record and the outbox rows of its event commit together through ``also``."""
    from voxd.core.calllog import CallRecord

    hooks = db.webhooks()
    await hooks.create_endpoint(url="https://example.com/h", secret="whsec_x", created_by="test")
    msg = repos.Message(id="msg_1", type="call.started", payload="{}", agent="a", call_id="call_1")

    async def write(txn: repos.Transaction) -> object:
        return await hooks.add_messages_in(txn, [msg])

    await db.calls().save(CallRecord(id="call_1", agent="a", agent_version="1", transport="websocket"), also=[write])
    assert await db.calls().get("call_1") is not None
    assert await hooks.message("msg_1") == msg
    assert (await hooks.counts()).get(repos.PENDING) == 1
