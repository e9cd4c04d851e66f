"""An organisation's ``calls_concurrent`` and ``calls_per_day`` (``voxd orgs limits``) held
for the calls it is called on, as the API holds them for the calls it places.

An inbound call over either limit is refused with ``486 Busy Here`` (RFC 3261 §21.4.7: the
callee was reached but takes no more calls), with a ``Retry-After`` of when it may: a few
seconds for calls at once, the next UTC midnight for calls per day. Not ``503``: that says
the *server* is unavailable, and a carrier or proxy that gets it fails over or holds every
call to this daemon for the Retry-After (RFC 3263 §4.3; voxd's own trunks do), which
would starve the other organisations' numbers for one organisation's limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from voxd.call.manager import CallManager
from voxd.call.org_limits import OrgLimitCache, utc_midnight
from voxd.store.repos import OrgRepo

BUSY_RETRY_S = 5  # calls at once: a slot frees when any of the organisation's calls ends


@dataclass(frozen=True)
class OrgRefusal:
    limit: str  # calls_concurrent | calls_per_day
    detail: str
    retry_after: int
    status: int = 486


class OrgCallGate:
    """Whether organisation ``org`` may take one more call now. Its limits are cached for
    seconds (like the API's); the calls it has up are counted from the call manager after the
    last store read, so a caller that admits the call without awaiting in between never lets
    a burst through over ``calls_concurrent``."""

    def __init__(self, orgs: Callable[[], OrgRepo], calls: CallManager, cache: OrgLimitCache | None = None) -> None:
        self.orgs, self.calls = orgs, calls
        self.cache = cache or OrgLimitCache()
        self.refused: dict[str, int] = {}  # per organisation, since start

    async def check(self, org: str, pending: int = 0) -> OrgRefusal | None:
        """None when the call may go on; ``pending``: calls of ``org`` admitted, not up yet."""
        limits = await self.cache.get(self.orgs(), org)
        refusal = None
        per_day = limits.get("calls_per_day")
        repo = self.calls.repo_of(org)
        if per_day is not None and repo is not None:
            today = await repo.totals(utc_midnight())
            if today["count"] >= per_day:
                refusal = OrgRefusal("calls_per_day", f"organisation {org!r} had its {per_day} calls for today (UTC)",
                                     max(1, int(utc_midnight() + 86400 - time.time())))
        cap = limits.get("calls_concurrent")
        if refusal is None and cap is not None:
            up = sum(1 for s in self.calls.active.values() if s.record.org == org) + pending
            if up >= cap:
                refusal = OrgRefusal("calls_concurrent", f"organisation {org!r} has {up} calls up, its limit is {cap}",
                                     BUSY_RETRY_S)
        if refusal is not None:
            self.refused[org] = self.refused.get(org, 0) + 1
        return refusal
