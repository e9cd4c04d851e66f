"""``/api/v1/webhooks``: endpoints, their delivery log, replays and test sends.

A webhook's signing secret (``whsec_...``) is in the create and rotate responses only.
Rotating keeps the previous secret signing too for ``overlap_s`` seconds, so receivers can
switch over without dropping a request (``webhook-signature`` then holds two ``v1,``
signatures). Payload schemas are documented by ``GET /api/v1/webhooks/event-types`` and the
``payload`` of a delivery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from voxd.api.models import NAME_PATTERN, Request
from voxd.api.problems import validation_problem
from voxd.api.routing import Ctx, Reply, RouteTable
from voxd.core.errors import NotFound
from voxd.store.repos import Endpoint
from voxd.webhooks.delivery import RESERVED_HEADERS
from voxd.webhooks.events import EVENT_TYPES, SUBSCRIBABLE, WebhookEvent, examples
from voxd.webhooks.service import Webhooks, for_database

TAG = "webhooks"
BASE = "/api/v1/webhooks"

# `*` or one of the subscribable event types, as an enum in the OpenAPI document; derived
# from voxd.webhooks.events.EVENT_TYPES, so a new event type is subscribable at once
if TYPE_CHECKING:
    EventFilter = str
else:
    EventFilter = Literal[("*", *SUBSCRIBABLE)]
HeaderName = Annotated[str, Field(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")]
HeaderValue = Annotated[str, Field(pattern=r"^[^\r\n\x00]{0,1024}$")]
AgentName = Annotated[str, Field(pattern=NAME_PATTERN)]
Delay = Annotated[float, Field(ge=0, le=86400, allow_inf_nan=False, strict=True)]
ID_RE = r"[A-Za-z0-9_]{1,64}"  # no "-": /webhooks/event-types is never a {webhook_id}
routes = RouteTable(params={"webhook_id": ID_RE, "delivery_id": ID_RE})


def _all_events() -> list[EventFilter]:
    return ["*"]


URL_FIELD = Field(pattern=r"^https?://[^\s]+$", max_length=2048, examples=["https://crm.example.com/voxd-events"])


class WebhookCreate(Request):
    url: str = URL_FIELD
    description: str = Field("", max_length=500)
    events: list[EventFilter] = Field(default_factory=_all_events, min_length=1, max_length=20,
                                      description="Event types to send, or `*` for all.")
    agents: list[AgentName] | None = Field(None, max_length=100, description="Only events of these agents.")
    enabled: bool = Field(True, strict=True)
    headers: dict[HeaderName, HeaderValue] = Field(default_factory=dict, max_length=20,
                                                   description="Sent with every request (not the webhook-* ones).")
    timeout_s: float | None = Field(None, ge=0.1, le=60, allow_inf_nan=False, strict=True, description="Default: the daemon's.")
    retry_schedule_s: list[Delay] | None = Field(None, max_length=20,
                                                 description="Delay before each retry. Default: the daemon's.")


class WebhookUpdate(Request):
    """Fields left out stay as they are; `null` resets agents, timeout and schedule to defaults."""

    url: Annotated[str, URL_FIELD] | SkipJsonSchema[None] = None
    description: Annotated[str, Field(max_length=500)] | SkipJsonSchema[None] = None
    events: Annotated[list[EventFilter], Field(min_length=1, max_length=20)] | SkipJsonSchema[None] = None
    agents: list[AgentName] | None = Field(None, max_length=100)
    enabled: Annotated[bool, Field(strict=True)] | SkipJsonSchema[None] = None
    headers: Annotated[dict[HeaderName, HeaderValue], Field(max_length=20)] | SkipJsonSchema[None] = None
    timeout_s: float | None = Field(None, ge=0.1, le=60, allow_inf_nan=False, strict=True)
    retry_schedule_s: list[Delay] | None = Field(None, max_length=20)


class WebhookOut(BaseModel):
    id: str = Field(examples=["wh_0123456789abcdef"])
    url: str
    description: str
    events: list[str]
    agents: list[str] | None
    enabled: bool
    health: Literal["healthy", "failing", "disabled"] = Field(
        description="`failing` after N consecutive failed attempts; `disabled` by the API or a 410 Gone.")
    consecutive_failures: int
    disabled_reason: str | None
    header_names: list[str] = Field(description="Custom headers sent (values are not shown).")
    timeout_s: float | None
    retry_schedule_s: list[float] | None
    previous_secret_expires_at: float | None = Field(description="While set, the old secret signs too.")
    created_by: str
    created_at: float
    updated_at: float


class WebhookCreated(WebhookOut):
    secret: str = Field(description="`whsec_...`; shown only here. Verify with any Standard Webhooks library.")


class WebhookList(BaseModel):
    webhooks: list[WebhookOut]


class SecretRotate(Request):
    overlap_s: float = Field(86400.0, ge=0, le=7 * 86400, allow_inf_nan=False, strict=True,
                             description="How long the previous secret keeps signing.")


class DeliveriesQuery(Request):
    status: Literal["pending", "succeeded", "failed"] | None = None
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, pattern=r"^dlv_[0-9a-f]{20}$", description="next_cursor of the previous page.")


class DeliveryOut(BaseModel):
    id: str = Field(examples=["dlv_0123456789abcdef0123"])
    message_id: str = Field(description="The webhook-id header; the same on every retry and replay.")
    event_type: str
    status: Literal["pending", "succeeded", "failed"]
    attempts: int
    next_attempt_at: float | None
    trigger: Literal["event", "replay", "test"]
    last_status_code: int | None
    last_error: str | None
    created_at: float
    updated_at: float


class DeliveryPage(BaseModel):
    deliveries: list[DeliveryOut]
    next_cursor: str | None


class AttemptOut(BaseModel):
    attempt: int
    at: float
    status_code: int | None
    latency_ms: float
    response_excerpt: str | None = Field(description="The start of the response body (size-capped).")
    error: str | None


class DeliveryDetail(DeliveryOut):
    payload: WebhookEvent
    attempt_log: list[AttemptOut]


class TestResult(BaseModel):
    delivery_id: str
    message_id: str
    status: Literal["succeeded", "failed"]
    attempt: AttemptOut


class EventType(BaseModel):
    type: str
    description: str
    example: WebhookEvent


class EventTypeList(BaseModel):
    event_types: list[EventType]


def _out(ep: Endpoint) -> dict[str, object]:
    return {
        "id": ep.id, "url": ep.url, "description": ep.description, "events": ep.events, "agents": ep.agents,
        "enabled": ep.enabled, "health": ep.health, "consecutive_failures": ep.consecutive_failures,
        "disabled_reason": ep.disabled_reason, "header_names": sorted(ep.headers),
        "timeout_s": ep.timeout_s, "retry_schedule_s": ep.retry_schedule,
        "previous_secret_expires_at": ep.previous_secret_until if ep.previous_secret else None,
        "created_by": ep.created_by, "created_at": ep.created_at, "updated_at": ep.updated_at,
    }


def _hooks(ctx: Ctx) -> Webhooks:
    return for_database(ctx.services.deps.db).for_org(ctx.org)


async def _endpoint(ctx: Ctx) -> Endpoint:
    ep = await _hooks(ctx).store.get_endpoint(ctx.path["webhook_id"])
    if ep is None:
        raise NotFound(f"no webhook {ctx.path['webhook_id']!r}")
    return ep


def _check(hooks: Webhooks, url: str | None, headers: dict[str, str] | None) -> None:
    if url is not None:
        problem = hooks.url_problem(url)
        if problem:
            raise validation_problem([{"field": "url", "message": problem}], "body")
    for name in headers or {}:
        if name.lower() in RESERVED_HEADERS:
            raise validation_problem([{"field": f"headers.{name}", "message": "is set by voxd"}], "body")


@routes.route("GET", BASE + "/event-types", scope="webhooks:read", summary="Event types and example payloads",
              tag=TAG, response=EventTypeList)
async def webhook_event_types(ctx: Ctx) -> Reply:
    ex = examples()
    return Reply(EventTypeList.model_validate({"event_types": [
        {"type": t, "description": d, "example": ex[t]} for t, d in EVENT_TYPES.items()]}))


@routes.route("GET", BASE, scope="webhooks:read", summary="List webhooks", tag=TAG, response=WebhookList)
async def list_webhooks(ctx: Ctx) -> Reply:
    eps = await _hooks(ctx).store.list_endpoints()
    return Reply(WebhookList.model_validate({"webhooks": [_out(e) for e in eps]}))


@routes.route("POST", BASE, scope="webhooks:write", summary="Create a webhook", tag=TAG, limit_class="write",
              body=WebhookCreate, response=WebhookCreated, status=201,
              description="The signing secret is in this response only. Private, loopback and link-local "
              "destinations are refused unless the daemon allows them.")
async def create_webhook(ctx: Ctx) -> Reply:
    body: WebhookCreate = ctx.body
    hooks = _hooks(ctx)
    _check(hooks, body.url, body.headers)
    ep = await hooks.create_endpoint(
        ctx.actor, url=body.url, description=body.description, events=list(body.events), agents=body.agents,
        enabled=body.enabled, headers=body.headers, timeout_s=body.timeout_s, retry_schedule=body.retry_schedule_s)
    return Reply(WebhookCreated.model_validate(_out(ep) | {"secret": ep.secret}), status=201,
                 headers={"Location": f"{BASE}/{ep.id}", "Cache-Control": "no-store"})


@routes.route("GET", BASE + "/{webhook_id}", scope="webhooks:read", summary="Get a webhook", tag=TAG,
              response=WebhookOut, problems=("not-found",))
async def get_webhook(ctx: Ctx) -> Reply:
    return Reply(WebhookOut.model_validate(_out(await _endpoint(ctx))))


@routes.route("PATCH", BASE + "/{webhook_id}", scope="webhooks:write", summary="Change a webhook", tag=TAG,
              limit_class="write", body=WebhookUpdate, response=WebhookOut, problems=("not-found",),
              description="Re-enabling a disabled webhook resets its health; its pending deliveries resume.")
async def update_webhook(ctx: Ctx) -> Reply:
    body: WebhookUpdate = ctx.body
    ep = await _endpoint(ctx)
    hooks = _hooks(ctx)
    fields = {name: getattr(body, name) for name in body.model_fields_set}
    for name in ("url", "description", "events", "enabled", "headers"):
        if name in fields and fields[name] is None:
            raise validation_problem([{"field": name, "message": "cannot be null"}], "body")
    _check(hooks, fields.get("url"), fields.get("headers"))
    if "retry_schedule_s" in fields:
        fields["retry_schedule"] = fields.pop("retry_schedule_s")
    if "events" in fields:
        fields["events"] = list(fields["events"])
    updated = await hooks.store.update_endpoint(ep.id, **fields)
    if updated is None:
        raise NotFound(f"no webhook {ep.id!r}")
    hooks.worker.endpoints_changed()
    return Reply(WebhookOut.model_validate(_out(updated)))


@routes.route("DELETE", BASE + "/{webhook_id}", scope="webhooks:write", summary="Delete a webhook", tag=TAG,
              limit_class="write", status=204, problems=("not-found",),
              description="Its pending deliveries and delivery log go with it.")
async def delete_webhook(ctx: Ctx) -> Reply:
    ep = await _endpoint(ctx)
    hooks = _hooks(ctx)
    await hooks.store.delete_endpoint(ep.id)
    hooks.worker.endpoints_changed()
    return Reply(status=204)


@routes.route("POST", BASE + "/{webhook_id}/rotate-secret", scope="webhooks:write", summary="Rotate the signing secret",
              tag=TAG, limit_class="write", body=SecretRotate, response=WebhookCreated, problems=("not-found",),
              description="Returns the new secret (shown only here); the previous one keeps signing for overlap_s.")
async def rotate_webhook_secret(ctx: Ctx) -> Reply:
    body: SecretRotate = ctx.body
    ep = await _endpoint(ctx)
    rotated = await _hooks(ctx).rotate_secret(ep.id, body.overlap_s)
    if rotated is None:
        raise NotFound(f"no webhook {ep.id!r}")
    return Reply(WebhookCreated.model_validate(_out(rotated) | {"secret": rotated.secret}),
                 headers={"Cache-Control": "no-store"})


@routes.route("GET", BASE + "/{webhook_id}/deliveries", scope="webhooks:read", summary="Delivery log", tag=TAG,
              query=DeliveriesQuery, response=DeliveryPage, problems=("not-found",))
async def list_webhook_deliveries(ctx: Ctx) -> Reply:
    q: DeliveriesQuery = ctx.query
    ep = await _endpoint(ctx)
    page, nxt = await _hooks(ctx).store.list_deliveries(ep.id, status=q.status, limit=q.limit, before=q.cursor)
    return Reply(DeliveryPage.model_validate({"deliveries": page, "next_cursor": nxt}))


@routes.route("GET", BASE + "/{webhook_id}/deliveries/{delivery_id}", scope="webhooks:read",
              summary="A delivery with its payload and every attempt", tag=TAG, response=DeliveryDetail,
              problems=("not-found",))
async def get_webhook_delivery(ctx: Ctx) -> Reply:
    ep = await _endpoint(ctx)
    detail = await _hooks(ctx).store.get_delivery(ep.id, ctx.path["delivery_id"])
    if detail is None:
        raise NotFound(f"no delivery {ctx.path['delivery_id']!r} for webhook {ep.id!r}")
    return Reply(DeliveryDetail.model_validate(detail))


@routes.route("POST", BASE + "/{webhook_id}/deliveries/{delivery_id}/replay", scope="webhooks:write",
              summary="Send a delivery again", tag=TAG, limit_class="execute", response=DeliveryOut, status=202,
              problems=("not-found",),
              description="Queues a new delivery of the same event with the same webhook-id, due now.")
async def replay_webhook_delivery(ctx: Ctx) -> Reply:
    ep = await _endpoint(ctx)
    hooks = _hooks(ctx)
    new_id = await hooks.replay(ep.id, ctx.path["delivery_id"])
    if new_id is None:
        raise NotFound(f"no delivery {ctx.path['delivery_id']!r} for webhook {ep.id!r}")
    page = await hooks.store.get_delivery(ep.id, new_id)
    assert page is not None
    page.pop("payload"), page.pop("attempt_log")
    return Reply(DeliveryOut.model_validate(page), status=202)


@routes.route("POST", BASE + "/{webhook_id}/test", scope="webhooks:write", summary="Send a webhook.test event now",
              tag=TAG, limit_class="execute", response=TestResult, problems=("not-found",),
              description="One attempt, no retries; the endpoint's health is left as it is. Works on disabled "
              "webhooks too, to check them before re-enabling.")
async def test_webhook(ctx: Ctx) -> Reply:
    ep = await _endpoint(ctx)
    hooks = _hooks(ctx)
    delivery_id, status, _ = await hooks.test(ep)
    detail = await hooks.store.get_delivery(ep.id, delivery_id)
    assert detail is not None
    return Reply(TestResult.model_validate({
        "delivery_id": delivery_id, "message_id": detail["message_id"], "status": status,
        "attempt": detail["attempt_log"][-1]}))
