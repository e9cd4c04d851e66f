"""What one organisation may use (``voxd orgs limits``): API requests per minute (a token
bucket shared by all its keys and users, with the same ``RateLimit`` headers and
``429``/``Retry-After`` as every other limit), calls at once and calls per UTC day (an
outbound call over either answers ``429``). ``GET /api/v1/usage`` reports the use against them.

Limits are read from the store at most every ``ttl_s`` per organisation, so a change made
with the CLI holds within seconds without a database read per request.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from voxd.api.problems import ApiProblem
from voxd.call.org_limits import OrgLimitCache, utc_midnight
from voxd.store.repos import CallRepo

__all__ = ["OrgLimitCache", "check_call_limits", "month_start", "next_month", "utc_midnight"]


async def check_call_limits(limits: dict[str, int], calls: CallRepo, active: list[dict[str, Any]]) -> None:
    """429 when one more call would go over the organisation's calls at once or per day."""
    cap = limits.get("calls_concurrent")
    if cap is not None and len(active) >= cap:
        raise ApiProblem("rate-limited", f"the organisation has {len(active)} calls up, its limit is {cap}",
                         headers={"Retry-After": "5"}, limit="calls_concurrent")
    per_day = limits.get("calls_per_day")
    if per_day is not None:
        today = await calls.totals(utc_midnight())
        if today["count"] >= per_day:
            retry = max(1, int(utc_midnight() + 86400 - time.time()))
            raise ApiProblem("rate-limited", f"the organisation placed its {per_day} calls for today (UTC)",
                             headers={"Retry-After": str(retry)}, limit="calls_per_day")


def month_start(now: float | None = None) -> float:
    day = datetime.fromtimestamp(utc_midnight(now), UTC)
    return day.replace(day=1).timestamp()


def next_month(now: float | None = None) -> float:
    first = datetime.fromtimestamp(month_start(now), UTC)
    return (first + timedelta(days=32)).replace(day=1).timestamp()
