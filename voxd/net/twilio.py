"""Twilio Media Streams: telephony platforms that stream a call over a websocket.

    POST /twiml/<agent>     TwiML <Connect><Stream> pointing at the websocket below
    GET  /media/twilio      (websocket) the Media Streams protocol

Platform to voxd (JSON text frames): `connected`, `start` (streamSid, callSid,
customParameters; `agent` there picks the agent), `media` (base64 mu-law 8 kHz),
`dtmf`, `mark` (echoed once the audio queued before it has played), `stop`.
voxd to platform: `media` (one 20 ms frame per media-clock tick), `mark`, `clear`.

What was heard: the session counts bot audio as played when voxd sends it, but the
platform buffers a little before the caller hears it. voxd sends a mark every
MARK_EVERY frames and at the end of each run of bot audio; the echoed marks say
how many frames the caller has certainly heard. On barge-in the frames sent but not
yet confirmed are taken back from the session's playout before it computes the
interrupted turn's `heard_text`, so the transcript and the LLM context hold only
what the caller heard. Platforms that never echo marks keep voxd's own accounting.

Anything that is not the protocol (unparseable JSON, a binary frame, a bad media
payload) ends that call with end_reason `protocol_error` and the detail in the call
record's metadata; a socket that closes without `stop` ends it as `connection_lost`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np
from aiohttp import WSMsgType, web

from voxd.agents.catalog import AgentCatalog
from voxd.call.events import EngineError
from voxd.call.manager import CallLimitReached, CallManager
from voxd.call.session import CallSession
from voxd.config import TwilioConfig
from voxd.core import boundedjson
from voxd.core.egress import EgressPolicy
from voxd.media.audio import FRAME_BYTES, SILENCE_FRAME, FrameSplitter, StreamResampler
from voxd.media.playout import Playout
from voxd.net.clock import MediaClock
from voxd.net.twilio_rest import DEFAULT_API, CallUpdater
from voxd.net.webtoken import WEB_TOKENS_KEY, InvalidToken, twilio_signature
from voxd.proto.g711 import ulaw_decode, ulaw_encode

log = logging.getLogger("voxd.twilio")

PATH = "/media/twilio"
MARK_EVERY = 10  # frames (200 ms) between marks during continuous bot audio
START_TIMEOUT_S = 10.0
HANGUP_DRAIN_S = 3.0
# Caller audio drives the session's clock: the platform sends 20 ms of audio every 20 ms
# (silence included), so each frame is fed as it arrives; no silence is invented when a
# frame is merely late, which would split the caller's words. A timestamp jump (audio the
# platform never got) is filled with silence, up to MAX_GAP_FRAMES. If the platform sends
# nothing for STALL_S, the media clock feeds silence so the call's timers keep running.
STALL_S = 0.2
MAX_GAP_FRAMES = 50
OUT_FRAME_BYTES = 320  # 20 ms of 8 kHz PCM16 -> 160 mu-law bytes per media message
PUBLIC_URL_ENV = "VOXD_PUBLIC_URL"  # overrides http.public_url
STREAM_TOKEN_TTL_S = 60.0


@dataclass(frozen=True)
class TwilioSettings:
    """With the account's auth token set, /twiml checks X-Twilio-Signature and puts a one-use
    web token in the stream's parameters; /media/twilio refuses streams without one.
    public_url: scheme://host as Twilio reaches us (behind a proxy); "" = from the request."""

    auth_token: str = field(default="", repr=False)
    public_url: str = ""
    api_base_url: str = DEFAULT_API  # Twilio's REST API (transfer_call's call update)
    policy: EgressPolicy | None = None  # where that update may go (None: public hosts only)

    @classmethod
    def from_config(cls, cfg: TwilioConfig | None = None, public_url: str | None = None,
                    policy: EgressPolicy | None = None) -> TwilioSettings:
        cfg = cfg or TwilioConfig()
        base = os.environ.get(PUBLIC_URL_ENV, "") or public_url or ""
        return cls(auth_token=cfg.auth_token(), public_url=base.rstrip("/"), api_base_url=cfg.api_base_url,
                   policy=policy)


class ProtocolError(Exception):
    """The platform sent something that is not the Media Streams protocol."""


