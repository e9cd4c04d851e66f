"""What ``voxd keys create|list|revoke`` call. The CLI prints the returned key once.

The pepper must be the one the daemon's API uses (``ApiSettings.pepper``); both default
to the ``VOXD_API_KEY_PEPPER`` environment variable.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from voxd.api.deps import PEPPER_ENV
from voxd.api.keys import key_out
from voxd.api.models import SCOPES
from voxd.store.repos import ApiKeyRepo, Store


def _repo(db: Store, pepper: str | None) -> ApiKeyRepo:
    return db.api_keys(pepper=os.environ.get(PEPPER_ENV, "") if pepper is None else pepper)


async def create_key(
    db: Store,
    name: str,
    scopes: Sequence[str],
    expires: float | None = None,
    *,
    pepper: str | None = None,
    created_by: str = "cli",
    quota_per_day: int | None = None,
    quota_per_month: int | None = None,
    rate_limit_per_minute: int | None = None,
) -> str:
    """Create a key and return the raw key (print it once; it is not stored).

    ``expires`` is unix seconds. Raises ValueError for an unknown scope or empty name."""
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ValueError(f"unknown scopes {unknown}; choose from {', '.join(SCOPES)}"
                         if unknown else "give at least one scope")
    if not name.strip():
        raise ValueError("a key needs a name")
    if await db.orgs().get(db.org) is None:
        raise ValueError(f"no organisation {db.org!r}")
    raw, key = await _repo(db, pepper).create(
        name, list(scopes), created_by=created_by, expires_at=expires,
        rate_limit_per_minute=rate_limit_per_minute, quota_per_day=quota_per_day,
        quota_per_month=quota_per_month)
    await db.audit().append(actor=created_by, action="create_key", target=key.id, after=key.to_dict())
    return raw


async def list_keys(db: Store) -> list[dict[str, Any]]:
    """Every key as a dict (id, name, prefix, scopes, status, created/expires/revoked/last
    used times, limits); never the key or its hash."""
    return [key_out(k).model_dump() for org in await db.orgs().list()
            for k in await db.for_org(org["id"]).api_keys().list()]


async def revoke_key(db: Store, key_id: str) -> bool:
    """True when the key exists (revoking twice keeps the first time); False when unknown.
    Any organisation's key: the CLI is the operator."""
    for org in await db.orgs().list():
        scoped = db.for_org(org["id"])
        before = await scoped.api_keys().get(key_id)
        if before is not None:
            after = await scoped.api_keys().revoke(key_id)
            await scoped.audit().append(actor="cli", action="revoke_key", target=key_id, before=before.to_dict(),
                                        after=None if after is None else after.to_dict())
            return True
    return False
