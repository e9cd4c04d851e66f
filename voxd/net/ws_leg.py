"""One websocket leg for every websocket media protocol.

The protocol is a `MediaSerializer` (voxd.net.serializers: Twilio Media Streams,
Telnyx media streaming, voxd's plain protocol); this module owns the socket: the
stream's start, the outbox writer, the read loop, mark-based playback accounting,
and the end. The call's life is `voxd.net.leg.CallLeg`'s.

What was heard (protocols with marks): the session counts bot audio as played when
voxd sends it, but the platform buffers a little before the caller hears it. voxd
sends a mark every MARK_EVERY frames and at the end of each run of bot audio; the
echoed marks say how many frames the caller has certainly heard. On barge-in the
leg reports that position (`PlaybackFinished`) so the interrupted turn's
`heard_text`, and the LLM context, hold only what the caller heard. Platforms that
never echo marks keep voxd's own accounting.

Anything that is not the protocol ends that call with end_reason `protocol_error`
and the detail in the record's metadata; a socket that closes without `stop` ends it
as `connection_lost` (the plain protocol: `caller_hangup`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from aiohttp import WSMsgType, web

from voxd.call.events import CallEvent, TurnCompleted
from voxd.call.ports import AudioFrame, EndedBy, EndReason, PlaybackFinished
from voxd.call.session import CallSession
from voxd.net.leg import CallLeg, LegEnv, Refused
from voxd.net.serializers.base import (
    BotAudio,
    CallerAudio,
    ClearOut,
    DtmfIn,
    DtmfOut,
    EndOut,
    ErrorOut,
    Malformed,
    MarkIn,
    MarkOut,
    MediaSerializer,
    OutFrame,
    ProtocolError,
    Started,
    StreamStart,
    StreamStop,
    TranscriptOut,
    TransferOut,
)
from voxd.net.twilio_rest import CallUpdater

log = logging.getLogger("voxd.ws")

FRAME_S = 0.02
MARK_EVERY = 10  # frames (200 ms) between marks during continuous bot audio
START_TIMEOUT_S = 10.0
HANGUP_DRAIN_S = 3.0
MAX_BUFFER_S = 10.0  # clock-paced inbound: caller audio buffered at most
StartCheck = Callable[[web.Request, StreamStart, str], str | None]
StartHook = Callable[["WsWire", StreamStart], None]


class WsWire:
    """One media websocket as a Wire and a TransportControl for its CallLeg."""

    def __init__(self, ws: web.WebSocketResponse, serializer: MediaSerializer) -> None:
        self.ws = ws
        self.ser = serializer
        self.session: CallSession | None = None
        self.updater: CallUpdater | None = None  # the platform's call control, when configured
        self._outbox: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self._inbox: deque[AudioFrame] = deque()
        self._max_inbox = int(MAX_BUFFER_S / FRAME_S)
        self.writer: asyncio.Task[None] | None = None
        # mark ledger: bot frames (20 ms) sent and confirmed played, counted from the call's start
        self.epoch = 0
        self.sent = 0
        self.confirmed = 0
        self.marks_echoed = 0
        self._last_mark = 0
        self._running = False
        self._echoed = asyncio.Event()
        self.hung_up = False
        self._closed_out = False

    # ------------------------------------------------------------ outbound
    def out(self, frame: OutFrame) -> None:
        msg = self.ser.serialize(frame)
        if msg is not None and not self._closed_out:
            self._outbox.put_nowait(msg)

    async def write(self) -> None:
        while (item := await self._outbox.get()) is not None:
            if self.ws.closed:
                return
            if isinstance(item, bytes):
                await self.ws.send_bytes(item)
            else:
                await self.ws.send_str(item)

    async def close_out(self, last: OutFrame | None = None, code: int = 1000) -> None:
        """Send `last`, let the writer drain (2 s at most), close the socket."""
        if last is not None:
            self.out(last)
        self._closed_out = True
        self._outbox.put_nowait(None)
        if self.writer is not None:
            try:
                await asyncio.wait_for(self.writer, 2.0)
            except (TimeoutError, Exception):
                self.writer.cancel()
        await self.ws.close(code=code)

    def _mark(self) -> None:
        self._last_mark = self.sent
        self.out(MarkOut(f"{self.epoch}.{self.sent}"))

    # ------------------------------------------------------------ Wire
    def receive(self) -> AudioFrame | None:
        return self._inbox.popleft() if self._inbox else None

    def buffer(self, frames: list[AudioFrame]) -> None:
        room = self._max_inbox - len(self._inbox)
        self._inbox.extend(frames[:max(room, 0)])  # drop what overflows rather than grow without bound

    @property
    def holding(self) -> bool:
        return self.hung_up  # hanging up: nothing new for the caller

    def send(self, frame: AudioFrame | None) -> None:
        if self.hung_up:
            return
        if frame is not None:
            self.sent += 1
            self._running = True
            self.out(BotAudio(frame))
            if self.ser.marks and self.sent - self._last_mark >= MARK_EVERY:
                self._mark()
        elif self._running:  # end of a run of bot audio (a segment, a turn, or a pause)
            self._running = False
            if self.ser.marks:
                self._mark()

    def clear(self) -> PlaybackFinished | None:
        report = PlaybackFinished(self.confirmed * FRAME_S, interrupted=True) if self.marks_echoed else None
        self.out(ClearOut())
        self.epoch += 1
        self.confirmed = self._last_mark = self.sent
        self._running = False
        return report

    def release(self) -> None:
        s = self.session
        if s is not None and self.ser.marks:
            s.record.metadata.update(marks_echoed=self.marks_echoed, frames_taken_back=s.frames_taken_back,
                                     gap_frames=getattr(self.ser, "gap_frames", 0))

    def on_mark(self, name: str) -> None:
        epoch, _, count = name.partition(".")
        if epoch != str(self.epoch) or not count.isdigit():
            return  # from before a clear: platforms echo dropped marks too, they say nothing was played
        self.marks_echoed += 1
        self.confirmed = max(self.confirmed, min(int(count), self.sent))
        self._echoed.set()

    def on_event(self, event: CallEvent) -> None:
        if isinstance(event, TurnCompleted):
            self.out(TranscriptOut(event.turn))

    # ------------------------------------------------------------ TransportControl
    async def hangup(self) -> None:
        """Close the stream (which ends a platform's stream call) once the far end has
        played what voxd sent (the echo of a last mark; at most HANGUP_DRAIN_S)."""
        if self.hung_up:
            return
        self.hung_up = True
        if self.marks_echoed and self.confirmed < self.sent:
            self._mark()
            target = self.sent
            try:
                async with asyncio.timeout(HANGUP_DRAIN_S):
                    while self.confirmed < target and not self.ws.closed:
                        self._echoed.clear()
                        await self._echoed.wait()
            except TimeoutError:
                pass
        reason = self.session.record.end_reason if self.session is not None else None
        await self.close_out(EndOut(reason or "agent_hangup"))

    @property
    def cannot_do(self) -> frozenset[str]:
        """Functions this leg cannot carry out: not offered to the LLM (voxd.call.toolctx)."""
        cannot = set()
        if self.updater is None and not self.ser.can_send_transfer:
            cannot.add("transfer_call")
        if not self.ser.can_send_dtmf:
            cannot.add("send_dtmf")
        return frozenset(cannot)

    async def transfer(self, target: str) -> bool:
        if self.updater is not None:  # the platform's call control (Twilio's REST call update)
            if not await self.updater.dial(target):
                return False
            if self.session is not None:  # the platform stops the stream next and dials
                self.session.record.end_reason = "transferred"
                self.session.record.ended_by = "agent"
            return True
        if self.ser.can_send_transfer:  # the client's telephony carries it out
            self.out(TransferOut(target))
            return True
        return False  # a media stream alone cannot redirect the call

    async def send_dtmf(self, digits: str) -> None:
        if self.ser.can_send_dtmf:
            self.out(DtmfOut(digits))
        else:
            log.info("%s stream: the protocol cannot send DTMF (%s dropped)", self.ser.transport_name, digits)

    # ------------------------------------------------------------ inbound
    async def await_start(self) -> StreamStart | None:
        """Read frames until the protocol's start; None if the socket closed (or stopped) first."""
        async with asyncio.timeout(START_TIMEOUT_S):
            async for msg in self.ws:
                frame = self._deserialize(msg.type, msg.data)
                if frame is _CLOSING or isinstance(frame, StreamStop):
                    return None
                if isinstance(frame, StreamStart):
                    return frame
        return None

    def _deserialize(self, kind: WSMsgType, data: object) -> object:
        if kind in (WSMsgType.TEXT, WSMsgType.BINARY):
            return self.ser.deserialize(data)  # type: ignore[arg-type]
        if kind == WSMsgType.ERROR:
            raise ConnectionError(f"websocket error: {data}")
        return _CLOSING


_CLOSING = object()


async def serve_stream(
    request: web.Request,
    env: LegEnv,
    ser: MediaSerializer,
    *,
    start: StreamStart | None = None,
    check: StartCheck | None = None,
    agent: str | None = None,
    authenticated: bool = True,
    on_start: StartHook | None = None,
    org: str | None = None,
) -> web.StreamResponse:
    """Run one media websocket from upgrade to close. `start`: the stream's identity
    when the URL carries it (the plain protocol); else the protocol's own start frame.
    `check(request, start, agent)` may refuse the stream (a problem string). `agent`: the
    one a credential named (it wins over the stream's); `authenticated`: whether anyone
    vouched for the caller (admission's unauthenticated caps, by source address); `org`:
    the organisation the credential is of (its agents only; None: the default's).
    `on_start(wire, start)`: the platform's part once the stream is accepted (call control)."""
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=1 << 20)
    await ws.prepare(request)
    wire = WsWire(ws, ser)
    if start is None:
        try:
            start = await wire.await_start()
        except (ProtocolError, ConnectionError, TimeoutError) as e:
            log.warning("%s stream refused before start: %s", ser.transport_name, e)
            await ws.close(code=1008 if isinstance(e, ProtocolError) else 1000, message=str(e)[:120].encode())
            return ws
        if start is None:
            return ws
    problem: str | None = None
    agent_name = agent or start.agent or request.query.get("agent")
    try:
        chosen = env.agent(agent_name, org=org)
    except Refused as e:
        problem = e.message
    else:
        problem = start.problem or (check(request, start, chosen.name) if check is not None else None)
    params = dict(start.parameters)
    params.pop("token", None)  # never stored with the call
    if problem:
        log.warning("%s stream refused: %s", ser.transport_name, problem)
        await ws.close(code=1008, message=problem[:120].encode())
        return ws
    if on_start is not None:
        on_start(wire, start)
    meta = dict(start.metadata)
    if ser.sends_start:
        meta["custom_parameters"] = params
    # the agent's inbound lookup, before the stream is answered: variables, another agent, or no
    outcome = await env.inbound(chosen, transport=ser.transport_name, caller=_number(start.from_uri),
                                called=_number(start.to_uri), from_uri=start.from_uri, to_uri=start.to_uri)
    if outcome.reject is not None:
        env.reject(outcome, ser.transport_name, from_uri=start.from_uri, to_uri=start.to_uri, metadata=meta)
        await ws.close(code=1008, message=f"rejected: {outcome.reject.reason}"[:120].encode())
        return ws
    if outcome.info:
        meta["inbound_lookup"] = outcome.info
    chosen = outcome.agent
    leg = CallLeg(env, ser.transport_name, wire, wire, codec=ser.codec, inbound=ser.inbound, outbound="clock")
    try:
        session = leg.admit(chosen, from_uri=start.from_uri, to_uri=start.to_uri, metadata=meta, listener=wire.on_event,
                            source=request.remote or "", authenticated=authenticated, variables=outcome.variables)
    except Refused as e:
        busy = ser.serialize(ErrorOut(f"busy: {e.message}"))
        if busy is not None:
            await ws.send_str(busy) if isinstance(busy, str) else await ws.send_bytes(busy)
            await ws.close()
        else:
            await ws.close(code=1013, message=f"busy: {e.message}".encode())
        return ws
    wire.session = session
    ser.started(start)
    wire.out(Started(session.record.id, chosen.name))
    wire.writer = asyncio.create_task(wire.write())
    await leg.answered()
    reason: EndReason = "connection_lost" if ser.sends_start else "caller_hangup"
    by: EndedBy = "system" if ser.sends_start else "caller"
    error: str | None = None
    try:
        async for msg in ws:
            frame = wire._deserialize(msg.type, msg.data)
            if frame is _CLOSING:
                break
            if isinstance(frame, CallerAudio):
                if ser.inbound == "clock":
                    wire.buffer(frame.frames)
                else:
                    for f in frame.frames:
                        leg.feed(f)
            elif isinstance(frame, DtmfIn):
                leg.dtmf(frame.digit, ser.transport_name)
            elif isinstance(frame, MarkIn):
                wire.on_mark(frame.name)
            elif isinstance(frame, StreamStop):
                reason, by = "caller_hangup", "caller"
                break
            elif isinstance(frame, Malformed):
                wire.out(ErrorOut(frame.message))
            if session.closed:
                break
    except ProtocolError as e:
        reason, by, error = "protocol_error", "system", str(e)
        log.warning("%s call %s: %s", ser.transport_name, session.record.id, e)
    except Exception as e:
        reason, by, error = "transport_error", "system", f"{type(e).__name__}: {e}"
        log.warning("%s call %s failed: %s", ser.transport_name, session.record.id, e)
    finally:
        if wire.hung_up:  # we closed the socket for whoever hung up; they close the session
            reason, by = "agent_hangup", "agent"
            try:
                await asyncio.wait_for(session.ended.wait(), 5.0)
            except TimeoutError:
                pass
        if reason == "connection_lost" and error is None:
            error = "websocket closed without stop"
        await leg.end(reason, by, error=error)
        await wire.close_out(EndOut(session.record.end_reason or reason), code=1008 if reason == "protocol_error" else 1000)
    return ws


def _number(uri: str) -> str:
    """The user part of a SIP URI (``sip:+1555@host`` -> ``+1555``), else the text as given."""
    if uri.startswith(("sip:", "sips:", "tel:")):
        rest = uri.split(":", 1)[1]
        return rest.split("@", 1)[0].split(";", 1)[0]
    return uri
