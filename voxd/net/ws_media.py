"""The plain voxd websocket media protocol, for integrators with their own telephony
(and the daemon's local transport).

    GET /media/voxd?agent=<name>&sample_rate=16000     (websocket upgrade)

Client to voxd:
  binary frames                 caller audio, 16-bit little-endian mono PCM at sample_rate, any length
  {"type": "dtmf", "digit": "5"}
  {"type": "stop"}              hang up
voxd to client:
  {"type": "started", "call_id": "...", "agent": "...", "sample_rate": 16000}
  binary frames                 bot audio, 20 ms each, paced in real time
  {"type": "clear"}             barge-in: drop any bot audio you buffered
  {"type": "transcript", "speaker": "caller"|"bot", "text": "...", "interrupted": false}
  {"type": "end", "reason": "..."}
  {"type": "error", "message": "..."}

sample_rate is one of 8000, 16000, 24000, 48000 (default 16000). Caller audio is
consumed at real-time pace (a 20 ms frame per tick) from a bounded buffer.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from voxd.agents.catalog import AgentCatalog
from voxd.call.events import CallEvent, TurnCompleted
from voxd.call.manager import CallLimitReached, CallManager
from voxd.call.session import CallSession
from voxd.core import boundedjson
from voxd.media.audio import FRAME_BYTES, SILENCE_FRAME, FrameSplitter, StreamResampler
from voxd.net.clock import MediaClock
from voxd.net.media_auth import MediaAuth

log = logging.getLogger("voxd.ws")

RATES = (8000, 16000, 24000, 48000)
MAX_BUFFER_S = 10.0


class WsCall:
    """Adapts one websocket to a call session (implements CallControl)."""

    transport_name = "websocket"
    carried_audio: str | None = None

    def __init__(self, ws: web.WebSocketResponse, rate: int, clock: MediaClock) -> None:
        self.ws = ws
        self.rate = rate
        self.clock = clock
        self.session: CallSession | None = None
        self._in_rs = StreamResampler(rate, 16000)
        self._out_rs = StreamResampler(16000, rate)
        self._split = FrameSplitter(FRAME_BYTES)
        self._inbox: list[bytes] = []
        self._max_frames = int(MAX_BUFFER_S / 0.02)
        self._outbox: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self.hung_up = False

    # CallControl
    async def hangup(self) -> None:
        self.hung_up = True
        self._outbox.put_nowait(None)

    async def transfer(self, target: str) -> bool:
        self.send_json({"type": "transfer", "target": target})  # the integrator's telephony carries it out
        return True

    async def send_dtmf(self, digits: str) -> None:
        self.send_json({"type": "dtmf_out", "digits": digits})

    def clear_output(self) -> None:
        self.send_json({"type": "clear"})

    # plumbing
    def send_json(self, obj: dict[str, Any]) -> None:
        self._outbox.put_nowait(json.dumps(obj))

    def on_audio(self, data: bytes) -> None:
        if len(data) % 2:
            data = data[:-1]
        frames = self._split.push(self._in_rs.process(data))
        room = self._max_frames - len(self._inbox)
        if len(frames) > room:
            frames = frames[:room]  # drop what overflows rather than grow without bound
        self._inbox += frames

    def tick(self) -> None:
        s = self.session
        if s is None or s.closed:
            return
        s.feed_audio(self._inbox.pop(0) if self._inbox else SILENCE_FRAME)
        out = s.next_frame()
        if out is not None:
            self._outbox.put_nowait(self._out_rs.process(out))

    def on_event(self, event: CallEvent) -> None:
        if isinstance(event, TurnCompleted):
            t = event.turn
            self.send_json({"type": "transcript", "speaker": t.speaker, "text": t.heard_text if t.interrupted else t.text,
                            "interrupted": t.interrupted})

    async def writer(self) -> None:
        while (item := await self._outbox.get()) is not None:
            if self.ws.closed:
                return
            if isinstance(item, bytes):
                if item:
                    await self.ws.send_bytes(item)
            else:
                await self.ws.send_str(item)


def setup_ws_media(
    app: web.Application,
    agents: AgentCatalog,
    calls: CallManager,
    clock: MediaClock,
    accepting: Callable[[], bool] = lambda: True,
    auth: MediaAuth | None = None,
) -> None:
    """`auth` decides who may open a call (default: a credential is required)."""
    media_auth = auth or MediaAuth()

    async def handler(request: web.Request) -> web.StreamResponse:
        if not accepting():
            raise web.HTTPServiceUnavailable(text="draining: not accepting new calls", headers={"Retry-After": "30"})
        try:
            rate = int(request.query.get("sample_rate", "16000"))
        except ValueError:
            rate = 0
        if rate not in RATES:
            raise web.HTTPBadRequest(text=f"sample_rate must be one of {RATES}")
        grant = await media_auth.authorize(request, request.query.get("agent") or None)
        name = grant.agent
        agent = agents.get(name) if name else agents.default()
        if agent is None:
            raise web.HTTPNotFound(text=f"no agent {name!r}" if name else "no agents loaded")
        ws = web.WebSocketResponse(heartbeat=20, max_msg_size=1 << 20)
        await ws.prepare(request)
        call = WsCall(ws, rate, clock)
        try:
            session = calls.create(
                agent, call, from_uri=request.remote or "", metadata={"sample_rate": rate}, listener=call.on_event,
                source=request.remote or "", authenticated=grant.authenticated,
            )
        except CallLimitReached as e:
            await ws.send_str(json.dumps({"type": "error", "message": f"busy: {e}"}))
            await ws.close()
            return ws
        call.session = session
        call.send_json({"type": "started", "call_id": session.record.id, "agent": agent.name, "sample_rate": rate})
        writer = asyncio.create_task(call.writer())
        await session.start()
        handle = clock.register(call.tick)
        reason, by = "caller_hangup", "caller"
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    call.on_audio(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    try:
                        obj = boundedjson.loads(msg.data)
                        kind = obj.get("type") if isinstance(obj, dict) else None
                    except ValueError:  # invalid, or nested beyond any media message
                        kind = None
                    if kind == "dtmf" and isinstance(obj.get("digit"), str):
                        session.feed_dtmf(obj["digit"][:1], source="websocket")
                    elif kind == "stop":
                        break
                    else:
                        call.send_json({"type": "error", "message": "unknown or malformed message"})
                if session.closed:
                    break
        except Exception as e:
            reason, by = "transport_error", "system"
            log.warning("websocket call %s failed: %s", session.record.id, e)
        finally:
            clock.unregister(handle)
            if not session.closed:
                await session.close(reason, ended_by=by)
            call.send_json({"type": "end", "reason": session.record.end_reason or reason})
            call._outbox.put_nowait(None)
            try:
                await asyncio.wait_for(writer, 2.0)
            except (TimeoutError, Exception):
                writer.cancel()
            await ws.close()
        return ws

    app.router.add_get("/media/voxd", handler)

