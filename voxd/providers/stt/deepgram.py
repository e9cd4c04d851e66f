"""Deepgram live streaming recognition (`/v1/listen` websocket) on the official SDK.

One websocket per call, opened when the call's stream is created. Caller audio
(linear16, 16 kHz) is sent as it is captured; the session's turn end sends
`Finalize`, and the transcript of the turn is every `is_final` result up to the
result marked `from_finalize`. While the caller is silent, `KeepAlive` keeps the
socket open (Deepgram closes idle sockets with 1011 after about 10 s); the call's
end sends `CloseStream` and waits for the closing `Metadata`.

A dropped socket (1011, a reset, a network blip) is reopened at once, and every
byte of audio not yet covered by a final result is sent again on the new socket,
so the turn in progress loses nothing. Positions are kept on one timeline of
bytes pushed by the session (`abs`); a connection maps its own result times onto
it from the point where its audio started (`_origin`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode

from pydantic import Field

from voxd.core.egress import EgressPolicy, refusal
from voxd.media.frame import AudioFrame
from voxd.providers.base import ProviderError, SpeechToText, STTStream
from voxd.providers.engines import BuildContext, EngineSpec, Options, register
from voxd.providers.keys import Secret

if TYPE_CHECKING:
    from voxd.agents.schema import STTConfig

log = logging.getLogger("voxd.providers.deepgram")

DEFAULT_URL = "wss://api.deepgram.com"
BACKOFF_S = (0.0, 0.1, 0.3, 1.0, 2.0)
REVIVE_AFTER_S = 10.0  # after giving up, try a fresh connection for a later turn
SEND_CHUNK = 3200 * 2  # at most 200 ms of 16 kHz audio per websocket message


@dataclass
class DeepgramOptions:
    model: str = "nova-3"
    language: str = "en"
    sample_rate: int = 16_000
    # "auto": mu-law at 8 kHz when the call carries it (a PCMU SIP call, Twilio), so its
    # own bytes go out untouched; 16 kHz linear16 otherwise (WebRTC, websocket, PCMA)
    encoding: Literal["auto", "linear16", "mulaw"] = "auto"
    interim_results: bool = True
    endpointing: int | bool = 300
    utterance_end_ms: int | None = 1000
    vad_events: bool = True
    smart_format: bool = True
    punctuate: bool = True
    keepalive_s: float = 4.0
    finalize_timeout_s: float = 3.0
    settled_grace_s: float = 0.3  # after a speech_final, wait only this long for from_finalize
    max_reconnects: int = 4
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.encoding not in ("auto", "linear16", "mulaw"):
            raise ValueError(f"encoding {self.encoding!r}: expected auto, linear16 or mulaw")
        if self.encoding == "mulaw":  # G.711 rate and width: a quarter of the bytes of 16 kHz linear16
            self.sample_rate = 8_000

    def for_call(self, carried: str | None) -> DeepgramOptions:
        """The options one call's connection uses: "auto" settles on an encoding."""
        if self.encoding != "auto":
            return self
        if carried == "PCMU":  # G.711 mu-law at 8 kHz, sent as the call carried it
            return dataclasses.replace(self, encoding="mulaw")
        return dataclasses.replace(self, encoding="linear16")

    def query(self) -> dict[str, Any]:
        q: dict[str, Any] = {
            "model": self.model, "language": self.language, "encoding": self.encoding,
            "sample_rate": self.sample_rate, "channels": 1, "interim_results": self.interim_results,
            "endpointing": self.endpointing, "vad_events": self.vad_events,
            "smart_format": self.smart_format, "punctuate": self.punctuate,
        }
        if self.utterance_end_ms is not None:  # Deepgram needs interim results for UtteranceEnd
            q["utterance_end_ms"] = self.utterance_end_ms
            q["interim_results"] = True
        return {**q, **self.extra}


