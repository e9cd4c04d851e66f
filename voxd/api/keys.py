"""``/api/v1/api-keys``: a key manages only keys within its own reach.

A key can never create, change, revive or revoke a key whose scopes are not a subset of
its own (``admin`` holds every scope), and never sets limits beyond its own: a key it
creates gets at most its expiry, rate and quotas (inheriting them when not given), and
its own limits are not its to raise."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from voxd.api.models import (
    KEY_ID_RE,
    SCOPES,
    KeyCreate,
    KeyCreated,
    KeyList,
    KeyOut,
    KeyUpdate,
    Usage,
    UsageQuery,
    UsageRow,
)
from voxd.api.problems import ApiProblem, validation_problem
from voxd.api.routing import Ctx, Reply, RouteTable
from voxd.core.errors import NotFound
from voxd.store.repos import ApiKey

routes = RouteTable(params={"key_id": KEY_ID_RE})
TAG = "api-keys"
BASE = "/api/v1/api-keys"


def effective_scopes(scopes: Iterable[str]) -> set[str]:
    s = set(scopes)
    return set(SCOPES) if "admin" in s else s


def key_out(key: ApiKey, now: float | None = None) -> KeyOut:
    status = "revoked" if key.revoked_at else "expired" if key.expired(now) else "active"
    return KeyOut(status=status, **key.to_dict())


def _beyond_caller(ctx: Ctx, wanted: list[str]) -> None:
    assert ctx.key is not None
    held = effective_scopes(ctx.key.scopes)
    for i, scope in enumerate(wanted):
        if scope not in held:
            raise ApiProblem(
                "insufficient-scope",
                f"body field 'scopes[{i}]': a key cannot grant '{scope}', which it does not hold",
                required_scope=scope,
            )


def _within_reach(ctx: Ctx, target: ApiKey, action: str) -> None:
    assert ctx.key is not None
    beyond = sorted(effective_scopes(target.scopes) - effective_scopes(ctx.key.scopes))
    if beyond:
        raise ApiProblem(
            "insufficient-scope",
            f"a key cannot {action} API key {target.id}: it holds {', '.join(beyond)}, which this key does not",
            required_scope=beyond[0],
        )


LIMITS = ("expires_at", "rate_limit_per_minute", "quota_per_day", "quota_per_month")


def _capped(ctx: Ctx, fields: dict[str, Any], *, inherit: bool) -> dict[str, Any]:
    """``fields`` with each limit checked against the calling key's own: a limit the caller
    has may not be lifted (null) or raised; with ``inherit``, one not given is the caller's."""
    assert ctx.key is not None
    caller = ctx.key
    out = dict(fields)
    for name in LIMITS:
        own = getattr(caller, name)
        if own is None:
            continue
        if name not in out:
            if inherit:
                out[name] = own
            continue
        wanted = out[name]
        if wanted is None or wanted > own:
            what = "expire later" if name == "expires_at" else "have a higher limit"
            raise validation_problem([{
                "field": name,
                "message": f"cannot {what} than the calling key ({name} {own}); a key's limits are not its to raise",
            }], "body")
    return out


async def _get(ctx: Ctx) -> ApiKey:
    key = await ctx.services.keys.get(ctx.path["key_id"])
    if key is None:
        raise NotFound(f"no API key {ctx.path['key_id']!r}")
    return key


@routes.route("POST", BASE, scope="keys:admin", summary="Create an API key", tag=TAG,
              limit_class="write", body=KeyCreate, response=KeyCreated, status=201,
              description="The full key is in this response only. Scopes must be a subset of "
              "the calling key's scopes; expiry, rate and quotas at most the calling key's (its own "
              "when not given).")
