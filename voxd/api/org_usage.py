"""``GET /api/v1/usage``: what the caller's organisation used today and this month (UTC)
against its limits: API requests by its keys, calls placed and received with their
connected minutes, calls up now."""

from __future__ import annotations

from pydantic import BaseModel, Field

from voxd.api.org_limits import month_start, utc_midnight
from voxd.api.routing import Ctx, Reply, RouteTable

routes = RouteTable()


class CallUse(BaseModel):
    count: int = Field(description="Calls started in the period.")
    answered: int
    seconds: float = Field(description="Connected time of the calls that ended.")


class Period(BaseModel):
    api_requests: int = Field(description="Requests by the organisation's API keys (signed-in people not counted).")
    calls: CallUse


class Usage(BaseModel):
    org: str
    today: Period
    month: Period
    active_calls: int
    limits: dict[str, int] = Field(description="The organisation's limits (`voxd orgs limits`); a missing one is no "
                                   "limit: api_requests_per_minute, calls_concurrent, calls_per_day.")


@routes.route("GET", "/api/v1/usage", scope="usage:read", summary="The organisation's usage and limits",
              tag="usage", response=Usage)
async def org_usage(ctx: Ctx) -> Reply:
    s = ctx.services
    await s.usage.flush()
    today_req, month_req = await s.keys.org_usage_totals()
    today = await s.calls.totals(utc_midnight())
    month = await s.calls.totals(month_start())
    limits = await s.org_limits.get(s.db.orgs(), ctx.org)
    return Reply(Usage(org=ctx.org, today=Period(api_requests=today_req, calls=CallUse.model_validate(today)),
                       month=Period(api_requests=month_req, calls=CallUse.model_validate(month)),
                       active_calls=len(await s.deps.calls.active()), limits=limits))