def publish_transport_error(calls: CallManager, session: CallSession, message: str, **detail: Any) -> None:
    """Tell the call's observers (webhooks `error.occurred`, metrics) that its transport failed.

    An EngineError with role "transport", handed to the manager's listeners directly:
    the session has no public way to emit one for its transport."""
    event = EngineError(session.record, "transport", message, {"transport": session.record.transport, **detail})
    for fn in list(calls.listeners):
        try:
            fn(event)
        except Exception:
            log.exception("call event listener failed")


class HeardPlayout(Playout):
    """The session's playout, able to take back audio the platform never played."""

    def unplay(self, nbytes: int) -> int:
        """Mark the last `nbytes` of played audio (this reply) as unheard; returns bytes taken back."""
        left = nbytes
        for seg in reversed(self._done + list(self._queue)):
            if left <= 0:
                break
            take = min(seg.played_bytes, left)
            seg.played_bytes -= take
            left -= take
        return nbytes - left


class TwilioCall:
    """Adapts one Media Streams websocket to a call session (implements CallControl)."""

    transport_name = "twilio"
    carried_audio: str | None = "mulaw"  # Media Streams carry 8 kHz mu-law

    def __init__(self, ws: web.WebSocketResponse, clock: MediaClock) -> None:
        self.ws = ws
        self.clock = clock
        self.session: CallSession | None = None
        self.playout = HeardPlayout()
        self.stream_sid = ""
        self._in_rs = StreamResampler(8000, 16000)
        self._in_split = FrameSplitter(FRAME_BYTES)
        self._in_mulaw = bytearray()  # caller mu-law not yet paired with a frame
        self._next_ts: int | None = None  # media.timestamp (ms) expected next
        self.last_media = 0.0  # loop time of the last caller frame
        self.gap_frames = 0
        self._out_rs = StreamResampler(16000, 8000)
        self._out_split = FrameSplitter(OUT_FRAME_BYTES)
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue()
        # mark ledger: bot frames (16 kHz, 20 ms) sent and confirmed played in this epoch
        self.epoch = 0
        self.sent = 0
        self.confirmed = 0
        self.marks_echoed = 0
        self.frames_taken_back = 0
        self._last_mark = 0
        self._running = False
        self._echoed = asyncio.Event()
        self.hung_up = False
        self.updater: CallUpdater | None = None  # Twilio's REST API for this call, with the auth token
        # functions this leg cannot carry out (voxd.call.toolctx): transfer needs the REST API
        self.cannot_do: frozenset[str] = frozenset({"transfer_call", "send_dtmf"})

    # CallControl
    async def hangup(self) -> None:
        """Close the stream, which ends a <Connect><Stream> call, once the platform has
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
        self._outbox.put_nowait(None)
        await self.ws.close()

    async def transfer(self, target: str) -> bool:
        """Update the call with <Dial> TwiML; Twilio then stops the stream and dials."""
        if self.updater is None or not await self.updater.dial(target):
            return False
        if self.session is not None:
            self.session.record.end_reason = "transferred"
            self.session.record.ended_by = "agent"
        return True

    async def send_dtmf(self, digits: str) -> None:
        log.info("twilio call %s: Media Streams cannot send DTMF (%s dropped)", self.stream_sid, digits)

    def clear_output(self) -> None:
        """Barge-in: take back what the platform has not played, and tell it to drop its buffer."""
        if self.marks_echoed:
            unheard = max(0, self.sent - self.confirmed)
            self.frames_taken_back += self.playout.unplay(unheard * FRAME_BYTES) // FRAME_BYTES
        self._send({"event": "clear", "streamSid": self.stream_sid})
        self.epoch += 1
        self.confirmed = self._last_mark = self.sent
        self._running = False
        self._out_rs = StreamResampler(16000, 8000)
        self._out_split = FrameSplitter(OUT_FRAME_BYTES)

    # inbound
    def on_media(self, payload: Any, timestamp: Any, now: float) -> None:
        if not isinstance(payload, str):
            raise ProtocolError("media.payload is not a string")
        try:
            ulaw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as e:
            raise ProtocolError(f"media.payload is not base64: {e}") from None
        s = self.session
        if s is None or s.closed:
            return
        try:
            ts: int | None = int(timestamp)
        except (TypeError, ValueError):
            ts = None
        if ts is not None and self._next_ts is not None and ts > self._next_ts + 10:
            gap = min((ts - self._next_ts) // 20, MAX_GAP_FRAMES)
            self.gap_frames += gap
            for _ in range(gap):
                s.feed_audio(SILENCE_FRAME)
        if ts is not None:
            self._next_ts = ts + len(ulaw) // 8
        self.last_media = now
        pcm8 = ulaw_decode(ulaw).astype("<i2").tobytes()
        self._in_mulaw += ulaw
        for frame in self._in_split.push(self._in_rs.process(pcm8)):
            # each 16 kHz frame goes with the 160 mu-law bytes it was made from (a
            # recogniser that takes mu-law gets Twilio's bytes untouched)
            mulaw = None
            if len(self._in_mulaw) >= 160:
                mulaw = bytes(self._in_mulaw[:160])
                del self._in_mulaw[:160]
            s.feed_audio(frame, mulaw)
        if len(self._in_mulaw) > 1600:
            del self._in_mulaw[:-160]

    def on_mark(self, name: Any) -> None:
        if not isinstance(name, str):
            return
        epoch, _, count = name.partition(".")
        if epoch != str(self.epoch) or not count.isdigit():
            return  # from before a clear: Twilio echoes dropped marks too, they say nothing was played
        self.marks_echoed += 1
        self.confirmed = max(self.confirmed, min(int(count), self.sent))
        self._echoed.set()

    # media clock
    def tick(self) -> None:
        s = self.session
        if s is None or s.closed:
            return
        if self.clock_time() - self.last_media > STALL_S:
            s.feed_audio(SILENCE_FRAME)
        out = None if self.hung_up else s.next_frame()  # hanging up: nothing new for the caller
        if out is not None:
            self.sent += 1
            self._running = True
            for chunk in self._out_split.push(self._out_rs.process(out)):
                self._send_media(chunk)
            if self.sent - self._last_mark >= MARK_EVERY:
                self._mark()
        elif self._running:  # end of a run of bot audio (a segment, a turn, or a pause)
            self._running = False
            rest = self._out_split.flush()
            if rest is not None:
                self._send_media(rest)
            self._mark()

    @staticmethod
    def clock_time() -> float:
        return asyncio.get_running_loop().time()

    def _send_media(self, pcm8: bytes) -> None:
        payload = base64.b64encode(ulaw_encode(np.frombuffer(pcm8, dtype="<i2"))).decode("ascii")
        self._send({"event": "media", "streamSid": self.stream_sid, "media": {"payload": payload}})

    def _mark(self) -> None:
        self._last_mark = self.sent
        self._send({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": f"{self.epoch}.{self.sent}"}})

    def _send(self, obj: dict[str, Any]) -> None:
        self._outbox.put_nowait(json.dumps(obj, separators=(",", ":")))

    async def writer(self) -> None:
        while (item := await self._outbox.get()) is not None:
            if self.ws.closed:
                return
            await self.ws.send_str(item)

    async def close_writer(self, task: asyncio.Task[None]) -> None:
        self._outbox.put_nowait(None)
        try:
            await asyncio.wait_for(task, 2.0)
        except (TimeoutError, Exception):
            task.cancel()


def parse_frame(msg_type: WSMsgType, data: Any) -> dict[str, Any] | None:
    """One websocket message as a protocol frame; None when the socket is closing."""
    if msg_type == WSMsgType.TEXT:
        try:
            obj = boundedjson.loads(data)
        except ValueError as e:
            raise ProtocolError(f"frame is not JSON: {e}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("event"), str):
            raise ProtocolError("frame is not an object with a string 'event'")
        return obj
    if msg_type == WSMsgType.BINARY:
        raise ProtocolError(f"binary frame of {len(data)} bytes; Media Streams frames are JSON text")
    if msg_type == WSMsgType.ERROR:
        raise ConnectionError(f"websocket error: {data}")
    return None


def _dict(obj: dict[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def setup_twilio(
    app: web.Application,
    agents: AgentCatalog,
    calls: CallManager,
    clock: MediaClock,
    accepting: Callable[[], bool] = lambda: True,
    settings: Callable[[], TwilioSettings] | None = None,
    open_to_anonymous: Callable[[], bool] = lambda: False,
) -> None:
    """`settings` is asked per request (the daemon passes its live config). Streams need
    the token the daemon's TwiML minted (with the auth token set), or an open listener
    (`open_to_anonymous`: loopback only), where they count as unauthenticated calls."""
    current = settings or (lambda: TwilioSettings.from_config())

    async def media(request: web.Request) -> web.StreamResponse:
        if not accepting():
            raise web.HTTPServiceUnavailable(text="draining: not accepting new calls", headers={"Retry-After": "30"})
        authenticated = bool(current().auth_token)
        if not authenticated and not open_to_anonymous():
            raise web.HTTPUnauthorized(text="set the Twilio auth token (twilio.auth_token_env) so streams carry "
                                            "a signed token, or http.media_unauthenticated on a loopback listener")
        ws = web.WebSocketResponse(heartbeat=20, max_msg_size=1 << 20)
        await ws.prepare(request)
        call = TwilioCall(ws, clock)
        try:
            start = await _await_start(ws)
        except (ProtocolError, ConnectionError, TimeoutError) as e:
            log.warning("twilio stream refused before start: %s", e)
            await ws.close(code=1008 if isinstance(e, ProtocolError) else 1000, message=str(e)[:120].encode())
            return ws
        if start is None:
            return ws
        info = _dict(start, "start")
        params = {str(k): str(v) for k, v in _dict(info, "customParameters").items()}
        fmt = _dict(info, "mediaFormat")
        name = params.get("agent") or request.query.get("agent")
        agent = agents.get(name) if name else agents.default()
        problem = None
        if agent is None:
            problem = f"no agent {name!r}" if name else "no agents loaded"
        elif fmt and (fmt.get("encoding") != "audio/x-mulaw" or fmt.get("sampleRate") != 8000):
            problem = f"unsupported mediaFormat {fmt}"
        elif current().auth_token:
            problem = _stream_token_problem(request, params.pop("token", ""), agent.name)
        params.pop("token", None)  # never stored with the call
        if agent is None or problem:
            log.warning("twilio stream refused: %s", problem)
            await ws.close(code=1008, message=str(problem)[:120].encode())
            return ws
        call.stream_sid = str(start.get("streamSid") or info.get("streamSid") or "")
        meta = {"call_sid": str(info.get("callSid", "")), "stream_sid": call.stream_sid,
                "account_sid": str(info.get("accountSid", "")), "custom_parameters": params}
        s = current()
        call.updater = CallUpdater.for_stream(str(info.get("accountSid", "")), str(info.get("callSid", "")),
                                              s.auth_token, s.api_base_url, s.policy)
        if call.updater is not None:
            call.cannot_do = frozenset({"send_dtmf"})
        try:
            session = calls.create(agent, call, from_uri=params.get("from", ""), to_uri=params.get("to", ""),
                                   metadata=meta, source=request.remote or "", authenticated=authenticated)
        except CallLimitReached as e:
            await ws.close(code=1013, message=f"busy: {e}".encode())
            return ws
        session.playout = call.playout
        call.session = session
        writer = asyncio.create_task(call.writer())
        await session.start()
        handle = clock.register(call.tick)
        reason, by = "connection_lost", "system"
        try:
            async for msg in ws:
                frame = parse_frame(msg.type, msg.data)
                if frame is None:
                    break
                event = frame["event"]
                if event == "media":
                    body = _dict(frame, "media")
                    if body.get("track", "inbound") == "inbound":
                        call.on_media(body.get("payload"), body.get("timestamp"), call.clock_time())
                elif event == "dtmf":
                    digit = _dict(frame, "dtmf").get("digit")
                    if isinstance(digit, str) and len(digit) == 1:
                        session.feed_dtmf(digit, source="twilio")
                elif event == "mark":
                    call.on_mark(_dict(frame, "mark").get("name"))
                elif event == "stop":
                    reason, by = "caller_hangup", "caller"
                    break
                if session.closed:
                    break
        except ProtocolError as e:
            reason, by = "protocol_error", "system"
            session.record.metadata["error"] = str(e)
            log.warning("twilio call %s: %s", session.record.id, e)
        except Exception as e:
            reason, by = "transport_error", "system"
            session.record.metadata["error"] = f"{type(e).__name__}: {e}"
            log.warning("twilio call %s failed: %s", session.record.id, e)
        finally:
            clock.unregister(handle)
            if call.hung_up:  # we closed the socket for whoever hung up; they close the session
                reason, by = "agent_hangup", "agent"
                try:
                    await asyncio.wait_for(session.ended.wait(), 5.0)
                except TimeoutError:
                    pass
            session.record.metadata.update(marks_echoed=call.marks_echoed, frames_taken_back=call.frames_taken_back,
                                           gap_frames=call.gap_frames)
            if reason in ("protocol_error", "transport_error", "connection_lost") and not session.closed:
                publish_transport_error(calls, session, session.record.metadata.get("error", "websocket closed without stop"),
                                        end_reason=reason)
            if not session.closed:
                await session.close(reason, ended_by=by)
            await call.close_writer(writer)
            await ws.close(code=1008 if reason == "protocol_error" else 1000)
        return ws

    async def twiml(request: web.Request) -> web.Response:
        name = request.match_info["agent"]
        if agents.get(name) is None:
            raise web.HTTPNotFound(text=f"no agent {name!r}")
        form = await request.post() if request.method == "POST" and request.can_read_body else {}
        conf = current()
        auth = conf.auth_token
        params = {"agent": name}
        if auth:  # only Twilio may fetch this document, and the stream it names needs its token
            url = _public_url(request, conf.public_url, "https", "http") + request.path_qs
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
            if not hmac.compare_digest(request.headers.get("X-Twilio-Signature", ""), twilio_signature(auth, url, fields)):
                raise web.HTTPForbidden(text="X-Twilio-Signature does not match")
            tokens = request.app.get(WEB_TOKENS_KEY)
            if tokens is None:
                raise web.HTTPServiceUnavailable(text="no web token issuer configured")
            params["token"] = tokens.mint(name, ttl_s=STREAM_TOKEN_TTL_S)[0]
        for form_field, key in (("From", "from"), ("To", "to")):
            value = form.get(form_field)
            if isinstance(value, str) and value:
                params[key] = value
        stream_url = _public_url(request, conf.public_url, "wss", "ws") + PATH
        inner = "".join(f"<Parameter name={quoteattr(k)} value={quoteattr(v)}/>" for k, v in params.items())
        xml = ('<?xml version="1.0" encoding="UTF-8"?>'
               f"<Response><Connect><Stream url={quoteattr(stream_url)}>{inner}</Stream></Connect></Response>")
        return web.Response(text=xml, content_type="text/xml")

    app.router.add_get(PATH, media)
    app.router.add_post("/twiml/{agent}", twiml)
    app.router.add_get("/twiml/{agent}", twiml)


async def _await_start(ws: web.WebSocketResponse) -> dict[str, Any] | None:
    """Read frames until `start` (skipping `connected`); None if the socket closed first."""
    async with asyncio.timeout(START_TIMEOUT_S):
        async for msg in ws:
            frame = parse_frame(msg.type, msg.data)
            if frame is None:
                return None
            if frame["event"] == "start":
                return frame
            if frame["event"] == "stop":
                return None
    return None


def _public_url(request: web.Request, base: str, secure: str, plain: str) -> str:
    """scheme://host as callers see it: the configured public URL, else the request (honouring
    a proxy's X-Forwarded-Proto/Host). `secure`/`plain` name the scheme for https/http."""
    if base:
        scheme, _, host = base.partition("://")
    else:
        scheme = request.headers.get("X-Forwarded-Proto", request.scheme).split(",")[0].strip()
        host = request.headers.get("X-Forwarded-Host", request.host).split(",")[0].strip()
    return (secure if scheme == "https" else plain) + "://" + host


def _stream_token_problem(request: web.Request, token: str, agent: str) -> str | None:
    tokens = request.app.get(WEB_TOKENS_KEY)
    if tokens is None:
        return "no web token issuer configured"
    try:
        tokens.verify(token, agent)
    except InvalidToken as e:
        return f"stream token: {e}"
    return None
