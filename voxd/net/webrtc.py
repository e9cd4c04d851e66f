"""WebRTC (aiortc): browsers call an agent; the developer playground at /talk/<agent>.

    POST /webrtc/offer      {"sdp", "type": "offer", "agent", "token"} -> {"sdp", "type": "answer", "call_id", "ice"}
                            token: a web token (voxd.net.webtoken), in the body or as
                            `Authorization: Bearer`; or an API key with calls:write.
                            The answer carries every voxd ICE candidate (gathering is complete);
                            the offer need not carry the page's (trickle ICE, below).
    POST /webrtc/calls/<id>/candidates  the page's candidates as it finds them
                            (voxd.net.webrtc_trickle), bearer: the answer's ice.token
    GET  /webrtc/ice        {"ice_servers": [...]} for the page's RTCPeerConnection
    GET  /talk/<agent>      the playground page (voxd/net/static, no CDN, no build step)
    POST /talk/<agent>/token  a web token, only for requests from loopback (the local playground)

Media: the browser's Opus (48 kHz) arrives decoded; it is downmixed, and an L16 codec
object resamples it to 16 kHz frames that are fed to the call as they arrive (the
browser's audio is the caller-side clock: `CallLeg` with inbound="arrival"). `BotAudioTrack`
pulls the bot's 20 ms frames in real time when aiortc asks for them (outbound="pull"),
so nothing is queued on our side and barge-in takes effect on the next frame. The
call's life (admission, clock, stall silence, teardown) is `voxd.net.leg.CallLeg`'s.

DataChannel "voxd" (created by the page): page -> voxd `{"type": "dtmf", "digit": "5"}`,
`{"type": "hangup"}`; voxd -> page `started`, `state` (listening / speaking / thinking),
`transcript` (speaker, text, interrupted), `dtmf`, `clear`, `end`.

ICE (config `webrtc:`): host candidates on `webrtc.hosts`, else the HTTP listener's
address (127.0.0.1 by default; every interface when it listens on 0.0.0.0 or ::);
STUN/TURN servers from `webrtc.ice_servers` (TURN credentials from environment
variables). $VOXD_WEBRTC_HOSTS ("192.0.2.10,10.0.0.5") and $VOXD_WEBRTC_ICE_SERVERS (a
JSON list of {"urls", "username", "credential"}) override the file. No STUN server is
contacted unless configured. Settings are read per offer, so a reload applies to the
next call.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fractions
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aioice.ice
import numpy as np
from aiohttp import web
from aiortc import MediaStreamTrack, RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

from voxd.agents.catalog import AgentCatalog
from voxd.call.events import CallEnded, CallerSpeaking, CallEvent, DtmfReceived, TurnCompleted
from voxd.call.manager import CallManager
from voxd.call.ports import EndedBy, EndReason, PlaybackFinished
from voxd.call.session import CallSession
from voxd.config import WebRtcConfig
from voxd.core import boundedjson
from voxd.core.endreason import end_reason
from voxd.media.audio import FRAME_SAMPLES, SAMPLE_RATE, SILENCE_FRAME
from voxd.media.codecs.linear import L16, L16Decoder
from voxd.net.clock import MediaClock
from voxd.net.http_errors import bad_request, json_body
from voxd.net.leg import CallLeg, LegEnv, Refused
from voxd.net.webrtc_trickle import TRICKLE_KEY, Trickle
from voxd.net.webtoken import WEB_TOKENS_KEY, ApiKeyCheck, InvalidToken, KeyChecker, WebTokens, api_key_check

log = logging.getLogger("voxd.webrtc")

STATIC = Path(__file__).with_name("static")
STATIC_FILES = {"talk.html": "text/html", "talk.js": "text/javascript", "talk.css": "text/css"}
CONNECT_TIMEOUT_S = 20.0
QUIET_FRAMES = 10  # bot silent this many frames: state goes back to "listening"
LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")


@dataclass(frozen=True)
class WebRtcSettings:
    ice_servers: list[dict[str, Any]] = field(default_factory=list, repr=False)  # may hold TURN credentials
    host_addresses: tuple[str, ...] | None = None  # None: every interface aioice finds

    @classmethod
    def from_config(cls, cfg: WebRtcConfig | None = None, http_host: str = "127.0.0.1") -> WebRtcSettings:
        cfg = cfg or WebRtcConfig()
        servers: list[dict[str, Any]] = [s.resolved() for s in cfg.ice_servers]
        servers_env = os.environ.get("VOXD_WEBRTC_ICE_SERVERS", "")
        if servers_env.strip():
            try:
                parsed = json.loads(servers_env)
                if not isinstance(parsed, list) or not all(isinstance(x, dict) and "urls" in x for x in parsed):
                    raise ValueError("expected a JSON list of {\"urls\", ...}")
                servers = parsed
            except ValueError as e:
                log.error("ignoring $VOXD_WEBRTC_ICE_SERVERS: %s", e)
        hosts_env = os.environ.get("VOXD_WEBRTC_HOSTS", "")
        if hosts_env:
            hosts: tuple[str, ...] | None = tuple(h.strip() for h in hosts_env.split(",") if h.strip())
        elif cfg.hosts:
            hosts = tuple(cfg.hosts)
        elif http_host in ("", "0.0.0.0", "::"):
            hosts = None
        else:
            hosts = (http_host,)
        return cls(ice_servers=list(servers), host_addresses=hosts)

    def rtc_configuration(self) -> RTCConfiguration:
        servers = [RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
                   for s in self.ice_servers]
        return RTCConfiguration(iceServers=servers)  # an empty list: aiortc's default public STUN is not used


# aioice lists host addresses itself and leaves out 127.0.0.1; a call's gathering runs in
# the offer handler's context, where this variable names the addresses to offer instead.
_ICE_HOSTS: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar("voxd_ice_hosts", default=None)
_aioice_hosts = aioice.ice.get_host_addresses


def _host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    hosts = _ICE_HOSTS.get()
    return list(hosts) if hosts is not None else _aioice_hosts(use_ipv4, use_ipv6)


aioice.ice.get_host_addresses = _host_addresses


@contextlib.contextmanager
def ice_hosts(addresses: tuple[str, ...] | None) -> Iterator[None]:
    """Gather host candidates on exactly these addresses (None: aioice's own list) in this block."""
    token = _ICE_HOSTS.set(addresses)
    try:
        yield
    finally:
        _ICE_HOSTS.reset(token)


class BotAudioTrack(MediaStreamTrack):
    """The bot's voice: one 20 ms, 16 kHz frame per recv(), paced in real time."""

    kind = "audio"

    def __init__(self, call: RtcCall) -> None:
        super().__init__()
        self.call = call
        self._start: float | None = None
        self._pts = 0
        self._quiet = QUIET_FRAMES

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        else:
            self._pts += FRAME_SAMPLES
            wait = self._start + self._pts / SAMPLE_RATE - loop.time()
            if wait < -0.2:  # the loop stalled: skip ahead rather than burst
                self._start = loop.time() - self._pts / SAMPLE_RATE
            await asyncio.sleep(max(wait, 0.0))
        out = self.call.leg.pull() if self.call.leg is not None else None
        pcm = out.pcm if out is not None else None
        if pcm is None:
            self._quiet += 1
            if self._quiet == QUIET_FRAMES:
                self.call.set_state("listening")
            pcm = SILENCE_FRAME
        else:
            if self._quiet >= QUIET_FRAMES:
                self.call.set_state("speaking")
            self._quiet = 0
        frame = AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(pcm)
        frame.pts = self._pts
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        return frame


class RtcCall:
    """One browser call: a peer connection as a Wire and a TransportControl for its CallLeg."""

    def __init__(self, pc: RTCPeerConnection) -> None:
        self.pc = pc
        self.session: CallSession | None = None
        self.leg: CallLeg | None = None
        self.out_track = BotAudioTrack(self)
        self.channel: Any = None
        self._pending: list[str] = []
        self._dec: L16Decoder = L16(48000).decoder()
        self.state = ""
        self.done = asyncio.Event()
        self.reason: EndReason = "connection_lost"
        self.ended_by: EndedBy = "system"
        self.tasks: set[asyncio.Task[None]] = set()

    # TransportControl
    async def hangup(self) -> None:
        self.end("agent_hangup", "agent")

    async def transfer(self, target: str) -> bool:
        self.send({"type": "transfer", "target": target})  # the page (or its telephony) acts on it
        return True

    async def send_dtmf(self, digits: str) -> None:
        self.send({"type": "dtmf_out", "digits": digits})

    # Wire (inbound arrives, outbound is pulled by BotAudioTrack)
    def clear(self) -> PlaybackFinished | None:
        self.send({"type": "clear"})  # BotAudioTrack holds no backlog: the next frame is already silence
        return None

    def release(self) -> None:
        pass  # the peer connection is closed by run() once the page was told

    # plumbing
    def end(self, reason: EndReason, by: EndedBy) -> None:
        if not self.done.is_set():
            self.reason, self.ended_by = reason, by
            self.done.set()

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def send(self, obj: dict[str, Any]) -> None:
        text = json.dumps(obj)
        if self.channel is not None and self.channel.readyState == "open":
            self.channel.send(text)
        else:
            self._pending.append(text)

    def on_channel(self, channel: Any) -> None:
        self.channel = channel

        @channel.on("open")  # type: ignore[untyped-decorator]
        def flush() -> None:
            for text in self._pending:
                channel.send(text)
            self._pending.clear()

        @channel.on("message")  # type: ignore[untyped-decorator]
        def message(data: Any) -> None:
            self.on_message(data)

        if channel.readyState == "open":
            flush()

    def on_message(self, data: Any) -> None:
        s = self.session
        try:
            obj = boundedjson.loads(data) if isinstance(data, str) else None
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            obj = {}
        kind, digit = obj.get("type"), obj.get("digit")
        if kind == "dtmf" and s is not None and self.leg is not None and isinstance(digit, str) and len(digit) == 1:
            self.leg.dtmf(digit, "webrtc")
        elif kind == "hangup":
            self.end("caller_hangup", "caller")
        else:
            self.send({"type": "error", "message": "unknown or malformed message"})

    def set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.send({"type": "state", "state": state})

    def on_event(self, event: CallEvent) -> None:
        if isinstance(event, TurnCompleted):
            t = event.turn
            self.send({"type": "transcript", "speaker": t.speaker, "interrupted": t.interrupted,
                       "text": (t.heard_text or "") if t.interrupted else t.text})
            if t.speaker == "caller":
                self.set_state("thinking")
        elif isinstance(event, CallerSpeaking):
            self.send({"type": "caller_speaking", "interrupting": event.interrupting})
        elif isinstance(event, DtmfReceived):
            self.send({"type": "dtmf", "digit": event.dtmf.digit})
        elif isinstance(event, CallEnded):
            self.end(end_reason(event.record.end_reason or "ended"), event.record.ended_by or "system")

    async def read_audio(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            s = self.session
            if s is None or s.closed or not isinstance(frame, AudioFrame):
                continue
            pcm = frame.to_ndarray().reshape(-1, len(frame.layout.channels))
            mono = pcm.mean(axis=1).astype("<i2") if pcm.shape[1] > 1 else pcm[:, 0].astype("<i2")
            if self._dec.rate != frame.sample_rate:
                self._dec = L16(frame.sample_rate).decoder()
            assert self.leg is not None
            for f in self._dec.decode(np.ascontiguousarray(mono).tobytes()):
                self.leg.feed(f)


def setup_webrtc(
    app: web.Application,
    agents: AgentCatalog,
    calls: CallManager,
    clock: MediaClock,
    *,
    tokens: WebTokens,
    keys: KeyChecker | None = None,
    http_host: str = "127.0.0.1",
    accepting: Callable[[], bool] = lambda: True,
    settings: Callable[[], WebRtcSettings] | None = None,
) -> None:
    """`settings` is asked once per offer (the daemon passes its live config)."""
    current = settings or (lambda: WebRtcSettings.from_config(None, http_host))
    key_check: ApiKeyCheck | None = api_key_check(keys) if keys is not None else None
    live: set[RtcCall] = set()
    trickle = Trickle()
    env = LegEnv(calls, clock, agents, accepting)

    async def authorize(request: web.Request, body: dict[str, Any]) -> tuple[str | None, str]:
        """(the agent the caller may reach, the credential's organisation); raises 401/403."""
        header = request.headers.get("Authorization", "")
        token = body.get("token") or (header[7:].strip() if header.lower().startswith("bearer ") else "")
        agent = body.get("agent") if isinstance(body.get("agent"), str) else None
        if not isinstance(token, str) or not token:
            raise web.HTTPUnauthorized(text="send a web token (or an API key with calls:write)")
        if token.startswith("vxw1."):
            try:
                claims = tokens.verify(token, agent)
            except InvalidToken as e:
                raise web.HTTPForbidden(text=str(e)) from None
            return claims.agent, claims.org
        org = await key_check(token) if key_check is not None else None
        if org is not None:
            return agent, org
        raise web.HTTPForbidden(text="invalid web token or API key")

    async def offer(request: web.Request) -> web.Response:
        try:
            env.check_accepting()
        except Refused as e:
            raise web.HTTPServiceUnavailable(text=e.message, headers={"Retry-After": "30"}) from None
        body = await json_body(request)
        if not isinstance(body, dict) or body.get("type") != "offer" or not isinstance(body.get("sdp"), str):
            raise bad_request('expected {"type": "offer", "sdp": "..."}')
        name, org = await authorize(request, body)
        try:
            agent = env.agent(name, org=org)  # the credential's organisation's agents only
        except Refused as e:
            raise web.HTTPNotFound(text=e.message) from None
        meta: dict[str, Any] = {"user_agent": request.headers.get("User-Agent", "")[:200]}
        outcome = await env.inbound(agent, transport="webrtc", caller=request.remote or "", from_uri=request.remote or "")
        if outcome.reject is not None:  # the agent's inbound lookup refused the call
            env.reject(outcome, "webrtc", from_uri=request.remote or "", metadata=meta)
            raise web.HTTPForbidden(text=f"rejected: {outcome.reject.reason}")
        if outcome.info:
            meta["inbound_lookup"] = outcome.info
        agent = outcome.agent
        cfg = current()
        pc = RTCPeerConnection(cfg.rtc_configuration())
        call = RtcCall(pc)
        leg = CallLeg(env, "webrtc", call, call, inbound="arrival", outbound="pull")
        try:
            session = leg.admit(agent, from_uri=request.remote or "", listener=call.on_event, metadata=meta,
                                variables=outcome.variables)
        except Refused as e:
            await pc.close()
            raise web.HTTPServiceUnavailable(text=f"busy: {e.message}") from None
        call.session, call.leg = session, leg
        pc.on("datachannel", call.on_channel)
        pc.on("track", lambda track: call.spawn(call.read_audio(track)) if track.kind == "audio" else None)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type="offer"))
            pc.addTrack(call.out_track)
            with ice_hosts(cfg.host_addresses):
                await pc.setLocalDescription(await pc.createAnswer())
        except Exception as e:
            session.record.metadata["error"] = f"{type(e).__name__}: {e}"
            await leg.end("bad_offer", "system")
            await pc.close()
            raise bad_request(f"cannot answer this offer: {e}") from None
        live.add(call)
        ice = trickle.open(session.record.id, pc, session.record.metadata)
        call.spawn(run(call, leg, session))
        answer = pc.localDescription
        return web.json_response({"sdp": answer.sdp, "type": answer.type, "call_id": session.record.id, "ice": ice})

    async def run(call: RtcCall, leg: CallLeg, session: CallSession) -> None:
        """The call's life: wait for media, start the session, end on hangup or lost connection."""
        connected = asyncio.Event()

        @call.pc.on("connectionstatechange")
        def changed() -> None:
            state = call.pc.connectionState
            if state == "connected":
                connected.set()
            elif state in ("failed", "closed"):
                call.end("connection_lost", "system")

        leg.start_media()  # stall silence keeps the call's timers running while ICE connects
        try:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    await connected.wait()
            except TimeoutError:
                call.end("ice_timeout", "system")
            if not call.done.is_set():
                call.send({"type": "started", "call_id": session.record.id, "agent": session.record.agent})
                call.set_state("listening")
                await leg.answered()
                await call.done.wait()
        finally:
            trickle.close(session.record.id)
            await leg.end(call.reason, call.ended_by, error=f"peer connection {call.pc.connectionState}")
            call.send({"type": "end", "reason": session.record.end_reason or call.reason})
            await asyncio.sleep(0.2)  # let the DataChannel deliver "end" before the transport goes
            await call.pc.close()
            for t in list(call.tasks):
                if t is not asyncio.current_task():
                    t.cancel()
            live.discard(call)

    async def ice(request: web.Request) -> web.Response:
        return web.json_response({"ice_servers": current().ice_servers})

    async def talk(request: web.Request) -> web.Response:
        name = request.match_info["agent"]
        if agents.get(name) is None:
            raise web.HTTPNotFound(text=f"no agent {name!r}")
        return web.Response(body=(STATIC / "talk.html").read_bytes(), content_type="text/html",
                            headers={"Cache-Control": "no-store"})

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["file"]
        if name not in STATIC_FILES:
            raise web.HTTPNotFound()
        return web.Response(body=(STATIC / name).read_bytes(), content_type=STATIC_FILES[name])

    async def playground_token(request: web.Request) -> web.Response:
        name = request.match_info["agent"]
        if request.remote not in LOOPBACK or "X-Forwarded-For" in request.headers:
            raise web.HTTPForbidden(text="playground tokens are only minted for loopback; "
                                    "mint one with POST /api/v1/calls/web-token and open /talk/<agent>?token=...")
        if agents.get(name) is None:
            raise web.HTTPNotFound(text=f"no agent {name!r}")
        token, exp = tokens.mint(name)
        return web.json_response({"token": token, "expires_at": exp})

    async def close_all(_: web.Application) -> None:
        for call in list(live):
            call.end("shutdown", "system")
        for call in list(live):
            await call.pc.close()

    app[WEB_TOKENS_KEY] = tokens
    app[TRICKLE_KEY] = trickle
    app.router.add_post("/webrtc/offer", offer)
    app.router.add_post("/webrtc/calls/{call_id}/candidates", trickle.post)
    app.router.add_get("/webrtc/ice", ice)
    app.router.add_get("/talk/static/{file}", asset)
    app.router.add_get("/talk/{agent}", talk)
    app.router.add_post("/talk/{agent}/token", playground_token)
    app.on_shutdown.append(close_all)
