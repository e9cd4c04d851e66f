"""Who may start a call now: the daemon-wide cap, each transport's share of it, and
the caps on calls nobody authenticated.

One transport must not starve the others (300 websocket connections from one address
used to take every slot, and a real SIP caller then got 503), and a call anyone can
start without a credential costs CPU like any other: those are capped in total and
per source address. Pure bookkeeping: the call manager asks before it builds a
session and tells when the call is gone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

OTHER_SHARE = 0.5  # a transport the configured shares do not name


class AdmissionRefused(Exception):
    """The call cannot start now; the message says which limit."""


@dataclass(frozen=True)
class _Slot:
    transport: str
    source: str
    authenticated: bool


class Admission:
    def __init__(
        self,
        max_calls: int,
        shares: Mapping[str, float] | None = None,
        unauthenticated_max_calls: int = 20,
        unauthenticated_per_source: int = 4,
    ) -> None:
        self.configure(max_calls, shares, unauthenticated_max_calls, unauthenticated_per_source)
        self._slots: dict[str, _Slot] = {}
        self._per_transport: Counter[str] = Counter()
        self._unauth_per_source: Counter[str] = Counter()
        self._unauth = 0
        self.refused: Counter[str] = Counter()  # by limit, for /metrics

    def configure(
        self,
        max_calls: int,
        shares: Mapping[str, float] | None = None,
        unauthenticated_max_calls: int = 20,
        unauthenticated_per_source: int = 4,
    ) -> None:
        """Set the limits (at start and on reload; calls in progress keep their slots).
        `shares` None: no transport is capped below `max_calls`."""
        self.max_calls = max_calls
        self.shares = None if shares is None else dict(shares)
        self.unauth_total = unauthenticated_max_calls
        self.unauth_per_source = unauthenticated_per_source

    def transport_cap(self, transport: str) -> int:
        if self.shares is None:
            return self.max_calls
        share = self.shares.get(transport, OTHER_SHARE)
        return max(1, int(self.max_calls * share)) if share > 0 else 0

    def check(self, transport: str, source: str = "", authenticated: bool = True) -> None:
        """Raise AdmissionRefused if a call on `transport` from `source` may not start."""
        if len(self._slots) >= self.max_calls:
            self._refuse("total", f"{self.max_calls} calls active")
        cap = self.transport_cap(transport)
        if self._per_transport[transport] >= cap:
            self._refuse("transport", f"{transport} holds its share of calls ({cap} of {self.max_calls})")
        if not authenticated:
            if self._unauth >= self.unauth_total:
                self._refuse("unauthenticated", f"{self.unauth_total} unauthenticated calls active")
            if source and self._unauth_per_source[source] >= self.unauth_per_source:
                self._refuse("unauthenticated_source",
                             f"{source} holds {self.unauth_per_source} unauthenticated calls")

    def admit(self, call_id: str, transport: str, source: str = "", authenticated: bool = True) -> None:
        self.check(transport, source, authenticated)
        self._slots[call_id] = _Slot(transport, source, authenticated)
        self._per_transport[transport] += 1
        if not authenticated:
            self._unauth += 1
            if source:
                self._unauth_per_source[source] += 1

    def release(self, call_id: str) -> None:
        slot = self._slots.pop(call_id, None)
        if slot is None:
            return
        self._per_transport[slot.transport] -= 1
        if not slot.authenticated:
            self._unauth -= 1
            if slot.source:
                self._unauth_per_source[slot.source] -= 1
                if self._unauth_per_source[slot.source] <= 0:
                    del self._unauth_per_source[slot.source]

    def in_use(self, transport: str) -> int:
        return self._per_transport[transport]

    def _refuse(self, limit: str, why: str) -> None:
        self.refused[limit] += 1
        raise AdmissionRefused(why)
