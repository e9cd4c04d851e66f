"""An INVITE to an organisation's number held to its calls at once and per day
(voxd/call/org_gate.py): over either, ``486 Busy Here`` with ``Retry-After``."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from voxd.agents.loader import LoadedAgent
from voxd.proto.sdp import SessionDescription
from voxd.proto.sip import events as ev

if TYPE_CHECKING:
    from voxd.net.sip import SipEndpoint

log = logging.getLogger("voxd.sip")


def waiting(tasks: dict[str, asyncio.Task[None]], call_id: str, work: Coroutine[Any, Any, None]) -> None:
    """An INVITE answered after ``work``, in ``tasks`` meanwhile (the endpoint's INVITEs waiting:
    they count against max_calls, a CANCEL cancels them); ``work`` may hand over to another."""
    task = tasks[call_id] = asyncio.ensure_future(work)
    task.add_done_callback(lambda t: tasks.pop(call_id) if tasks.get(call_id) is t else None)


async def gated(endpoint: SipEndpoint, e: ev.IncomingCall, agent: LoadedAgent, offer: SessionDescription) -> None:
    """Refuse the INVITE if the organisation is at a limit, else route it on (lookup or answer)."""
    gate = endpoint.calls.org_gate
    assert endpoint.ua is not None and gate is not None
    pending = sum(1 for org in endpoint.lookup_orgs.values() if org == agent.org)  # admitted, in their lookup
    refusal = await gate.check(agent.org, pending)
    # no await from here on: the calls counted are still the calls up when this one is admitted
    now = time.monotonic()
    try:
        if refusal is not None:
            log.info("SIP INVITE %s to organisation %s refused (%d): %s", e.call_id, agent.org, refusal.status,
                     refusal.detail)
            endpoint.ua.reject(e.call_id, refusal.status, now, retry_after=refusal.retry_after, reason="Busy Here")
        else:
            endpoint.route(e, agent, offer, now)
    except KeyError:  # the caller gave up meanwhile
        return
    finally:
        endpoint.flush()
