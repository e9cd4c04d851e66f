"""A local ElevenLabs stream-input websocket (`/v1/text-to-speech/{voice_id}/stream-input`).

Client -> server: `{"text": " ", voice_settings, generation_config}` first, then
`{"text": "... ", "try_trigger_generation"|"flush"}` chunks, then `{"text": ""}` to
close. Server -> client: `{"audio": <base64>, "isFinal": null, "alignment": {...},
"normalizedAlignment": {...}}` per generated chunk, then `{"isFinal": true}` and a
normal close. The "voice" is a tone, 60 ms per character, so what the caller
heard can be measured. Faults: "stall", "drop" (1011 after the first chunk),
"garbage" (malformed JSON after the first chunk), "quota" (an error message then
1008), "reject" (HTTP 500 at the handshake).
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

MS_PER_CHAR = 60


def tone(chars: int, rate: int, hz: float = 440.0) -> np.ndarray:
    n = int(chars * MS_PER_CHAR / 1000 * rate)
    return (np.sin(2 * np.pi * hz * np.arange(n) / rate) * 8000).astype("<i2")


@dataclass
class Session:
    voice_id: str
    query: dict[str, str]
    api_key: str | None
    init: dict[str, Any] | None = None
    chunks: list[dict[str, Any]] = field(default_factory=list)
    spoken: str = ""  # text turned into audio
    closed_by_client: bool = False
    aborted: bool = False  # the client went away while audio was still being generated
    audio: bytearray = field(default_factory=bytearray)  # every audio byte sent, as sent (before base64)


class FakeElevenLabs:
    def __init__(self, faults: list[str] | None = None, chunk_delay_s: float = 0.001) -> None:
        self.faults = list(faults or [])
        self.chunk_delay_s = chunk_delay_s
        self.sessions: list[Session] = []
        self.url = ""
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None

    @property
    def texts(self) -> list[str]:
        return [s.spoken.strip() for s in self.sessions if s.spoken.strip()]

    async def start(self) -> FakeElevenLabs:
        app = web.Application()
        app.router.add_get("/v1/text-to-speech/{voice_id}/stream-input", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        fault = self.faults.pop(0) if self.faults else None
        if fault == "reject":
            return web.Response(status=500, text="unavailable")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        s = Session(request.match_info["voice_id"], dict(request.query), request.headers.get("xi-api-key"))
        self.sessions.append(s)
        pending = ""
        work: list[str | None] = []  # text to voice at each flush; None = the close message
        wake = asyncio.Event()
        gen = asyncio.ensure_future(self._generate(ws, s, fault, work, wake))
        async for msg in ws:  # keep receiving while generating, to see the client leave
            if msg.type != WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if s.init is None:
                assert data["text"] == " ", "the first message must be a single space"
                s.init = data
                continue
            s.chunks.append(data)
            pending += data["text"]
            if data.get("flush") or data["text"] == "":
                work.append(pending)
                pending = ""
            if data["text"] == "":
                work.append(None)
            wake.set()
        if not gen.done():
            s.aborted = True
            gen.cancel()
        elif not gen.cancelled():
            gen.exception()  # retrieved: a send to a client that left is not a test failure
        return ws

    async def _generate(self, ws: web.WebSocketResponse, s: Session, fault: str | None,
                        work: list[str | None], wake: asyncio.Event) -> None:
        rate = int(s.query.get("output_format", "pcm_16000").split("_")[1])
        sent_chunks = 0
        while True:
            while not work:
                wake.clear()
                await wake.wait()
            text = work.pop(0)
            if text is None:
                s.closed_by_client = True
                await ws.send_json({"isFinal": True})
                await ws.close()
                return
            if fault == "stall":
                await self._closing.wait()
                return
            words = text.split(" ")
            for i in range(0, len(words), 3):  # audio in chunks of three words
                part = " ".join(words[i : i + 3]).strip()
                if not part:
                    continue
                part += " "
                if sent_chunks == 1 and fault == "drop":
                    await ws.close(code=1011, message=b"internal error")
                    return
                if sent_chunks == 1 and fault == "garbage":
                    await ws.send_str('{"audio": "AAAA", "isFinal": nu')
                    await self._closing.wait()
                    return
                if sent_chunks == 0 and fault == "quota":
                    await ws.send_json({"message": "This request exceeds your quota.", "error": "quota_exceeded", "code": 1008})
                    await ws.close(code=1008, message=b"quota_exceeded")
                    return
                pcm = tone(len(part), rate)
                if s.query.get("output_format") == "ulaw_8000":
                    from voxd.proto.g711 import ulaw_encode

                    audio = ulaw_encode(pcm)
                else:
                    audio = pcm.tobytes()
                align = {"chars": list(part), "charStartTimesMs": [j * MS_PER_CHAR for j in range(len(part))],
                         "charDurationsMs": [MS_PER_CHAR] * len(part)}
                await ws.send_json({"audio": base64.b64encode(audio).decode(), "isFinal": None,
                                    "normalizedAlignment": align, "alignment": align})
                s.spoken += part
                s.audio += audio
                sent_chunks += 1
                await asyncio.sleep(self.chunk_delay_s)