class DeepgramSTT(SpeechToText):
    name = "deepgram"

    def __init__(self, api_key: Secret, options: DeepgramOptions, base_url: str | None = None,
                 policy: EgressPolicy | None = None) -> None:
        self._key = api_key
        self.options = options
        self.base_url = (base_url or DEFAULT_URL).rstrip("/")
        self.policy = policy or EgressPolicy()

    def __repr__(self) -> str:  # the key stays out of logs
        return f"DeepgramSTT(url={self.base_url!r}, model={self.options.model!r})"

    def stream(self, carried: str | None = None) -> DeepgramStream:
        return DeepgramStream(self, self.options.for_call(carried))

    @contextlib.asynccontextmanager
    async def connect(self, options: DeepgramOptions | None = None) -> AsyncIterator[Any]:
        """An SDK socket client (`AsyncV1SocketClient`) on a fresh connection, made to the
        address the outbound policy checked (the SDK's own connect would resolve the name
        again, so the socket is opened here and handed to the SDK's client)."""
        from deepgram.core.query_encoder import encode_query
        from deepgram.listen.v1.socket_client import AsyncV1SocketClient
        from websockets.legacy.client import connect as ws_connect

        from voxd.core.egress_http import ws_connect_kwargs

        ws = self.base_url.replace("https://", "wss://").replace("http://", "ws://")
        url = f"{ws}/v1/listen?{urlencode(encode_query((options or self.options.for_call(None)).query()) or [])}"
        kw = await ws_connect_kwargs(self.policy, "providers", url)
        kw.pop("proxy", None)  # the legacy client never uses a proxy
        headers = {"Authorization": f"Token {self._key.reveal()}", "User-Agent": "voxd"}
        async with ws_connect(url, extra_headers=headers, **kw) as sock:
            yield AsyncV1SocketClient(websocket=sock)


@dataclass
class _Fin:
    kind: Literal["turn", "discard"]
    boundary: int  # abs byte position the Finalize follows
    future: asyncio.Future[str] | None = None
    sent: bool = False