async def create_key(ctx: Ctx) -> Reply:
    body: KeyCreate = ctx.body
    _beyond_caller(ctx, list(body.scopes))
    if body.expires_at is not None and body.expires_at <= time.time():
        raise validation_problem([{"field": "expires_at", "message": "must be in the future"}],
                                 "body")
    given = {n: getattr(body, n) for n in LIMITS if n in body.model_fields_set}
    limits = _capped(ctx, given, inherit=True)
    raw, key = await ctx.services.keys.create(
        body.name, list(body.scopes), created_by=ctx.actor, expires_at=limits.get("expires_at"),
        rate_limit_per_minute=limits.get("rate_limit_per_minute"), quota_per_day=limits.get("quota_per_day"),
        quota_per_month=limits.get("quota_per_month"))
    return Reply(KeyCreated(key=raw, **key_out(key).model_dump()), status=201,
                 headers={"Location": f"{BASE}/{key.id}", "Cache-Control": "no-store"})


@routes.route("GET", BASE, scope="keys:admin", summary="List API keys", tag=TAG,
              response=KeyList)
async def list_keys(ctx: Ctx) -> Reply:
    now = time.time()
    return Reply(KeyList(keys=[key_out(k, now) for k in await ctx.services.keys.list()]))


@routes.route("GET", BASE + "/{key_id}", scope="keys:admin", summary="Get an API key", tag=TAG,
              response=KeyOut, problems=("not-found",))
async def get_key(ctx: Ctx) -> Reply:
    return Reply(key_out(await _get(ctx)))


@routes.route("PATCH", BASE + "/{key_id}", scope="keys:admin",
              summary="Rename, narrow scopes, change limits", tag=TAG, limit_class="write",
              description="Only keys whose scopes the calling key holds; limits never beyond the "
              "calling key's own.",
              body=KeyUpdate, response=KeyOut, problems=("not-found", "conflict"))
async def update_key(ctx: Ctx) -> Reply:
    body: KeyUpdate = ctx.body
    key = await _get(ctx)
    _within_reach(ctx, key, "change")
    if key.revoked_at is not None:
        raise ApiProblem("conflict", f"API key {key.id} is revoked")
    fields = _capped(ctx, {name: getattr(body, name) for name in body.model_fields_set}, inherit=False)
    if "name" in fields and fields["name"] is None:
        raise validation_problem([{"field": "name", "message": "cannot be null"}], "body")
    if "scopes" in fields:
        if fields["scopes"] is None:
            raise validation_problem([{"field": "scopes", "message": "cannot be null"}], "body")
        current = effective_scopes(key.scopes)
        for i, scope in enumerate(fields["scopes"]):
            if scope not in current:
                raise validation_problem(
                    [{"field": f"scopes[{i}]",
                      "message": f"'{scope}' would widen the key; scopes can only narrow"}],
                    "body")
        _beyond_caller(ctx, list(fields["scopes"]))
    updated = await ctx.services.keys.update(key.id, **fields)
    assert updated is not None
    return Reply(key_out(updated))


@routes.route("DELETE", BASE + "/{key_id}", scope="keys:admin", summary="Revoke an API key",
              tag=TAG, limit_class="write", response=KeyOut, problems=("not-found",),
              description="The key stops working at once; the record stays for auditing. Only keys "
              "whose scopes the calling key holds.")
async def revoke_key(ctx: Ctx) -> Reply:
    key = await _get(ctx)
    _within_reach(ctx, key, "revoke")
    revoked = await ctx.services.keys.revoke(key.id)
    assert revoked is not None
    return Reply(key_out(revoked))


@routes.route("GET", BASE + "/{key_id}/usage", scope="keys:admin",
              summary="Requests per day and endpoint", tag=TAG, query=UsageQuery,
              response=Usage, problems=("not-found",))
async def key_usage(ctx: Ctx) -> Reply:
    q: UsageQuery = ctx.query
    key = await _get(ctx)
    await ctx.services.usage.flush()
    today, month = await ctx.services.keys.usage_totals(key.id)
    rows = await ctx.services.keys.usage(key.id, q.since, q.until)
    return Reply(Usage(key_id=key.id, today=today, this_month=month,
                       quota_per_day=key.quota_per_day, quota_per_month=key.quota_per_month,
                       days=[UsageRow(**r) for r in rows]))
