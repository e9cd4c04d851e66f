"""One organisation's data as JSON lines (``voxd orgs export``): what a business takes
with it when it leaves, or hands to an auditor.

Each line is ``{"kind": ..., ...}``: the organisation, its members, API keys (metadata:
never a hash), functions with their execution log, webhook endpoints (never a secret, and
only the names of their extra headers), calls with their turns, conversations with their messages, and the audit log.
Everything comes through the repositories bound to the organisation, so nothing of
another organisation can be in it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from voxd.store.repos import Store

PAGE = 200


async def org_export(db: Store, org: str) -> AsyncIterator[dict[str, Any]]:
    scoped = db.for_org(org)
    info = await db.orgs().get(org)
    if info is None:
        raise LookupError(f"no organisation {org!r}")
    yield {"kind": "org", **info}
    for row in await db.users().list(org):
        yield {"kind": "member", **row}
    for key in await scoped.api_keys().list():
        yield {"kind": "api_key", "id": key.id, "name": key.name, "prefix": key.prefix, "scopes": list(key.scopes),
               "created_by": key.created_by, "created_at": key.created_at, "expires_at": key.expires_at,
               "revoked_at": key.revoked_at}
    functions = scoped.functions()
    for fn in await functions.list():
        yield {"kind": "function", **fn}
        for run in await functions.executions(fn["name"], limit=10_000):
            yield {"kind": "function_execution", "function": fn["name"], **run}
    hooks = scoped.webhooks()
    for ep in await hooks.list_endpoints():
        fields = {k: v for k, v in dataclasses.asdict(ep).items() if "secret" not in k}
        fields["headers"] = sorted(ep.headers)  # names only: values are often credentials
        yield {"kind": "webhook_endpoint", **fields}
    calls = scoped.calls()
    cursor: str | None = None
    while True:
        page, cursor = await calls.list(limit=PAGE, cursor=cursor)
        for summary in page:
            full = await calls.get(summary["id"])
            yield {"kind": "call", **(full or summary)}
        if cursor is None:
            break
    conversations = scoped.conversations()
    cursor = None
    while True:
        convs, cursor = await conversations.list(limit=PAGE, cursor=cursor)
        for summary in convs:
            full = await conversations.get(summary["id"])
            yield {"kind": "conversation", **(full or summary)}
        if cursor is None:
            break
    for row in await scoped.audit().export():
        yield {"kind": "audit", **row}