class DeepgramStream(STTStream):
    def __init__(self, engine: DeepgramSTT, options: DeepgramOptions | None = None) -> None:
        self.engine = engine
        self.opt = options or engine.options.for_call(None)
        self.bps = self.opt.sample_rate * (2 if self.opt.encoding == "linear16" else 1)
        self.error: ProviderError | None = None
        self._gave_up_at = 0.0
        self.reconnects = 0
        self.connected = asyncio.Event()
        self.audio_s_sent = 0.0
        self.request_ids: list[str] = []
        self._buf = bytearray()  # audio from _buf_start to _pushed
        self._buf_start = 0
        self._pushed = 0  # abs bytes pushed by the session
        self._sent = 0  # abs position sent on the current connection
        self._confirmed = 0  # abs position covered by final results (or dropped by reset)
        self._origin = 0  # abs position of the current connection's first byte
        self._turn_start = 0
        self._finals: list[str] = []
        self._settled = False  # the last result closed an utterance and nothing was heard since
        self._fins: list[_Fin] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._last_send = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._to_mulaw = _mulaw_encoder() if self.opt.encoding == "mulaw" else None
        self.passthrough_bytes = 0  # mu-law sent exactly as the call carried it
        with contextlib.suppress(RuntimeError):  # no loop yet: connect on first audio
            asyncio.get_running_loop()
            self._start()

    # ------------------------------------------------------------ STTStream
    def push(self, frame: AudioFrame) -> None:
        if self._closing:
            return
        pcm = frame.pcm
        if self._to_mulaw is not None:
            # a G.711 call's own bytes go out untouched; other audio is resampled and encoded
            mulaw = frame.payload_in("PCMU")
            pcm = mulaw if mulaw is not None else self._to_mulaw(pcm)
            self.passthrough_bytes += len(mulaw or b"")
        if self.error is not None:
            if time.monotonic() - self._gave_up_at < REVIVE_AFTER_S:
                return  # dead: a fallback (if any) has this turn's audio
            self._revive()
        self._start()
        self._buf += pcm
        self._pushed += len(pcm)
        self._wake.set()

    def reset(self) -> None:
        """Drop the audio since the last turn: Deepgram is told to cut there (a
        `Finalize` whose results are discarded) so none of it leaks into the next turn."""
        if self._pushed > self._turn_start:
            self._fins.append(_Fin("discard", self._pushed))
            self._wake.set()
        self._confirmed = max(self._confirmed, self._pushed)
        self._turn_start = self._pushed
        self._finals.clear()

    async def finalize(self) -> str:
        if self.error is not None:
            raise self.error
        boundary, self._turn_start = self._pushed, self._pushed
        if boundary <= self._confirmed and not any(f.kind == "turn" for f in self._fins):
            return self._take()  # nothing new was said since the last final result
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        fin = _Fin("turn", boundary, fut)
        self._fins.append(fin)
        self._wake.set()
        # Deepgram already closed the utterance (speech_final, nothing heard since): the
        # transcript is complete, so a missing from_finalize must not cost seconds.
        settled = self._settled and bool(self._finals)
        timeout = self.opt.settled_grace_s if settled else self.opt.finalize_timeout_s
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            fin.kind, fin.future = "discard", None  # a late from_finalize still pairs with it
            fut.cancel()
            if not self.connected.is_set():
                raise ProviderError(self.engine.name, "no transcript: connection down", retryable=True) from None
            if not settled:
                log.info("deepgram: no from_finalize within %.1fs; using the final results so far", timeout)
            self._confirmed = max(self._confirmed, min(boundary, self._sent))
            return self._take()

    async def aclose(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 2.0)
            except (TimeoutError, Exception):
                self._task.cancel()
                with contextlib.suppress(BaseException):
                    await self._task
        self._fail_pending(ProviderError(self.engine.name, "stream closed", retryable=False))

    # ------------------------------------------------------------ connection
    def _start(self) -> None:
        if self._task is None and not self._closing:
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        failures = 0
        while not self._closing:
            if failures:
                if failures > self.opt.max_reconnects:
                    self._give_up(f"connection lost; {failures - 1} reconnects failed")
                    return
                await asyncio.sleep(BACKOFF_S[min(failures, len(BACKOFF_S) - 1)])
                self.reconnects += 1
            try:
                async with self.engine.connect(self.opt) as sock:
                    failures = 0
                    self._on_open()
                    clean = await self._session(sock)
                    if clean:
                        return
                    log.warning("deepgram: socket closed mid-call; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as e:
                refused = refusal(e)
                if refused is not None:
                    self._give_up(f"destination refused: {refused}", retryable=False)
                    return
                code = getattr(e, "status_code", None)
                if code in (401, 403):
                    self._give_up(f"rejected the key (HTTP {code})", retryable=False)
                    return
                log.warning("deepgram: %s; reconnecting", _describe(e))
            finally:
                self.connected.clear()
            failures += 1

    def _on_open(self) -> None:
        """A new socket: resend everything not covered by a final result."""
        self._origin = self._sent = self._confirmed
        for f in self._fins:
            f.sent = False
        self._fins = [f for f in self._fins if f.kind == "turn"]
        self.connected.set()
        self._wake.set()

    async def _session(self, sock: Any) -> bool:
        """Run one socket; True if it ended because the call ended."""
        sender = asyncio.ensure_future(self._send_loop(sock))
        try:
            async for msg in sock:
                self._on_message(msg)
            return self._closing  # the server closed (cleanly after CloseStream)
        except Exception as e:
            if self._closing:
                return True
            log.warning("deepgram: receive failed: %s", _describe(e))
            return False
        finally:
            sender.cancel()
            with contextlib.suppress(BaseException):
                await sender

    async def _send_loop(self, sock: Any) -> None:
        ka = self.opt.keepalive_s
        try:
            while True:
                self._wake.clear()
                await self._send_pending(sock)
                if self._closing:
                    await sock.send_close_stream()
                    return
                try:
                    await asyncio.wait_for(self._wake.wait(), ka)
                except TimeoutError:
                    if time.monotonic() - self._last_send >= ka * 0.9:
                        await sock.send_keep_alive()
                        self._last_send = time.monotonic()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the receive side sees the close and reconnects
            log.debug("deepgram: send failed: %s", _describe(e))

    async def _send_pending(self, sock: Any) -> None:
        while True:
            fin = next((f for f in self._fins if not f.sent), None)
            limit = fin.boundary if fin is not None else self._pushed
            if self._sent < limit:
                start = self._sent - self._buf_start
                chunk = bytes(self._buf[start : start + min(SEND_CHUNK, limit - self._sent)])
                await sock.send_media(chunk)
                self._sent += len(chunk)
                self.audio_s_sent += len(chunk) / self.bps
                self._last_send = time.monotonic()
                self._trim()
            elif fin is not None:
                await sock.send_finalize()
                fin.sent = True
                self._last_send = time.monotonic()
            else:
                return

    def _trim(self) -> None:
        keep_from = min(self._sent, self._confirmed)
        if keep_from > self._buf_start:
            del self._buf[: keep_from - self._buf_start]
            self._buf_start = keep_from

    # ------------------------------------------------------------ results
    def _on_message(self, msg: Any) -> None:
        kind = getattr(msg, "type", None)
        if kind == "Results":
            self._on_results(msg)
        elif kind == "Metadata":
            self.request_ids.append(str(getattr(msg, "request_id", "")))
        elif kind == "Error":
            log.warning("deepgram error: %s %s", getattr(msg, "variant", ""), getattr(msg, "description", ""))
        # SpeechStarted / UtteranceEnd: the session's own VAD and turn model decide turns

    def _on_results(self, msg: Any) -> None:
        alts = msg.channel.alternatives
        text = (alts[0].transcript if alts else "").strip()
        end = self._origin + round((msg.start + msg.duration) * self.bps)
        end = min(end, self._sent)
        if msg.is_final:
            if end > self._confirmed or msg.from_finalize:
                if end > self._confirmed and text:
                    self._finals.append(text)
                    self._settled = bool(msg.speech_final)
                elif msg.speech_final:
                    self._settled = True
                self._confirmed = max(self._confirmed, end)
                self._trim()
        elif text and end > self._confirmed:
            self._settled = False
            if self.on_interim is not None:
                self.on_interim(" ".join([*self._finals, text]))
        if msg.from_finalize:
            self._finalized(end)

    def _finalized(self, end: int) -> None:
        sent = [f for f in self._fins if f.sent]
        done = [f for f in sent if f.boundary <= end + self.bps // 10] or sent[:1]
        for f in done:
            self._fins.remove(f)
            self._confirmed = max(self._confirmed, min(f.boundary, self._sent))
            if f.kind == "turn" and f.future is not None and not f.future.done():
                f.future.set_result(self._take())
        self._trim()

    def _take(self) -> str:
        text = " ".join(self._finals)
        self._finals.clear()
        self._settled = False
        return text

    def _revive(self) -> None:
        """Start over on a fresh connection, from the audio pushed from now on."""
        log.info("deepgram: trying a new connection")
        self.error, self._task = None, None
        self._confirmed = self._sent = self._origin = self._turn_start = self._buf_start = self._pushed
        self._buf.clear()
        self._finals.clear()

    def _give_up(self, why: str, retryable: bool = True) -> None:
        self.error = ProviderError(self.engine.name, why, retryable=retryable)
        self._gave_up_at = time.monotonic()
        log.warning("deepgram: giving up: %s", why)
        self._fail_pending(self.error)

    def _fail_pending(self, err: ProviderError) -> None:
        for f in self._fins:
            if f.future is not None and not f.future.done():
                f.future.set_exception(err)
                f.future.exception()  # retrieved here so an abandoned future does not warn
        self._fins.clear()


def _mulaw_encoder() -> Any:
    """16 kHz linear16 from the pipeline -> 8 kHz mu-law, keeping filter state across frames."""
    import numpy as np

    from voxd.media.audio import StreamResampler
    from voxd.proto.g711 import ulaw_encode

    rs = StreamResampler(16_000, 8_000)

    def encode(pcm: bytes) -> bytes:
        return ulaw_encode(np.frombuffer(rs.process(pcm), dtype="<i2"))

    return encode


def _describe(e: BaseException) -> str:
    code = getattr(e, "code", None) or getattr(getattr(e, "rcvd", None), "code", None)
    return f"{type(e).__name__}{f' {code}' if code else ''}: {e}"


# ---------------------------------------------------------------- registration


class DeepgramEngineOptions(Options):
    """``options:`` of ``engine: deepgram`` (the fields of :class:`DeepgramOptions` a YAML may set)."""

    interim_results: bool = True
    endpointing: int | bool = 300
    utterance_end_ms: int | None = 1000
    vad_events: bool = True
    smart_format: bool = True
    punctuate: bool = True
    keepalive_s: float = 4.0
    finalize_timeout_s: float = 3.0
    settled_grace_s: float = 0.3
    max_reconnects: int = 4
    encoding: Literal["auto", "linear16", "mulaw"] = "auto"
    extra: dict[str, Any] = Field(default_factory=dict)


def _build(cfg: STTConfig, opts: DeepgramEngineOptions, ctx: BuildContext) -> DeepgramSTT:
    model = cfg.model if "model" in cfg.model_fields_set else "nova-3"
    return DeepgramSTT(ctx.api_key(cfg, "deepgram"), DeepgramOptions(model=model, language=cfg.language, **opts.given()),
                       base_url=cfg.base_url, policy=ctx.outbound.policy)


register(EngineSpec("stt", "deepgram", _build, options=DeepgramEngineOptions,
                    prices={"audio_s": 0.0077 / 60},  # nova-3 streaming, per second of audio sent
                    url="wss://api.deepgram.com", secret="deepgram"))
