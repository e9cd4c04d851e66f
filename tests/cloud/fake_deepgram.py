"""A local Deepgram `/v1/listen` websocket server speaking the documented live protocol.

Client -> server: binary audio (linear16), and text messages `{"type": "KeepAlive"}`,
`{"type": "Finalize"}`, `{"type": "CloseStream"}`.
Server -> client: `Results` (interim and `is_final`, `speech_final` after
`endpointing` ms of silence, `from_finalize` after a Finalize), `SpeechStarted`
(vad_events), `UtteranceEnd` (utterance_end_ms), and `Metadata` before closing on
CloseStream.

"Recognition" is by pitch: `tests.synth.voiced(f0=...)` speech whose fundamental is
near a key of `words` is transcribed as that phrase, so resent audio after a
reconnect is recognised exactly as it would have been. All timing is on the
audio timeline (bytes received), never the wall clock.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

RATE = 16_000
FRAME = 320  # samples per 20 ms


@dataclass
class Conn:
    query: dict[str, str]
    headers: dict[str, str]
    audio_bytes: int = 0
    audio: bytearray = field(default_factory=bytearray)  # every audio byte received, as sent
    messages: list[str] = field(default_factory=list)  # text messages received (types)
    close_code: int | None = None


class FakeDeepgram:
    def __init__(self, words: dict[int, str], *, sequence: list[str] | None = None, drop_after_s: float | None = None, drop_code: int = 1011,
                 malformed_after_s: float | None = None, reject_status: int | None = None,
                 interim_every_s: float = 0.3, quiet_finalize: bool = False) -> None:
        self.words = words
        self.sequence = list(sequence or [])  # recorded speech: utterances in order, whatever the pitch
        self.drop_after_s = drop_after_s  # first connection closes (1011) after this much audio
        self.drop_code = drop_code
        self.malformed_after_s = malformed_after_s
        self.reject_status = reject_status
        self.interim_every_s = interim_every_s
        self.quiet_finalize = quiet_finalize  # no from_finalize reply when nothing is left to transcribe
        self.conns: list[Conn] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------ server
    async def start(self) -> FakeDeepgram:
        app = web.Application()
        app.router.add_get("/v1/listen", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"ws://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def phrase(self, f0: float) -> str:
        if self.sequence:
            return self.sequence[0]
        key = min(self.words, key=lambda k: abs(k - f0))
        return self.words[key] if abs(key - f0) < 25 else ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.reject_status is not None:
            return web.Response(status=self.reject_status, text="rejected")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        conn = Conn(dict(request.query), dict(request.headers))
        first = not self.conns
        self.conns.append(conn)
        rec = _Recogniser(self, conn, ws)
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                conn.audio_bytes += len(msg.data)
                conn.audio += msg.data
                await rec.audio(msg.data)
                t = rec.now
                if first and self.drop_after_s is not None and t >= self.drop_after_s:
                    conn.close_code = self.drop_code
                    await ws.close(code=self.drop_code, message=b"NET-0001: simulated drop")
                    break
                if first and self.malformed_after_s is not None and t >= self.malformed_after_s:
                    await ws.send_str('{"type": "Results", "channel": {')
                    self.malformed_after_s = None
            elif msg.type == WSMsgType.TEXT:
                kind = json.loads(msg.data).get("type")
                conn.messages.append(kind)
                if kind == "Finalize":
                    await rec.finalize()
                elif kind == "CloseStream":
                    await rec.finalize(from_finalize=False)
                    await ws.send_json({
                        "type": "Metadata", "transaction_key": "deprecated", "request_id": str(uuid.uuid4()),
                        "sha256": "0" * 64, "created": "2026-01-01T00:00:00.000Z",
                        "duration": rec.now, "channels": 1,
                    })
                    conn.close_code = 1000
                    await ws.close()
                    break
        return ws


class _Recogniser:
    """Segments voiced frames on the audio timeline and emits Deepgram messages."""

    def __init__(self, fake: FakeDeepgram, conn: Conn, ws: web.WebSocketResponse) -> None:
        self.fake, self.conn, self.ws = fake, conn, ws
        q = conn.query
        self.endpointing = None if q.get("endpointing") in (None, "false") else int(q["endpointing"])
        self.utterance_end = int(q["utterance_end_ms"]) if "utterance_end_ms" in q else None
        self.vad_events = q.get("vad_events") == "true"
        self.interim = q.get("interim_results") == "true"
        self.mulaw = q.get("encoding") == "mulaw"
        assert not self.mulaw or q.get("sample_rate") == "8000"
        self.pcm = np.zeros(0, np.int16)
        self.frames = 0  # frames analysed
        self.seg_start = 0.0  # start of the audio not yet finalised
        self.voiced: list[np.ndarray] = []  # voiced audio since seg_start
        self.in_speech = False
        self.silence = 0.0
        self.last_word_end: float | None = None
        self.sent_utterance_end = True
        self.last_interim = 0.0

    @property
    def now(self) -> float:
        return self.frames * FRAME / RATE

    async def audio(self, data: bytes) -> None:
        if self.mulaw:  # G.711 at 8 kHz: decode, and analyse at 16 kHz like linear16
            from voxd.proto.g711 import ulaw_decode

            samples = np.repeat(ulaw_decode(data), 2).astype(np.int16)
        else:
            samples = np.frombuffer(data, "<i2")
        self.pcm = np.concatenate([self.pcm, samples])
        while len(self.pcm) >= FRAME:
            frame, self.pcm = self.pcm[:FRAME], self.pcm[FRAME:]
            self.frames += 1
            await self._frame(frame)

    async def _frame(self, frame: np.ndarray) -> None:
        loud = float(np.sqrt(np.mean(frame.astype(np.float64) ** 2))) > 300
        if loud:
            if not self.in_speech and self.vad_events:
                await self.ws.send_json({"type": "SpeechStarted", "channel": [0, 1], "timestamp": round(self.now - 0.02, 3)})
            self.in_speech, self.silence, self.sent_utterance_end = True, 0.0, False
            self.voiced.append(frame)
            if self.interim and len(self.voiced) * 0.02 - self.last_interim >= self.fake.interim_every_s:
                self.last_interim = len(self.voiced) * 0.02
                words = self._text().split()
                await self._results(" ".join(words[: max(1, len(words) // 2)]), is_final=False)
            return
        self.silence += 0.02
        if self.in_speech:
            self.last_word_end = self.now - self.silence
        if self.in_speech and self.endpointing is not None and self.silence * 1000 >= self.endpointing:
            await self._results(self._text(), is_final=True, speech_final=True)
            self._cut()
        if (not self.sent_utterance_end and self.utterance_end is not None and self.last_word_end is not None
                and self.silence * 1000 >= self.utterance_end):
            self.sent_utterance_end = True
            await self.ws.send_json({"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": round(self.last_word_end, 3)})

    def _text(self) -> str:
        if not self.voiced:
            return ""
        sig = np.concatenate(self.voiced).astype(np.float64)
        spec = np.abs(np.fft.rfft(sig * np.hanning(len(sig))))
        freqs = np.fft.rfftfreq(len(sig), 1 / RATE)
        band = (freqs > 60) & (freqs < 400)
        return self.fake.phrase(float(freqs[band][np.argmax(spec[band])]))

    def _cut(self) -> None:
        self.seg_start, self.voiced, self.in_speech, self.last_interim = self.now, [], False, 0.0

    async def finalize(self, from_finalize: bool = True) -> None:
        """Flush: a final result for the audio since the last one (maybe empty)."""
        text = self._text()
        if not text and self.fake.quiet_finalize:
            self._cut()
            return
        if text or from_finalize:
            await self._results(text, is_final=True, speech_final=False, from_finalize=from_finalize)
        self._cut()

    async def _results(self, text: str, *, is_final: bool, speech_final: bool = False, from_finalize: bool = False) -> None:
        start = self.seg_start
        words = text.split()
        step = (self.now - start) / max(1, len(words))
        msg: dict[str, Any] = {
            "type": "Results", "channel_index": [0, 1], "start": round(start, 3), "duration": round(self.now - start, 3),
            "is_final": is_final, "speech_final": speech_final, "from_finalize": from_finalize,
            "channel": {"alternatives": [{"transcript": text, "confidence": 0.99, "words": [
                {"word": w.lower().strip(".,?!"), "punctuated_word": w, "start": round(start + i * step, 3),
                 "end": round(start + (i + 1) * step, 3), "confidence": 0.99} for i, w in enumerate(words)]}]},
            "metadata": {"request_id": "fake", "model_info": {"name": "nova-3", "version": "fake", "arch": "fake"},
                         "model_uuid": "00000000-0000-0000-0000-000000000000"},
        }
        await self.ws.send_json(msg)
        if is_final and text and self.fake.sequence:
            self.fake.sequence.pop(0)
        await asyncio.sleep(0)
