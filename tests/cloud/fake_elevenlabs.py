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


class FakeElevenLabs:
    def __init__(self, faults: list[str] | None = None) -> None:
        self.faults = list(faults or [])
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
        rate = int(s.query.get("output_format", "pcm_16000").split("_")[1])
        pending = ""
        sent_chunks = 0
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if s.init is None:
                assert data["text"] == " ", "the first message must be a single space"
                s.init = data
                continue
            s.chunks.append(data)
            pending += data["text"]
            if not (data.get("flush") or data["text"] == ""):
                continue
            if fault == "stall":
                await self._closing.wait()
                break
            words = pending.split(" ")
            pending = ""
            for i in range(0, len(words), 3):  # audio in chunks of three words
                part = " ".join(words[i : i + 3]).strip()
                if not part:
                    continue
                part += " "
                if sent_chunks == 1 and fault == "drop":
                    await ws.close(code=1011, message=b"internal error")
                    return ws
                if sent_chunks == 1 and fault == "garbage":
                    await ws.send_str('{"audio": "AAAA", "isFinal": nu')
                    await self._closing.wait()
                    return ws
                if sent_chunks == 0 and fault == "quota":
                    await ws.send_json({"message": "This request exceeds your quota.", "error": "quota_exceeded", "code": 1008})
                    await ws.close(code=1008, message=b"quota_exceeded")
                    return ws
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
                sent_chunks += 1
                await asyncio.sleep(0.001)
            if data["text"] == "":
                s.closed_by_client = True
                await ws.send_json({"isFinal": True})
                await ws.close()
                break
        return ws
