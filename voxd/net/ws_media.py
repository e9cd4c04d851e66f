"""Websocket media for integrators: voxd's plain protocol, and Telnyx media streaming.

    GET /media/voxd?agent=<name>&sample_rate=16000     (websocket upgrade)
    GET /media/telnyx[?agent=<name>]                    Telnyx media streaming (bidirectional, rtp mode)

The plain protocol, client to voxd:
  binary frames                 caller audio, 16-bit little-endian mono PCM at sample_rate, any length
  {"type": "dtmf", "digit": "5"}
  {"type": "stop"}              hang up
voxd to client:
  {"type": "started", "call_id": "...", "agent": "...", "sample_rate": 16000}
  binary frames                 bot audio, 20 ms each, paced in real time
  {"type": "clear"}             barge-in: drop any bot audio you buffered
  {"type": "transcript", "speaker": "caller"|"bot", "text": "...", "interrupted": false}
  {"type": "dtmf_out", "digits": "..."}
  {"type": "end", "reason": "..."}
  {"type": "error", "message": "..."}

sample_rate is one of 8000, 16000, 24000, 48000 (default 16000). Caller audio is
consumed at real-time pace (a 20 ms frame per tick) from a bounded buffer.

Both protocols are serializers (voxd.net.serializers) over the one websocket leg
(voxd.net.ws_leg). Telnyx's protocol: voxd.net.serializers.telnyx; point a Call
Control `stream_url` here with `stream_bidirectional_mode: rtp` and codec PCMU or PCMA.
Both take a credential (voxd.net.media_auth: an API key with calls:write or a web
token, `Authorization: Bearer` or `?token=` in the stream URL), or none on a listener
opened to anonymous callers (`http.media_unauthenticated`, loopback only).
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from voxd.agents.catalog import AgentCatalog
from voxd.call.manager import CallManager
from voxd.net.clock import MediaClock
from voxd.net.leg import LegEnv, Refused
from voxd.net.media_auth import MediaAuth
from voxd.net.serializers.base import StreamStart
from voxd.net.serializers.plain import PlainSerializer
from voxd.net.serializers.telnyx import TelnyxSerializer
from voxd.net.ws_leg import serve_stream

RATES = (8000, 16000, 24000, 48000)
TELNYX_PATH = "/media/telnyx"


def setup_ws_media(
    app: web.Application,
    agents: AgentCatalog,
    calls: CallManager,
    clock: MediaClock,
    accepting: Callable[[], bool] = lambda: True,
    auth: MediaAuth | None = None,
) -> None:
    """`auth` decides who may open a call (default: a credential is required), on both routes."""
    env = LegEnv(calls, clock, agents, accepting)
    media_auth = auth or MediaAuth()

    async def plain(request: web.Request) -> web.StreamResponse:
        try:
            env.check_accepting()
        except Refused as e:
            raise web.HTTPServiceUnavailable(text=e.message, headers={"Retry-After": "30"}) from None
        try:
            rate = int(request.query.get("sample_rate", "16000"))
        except ValueError:
            rate = 0
        if rate not in RATES:
            raise web.HTTPBadRequest(text=f"sample_rate must be one of {RATES}")
        grant = await media_auth.authorize(request, request.query.get("agent") or None)
        try:
            agent = env.agent(grant.agent, org=grant.org)
        except Refused as e:
            raise web.HTTPNotFound(text=e.message) from None
        start = StreamStart(agent=agent.name, from_uri=request.remote or "", metadata={"sample_rate": rate})
        return await serve_stream(request, env, PlainSerializer(rate), start=start, authenticated=grant.authenticated,
                                  org=grant.org)

    async def telnyx(request: web.Request) -> web.StreamResponse:
        try:
            env.check_accepting()
        except Refused as e:
            raise web.HTTPServiceUnavailable(text=e.message, headers={"Retry-After": "30"}) from None
        grant = await media_auth.authorize(request, request.query.get("agent") or None)
        return await serve_stream(request, env, TelnyxSerializer(), agent=grant.agent,
                                  authenticated=grant.authenticated, org=grant.org)

    app.router.add_get("/media/voxd", plain)
    app.router.add_get(TELNYX_PATH, telnyx)
