"""`GET /api/v1/sip/registrations`: the state of every `sip.registrations[]` entry. The
daemon provides the reader under `SIP_REGISTRATIONS`; without it the list is empty."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from voxd.api.routing import Ctx, Reply, RouteTable

StatusReader = Callable[[], list[dict[str, Any]]]
SIP_REGISTRATIONS: web.AppKey[StatusReader] = web.AppKey("voxd_sip_registrations")

routes = RouteTable()


class RegistrationState(BaseModel):
    name: str
    registrar: str
    aor: str
    transport: str
    agent: str | None = Field(description="Agent answering calls to the AOR (null: the default agent).")
    state: str = Field(description="unregistered, registering, registered, backoff or unregistering.")
    registered: bool
    contact: str | None = Field(description="The Contact voxd binds.")
    target: str | None = Field(None, description="Where REGISTER goes now (address:port): the registrar's name "
                               "resolved with NAPTR/SRV/A (RFC 3263), moved on after a timeout, 503 or refused connection.")
    last_status: int | None = Field(description="Status of the last final response to a REGISTER.")
    last_reason: str
    granted_expires_s: int | None
    expires_in_s: float | None
    refresh_in_s: float | None
    retry_in_s: float | None = Field(description="After a failure: when the next attempt goes (RFC 5626 backoff or Retry-After).")
    failures: int = Field(description="Consecutive failed attempts.")
    service_route: list[str]
    path: list[str]


class Registrations(BaseModel):
    registrations: list[RegistrationState]


@routes.route("GET", "/api/v1/sip/registrations", scope="calls:read", tag="sip", response=Registrations,
              summary="State of each SIP registration",
              description="One entry per `sip.registrations[]` in voxd.yaml: registered or not, the last "
              "registrar answer, when the binding expires and is refreshed, the retry after a failure.")
async def list_registrations(ctx: Ctx) -> Reply:
    # the daemon's carrier registrations belong to the default organisation
    reader = ctx.request.app.get(SIP_REGISTRATIONS) if ctx.org == "default" else None
    return Reply(Registrations.model_validate({"registrations": reader() if reader is not None else []}))


SIP_TRUNKS: web.AppKey[StatusReader] = web.AppKey("voxd_sip_trunks")


class TrunkState(BaseModel):
    name: str
    domain: str
    proxy: str | None
    options_interval_s: float = Field(description="OPTIONS keepalive interval (0: not probed).")
    state: str = Field(description="up, down, unknown (no answer yet) or unprobed (no keepalive configured).")
    last_status: int | None = Field(description="Status of the last answer to an OPTIONS (408: no answer).")
    last_reason: str
    rtt_ms: float | None = Field(description="Round trip of the last answered OPTIONS.")
    failures: int = Field(description="Consecutive keepalives without a good answer.")
    checked_at: float | None = Field(description="Unix time of the last answer.")
    active_calls: int = Field(description="Outbound calls in progress on the trunk.")
    blocked_for_s: float = Field(description="Seconds before a new call may go: a carrier's 503 Retry-After.")
    blocked_by: str = Field(description="What asked for the wait (e.g. SIP 503 Retry-After 30 s).")


class Trunks(BaseModel):
    trunks: list[TrunkState]


@routes.route("GET", "/api/v1/sip/trunks", scope="calls:read", tag="sip", response=Trunks,
              summary="Health and load of each outbound SIP trunk",
              description="One entry per `sip.trunks[]` with `outbound` settings: the OPTIONS keepalive's verdict "
              "(`options_interval_s`), calls in progress, and the wait a carrier's 503 with Retry-After imposed.")
async def list_trunks(ctx: Ctx) -> Reply:
    reader = ctx.request.app.get(SIP_TRUNKS) if ctx.org == "default" else None  # the daemon's trunks: default org
    return Reply(Trunks.model_validate({"trunks": reader() if reader is not None else []}))
