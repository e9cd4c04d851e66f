"""``GET /api/v1/calls/{id}/sip-trace``: every SIP message of a SIP call (both directions,
UTC timestamps, credentials masked) as text, or as a pcap with synthesized UDP/IP
headers (``?format=pcap`` or ``Accept: application/vnd.tcpdump.pcap``) for Wireshark.
The daemon provides the reader under `SIP_TRACES` (voxd/net/sip_trace.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field

from voxd.api.models import CALL_ID_RE
from voxd.api.routing import Ctx, Reply, RouteTable
from voxd.core.errors import NotFound

# (call record id, SIP Call-ID, "text" | "pcap") -> the rendered trace, None when none is kept
TraceReader = Callable[[str, str | None, str], Awaitable[bytes | None]]
SIP_TRACES: web.AppKey[TraceReader] = web.AppKey("voxd_sip_traces")
PCAP = "application/vnd.tcpdump.pcap"

routes = RouteTable(params={"call_id": CALL_ID_RE})


class TraceQuery(BaseModel):
    format: Literal["text", "pcap"] | None = Field(
        None, description="text (default) or pcap; without it, an Accept of application/vnd.tcpdump.pcap picks pcap.")


@routes.route("GET", "/api/v1/calls/{call_id}/sip-trace", scope="calls:read", tag="calls", query=TraceQuery,
              summary="The SIP messages of a call (text or pcap)", media_types=("text/plain", PCAP),
              problems=("not-found",),
              description="Every SIP message of the call as it crossed the wire, both directions, with UTC "
              "timestamps and addresses; the `response` of Authorization/Proxy-Authorization is masked. Kept "
              "`sip.trace.retention_hours` after the call. `?format=pcap` (or `Accept: " + PCAP + "`) gives a "
              "libpcap file, one synthesized UDP datagram per message.")
async def sip_trace(ctx: Ctx) -> Reply:
    call_id = ctx.path["call_id"]
    call = await ctx.services.calls.get(call_id)  # this organisation's calls only
    if call is None:
        call = next((c for c in await ctx.services.deps.calls.active() if c.get("id") == call_id), None)
    if call is None:
        raise NotFound(f"no call {call_id!r}")
    q: TraceQuery = ctx.query
    fmt = q.format or ("pcap" if PCAP in ctx.request.headers.get("Accept", "") else "text")
    reader = ctx.request.app.get(SIP_TRACES)
    sip_call_id = (call.get("metadata") or {}).get("sip_call_id")
    trace = await reader(call_id, sip_call_id if isinstance(sip_call_id, str) else None, fmt) if reader else None
    if trace is None:
        raise NotFound(f"no SIP trace kept for call {call_id!r}")
    if fmt == "pcap":
        return Reply(raw=trace, content_type=PCAP,
                     headers={"Content-Disposition": f'attachment; filename="{call_id}.pcap"'})
    return Reply(raw=trace, content_type="text/plain")
