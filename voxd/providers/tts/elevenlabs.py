"""ElevenLabs streaming synthesis over the documented stream-input websocket
(`/v1/text-to-speech/{voice_id}/stream-input`).

The messages are the `elevenlabs` SDK's own models (InitializeConnection,
SendText, CloseConnection out; AudioOutput, FinalOutput in), and the URL is built
by the SDK's `build_ws_url`. The SDK's own client for this endpoint
(`ElevenLabs().text_to_speech.convert_realtime`) is synchronous: it would block
the event loop (or hold a thread per clause), it hides its socket, so a barge-in
could not close it, and it forces wss:// whatever the base URL says. So the socket here is the `websockets` asyncio
client the SDK itself depends on.

Each clause the session speaks is one short socket: the initial " " message with
voice settings and a short chunk schedule, the clause's text chunks, a flush,
and the close message; audio (PCM or mu-law, as `output_format` asks) streams
back until `isFinal`. Mu-law (`ulaw_8000`) is yielded as PCM for the pipeline plus
the server's own bytes (`AudioChunk.payload`, codec PCMU), so a PCMU leg (SIP, Twilio,
Telnyx) sends exactly what ElevenLabs made, with no resampling or re-encoding. Cancelling the iterating task (barge-in) closes the socket.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from voxd.core.egress import EgressPolicy, EgressRefused
from voxd.core.egress_http import ws_connect_kwargs
from voxd.media.frame import AudioChunk
from voxd.providers.base import ProviderError, TextToSpeech
from voxd.providers.engines import BuildContext, EngineSpec, Options, register
from voxd.providers.keys import Secret

if TYPE_CHECKING:
    from voxd.agents.schema import VoiceConfig

log = logging.getLogger("voxd.providers.elevenlabs")

DEFAULT_URL = "https://api.elevenlabs.io"
RATES = {"pcm_16000": 16_000, "pcm_22050": 22_050, "pcm_24000": 24_000, "ulaw_8000": 8_000}
_CHUNK = re.compile(r"[^,;:.!?]+[,;:.!?]*\s*")


class SynthesisFailed(ProviderError):
    """A stream broke after some audio; `spoken_chars` of the text were already voiced
    (from the server's alignment data), so a fallback voice can say only the rest."""

    def __init__(self, provider: str, message: str, spoken_chars: int) -> None:
        super().__init__(provider, message, retryable=True)
        self.spoken_chars = spoken_chars


def text_chunks(text: str) -> list[str]:
    """The clause split at punctuation, each chunk ending in one space (as the API asks)."""
    parts = [m.group(0).strip() for m in _CHUNK.finditer(text)]
    return [p + " " for p in parts if p] or [text.strip() + " "]


class ElevenLabsTTS(TextToSpeech):
    name = "elevenlabs"

    def __init__(
        self,
        api_key: Secret,
        voice_id: str,
        *,
        model: str | None = None,
        output_format: str = "pcm_16000",
        base_url: str | None = None,
        speed: float = 1.0,
        first_audio_timeout_s: float = 5.0,
        idle_timeout_s: float = 10.0,
        stability: float | None = None,
        similarity_boost: float | None = None,
        chunk_length_schedule: list[int] | None = None,
        policy: EgressPolicy | None = None,
    ) -> None:
        if output_format not in RATES:
            raise ValueError(f"output_format {output_format!r}: expected one of {sorted(RATES)}")
        self._key = api_key
        self.voice_id = voice_id
        self.model = model or "eleven_flash_v2_5"
        self.output_format = output_format
        self.sample_rate = RATES[output_format]
        self.base_url = (base_url or DEFAULT_URL).rstrip("/")
        self.speed = speed
        self.first_audio_timeout_s = first_audio_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.stability = stability
        self.similarity_boost = similarity_boost
        self.chunk_length_schedule = chunk_length_schedule or [50]
        self.policy = policy or EgressPolicy()

    def __repr__(self) -> str:
        return f"ElevenLabsTTS(voice_id={self.voice_id!r}, model={self.model!r}, format={self.output_format!r})"

    def url(self) -> str:
        from elevenlabs.url_utils import build_ws_url

        return build_ws_url(
            self.base_url, ["v1", "text-to-speech", self.voice_id, "stream-input"],
            {"model_id": self.model, "output_format": self.output_format, "inactivity_timeout": "20"},
        )

    def _messages(self, text: str) -> list[str]:
        from elevenlabs.types import (
            CloseConnection,
            GenerationConfig,
            InitializeConnection,
            RealtimeVoiceSettings,
            SendText,
        )

        given = {"speed": self.speed if self.speed != 1.0 else None,
                 "stability": self.stability, "similarity_boost": self.similarity_boost}
        settings = {k: v for k, v in given.items() if v is not None}
        init = InitializeConnection(
            voice_settings=RealtimeVoiceSettings(**settings) if settings else None,
            generation_config=GenerationConfig(chunk_length_schedule=[float(n) for n in self.chunk_length_schedule]),
        )
        chunks = text_chunks(text)
        out = [init.dict()]
        out += [SendText(text=c, try_trigger_generation=True).dict() for c in chunks[:-1]]
        out += [SendText(text=chunks[-1], flush=True).dict(), CloseConnection().dict()]
        return [json.dumps(m) for m in out]

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus, WebSocketException

        spoken = 0
        got_audio = False
        carry = b""  # an odd byte of PCM split across two messages
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.first_audio_timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                url = self.url()
                pinned = await ws_connect_kwargs(self.policy, "providers", url)  # the checked address
                ws = await connect(url, additional_headers={"xi-api-key": self._key.reveal()},
                                   open_timeout=None, close_timeout=1.0, max_size=2**24, **pinned)
            try:
                for m in self._messages(text):
                    await ws.send(m)
                while True:
                    wait_until = deadline if not got_audio else loop.time() + self.idle_timeout_s
                    async with asyncio.timeout_at(wait_until):
                        raw = await ws.recv()
                    msg = _parse(raw)
                    if msg is None:
                        raise SynthesisFailed(self.name, "malformed JSON from server", spoken)
                    if msg.get("audio"):
                        chunk, carry = self._decode(msg["audio"], carry)
                        spoken += _aligned_chars(msg)
                        got_audio = True
                        if chunk is not None:
                            yield chunk
                    elif msg.get("isFinal"):
                        return
                    elif msg.get("error") or msg.get("message"):
                        raise SynthesisFailed(self.name, f"server error: {msg.get('error') or msg.get('message')}", spoken)
            finally:
                await ws.close()
        except ProviderError:
            raise
        except EgressRefused as e:
            raise ProviderError(self.name, f"destination refused: {e}", retryable=False) from None
        except TimeoutError:
            what = "no audio" if not got_audio else "audio stalled"
            raise SynthesisFailed(self.name, f"{what} within {self.first_audio_timeout_s if not got_audio else self.idle_timeout_s:g}s", spoken) from None
        except InvalidStatus as e:
            code = e.response.status_code
            raise ProviderError(self.name, f"HTTP {code} on connect", retryable=code not in (401, 403)) from None
        except (OSError, WebSocketException) as e:
            close = getattr(getattr(e, "rcvd", None), "code", None)
            reason = f"socket closed ({close})" if close else f"{type(e).__name__}: {e}"
            raise SynthesisFailed(self.name, reason, spoken) from None

    def _decode(self, b64: str, carry: bytes) -> tuple[AudioChunk | None, bytes]:
        """One audio message -> a chunk (None if it held no whole sample) and the odd byte
        of PCM carried to the next message."""
        data = base64.b64decode(b64)
        if self.output_format == "ulaw_8000":  # a byte a sample: nothing to carry
            from voxd.proto.g711 import ulaw_decode

            if not data:
                return None, carry
            return AudioChunk(ulaw_decode(data).astype("<i2").tobytes(), data, "PCMU"), carry
        pcm = carry + data
        cut = len(pcm) // 2 * 2
        return (AudioChunk(pcm[:cut]) if cut else None), pcm[cut:]


def _parse(raw: str | bytes) -> dict[str, Any] | None:
    try:
        msg = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return msg if isinstance(msg, dict) else None


def _aligned_chars(msg: dict[str, Any]) -> int:
    from elevenlabs.core.unchecked_base_model import construct_type
    from elevenlabs.types import AudioOutput

    out = construct_type(type_=AudioOutput, object_=msg)
    chars = getattr(getattr(out, "alignment", None), "chars", None)
    return len(chars) if chars else 0


# ---------------------------------------------------------------- registration


class ElevenLabsEngineOptions(Options):
    stability: float | None = None
    similarity_boost: float | None = None
    chunk_length_schedule: list[int] | None = None
    idle_timeout_s: float = 10.0


def _build(cfg: VoiceConfig, opts: ElevenLabsEngineOptions, ctx: BuildContext) -> ElevenLabsTTS:
    assert cfg.voice_id
    return ElevenLabsTTS(ctx.api_key(cfg, "elevenlabs"), cfg.voice_id, model=cfg.model,
                         output_format=cfg.output_format, base_url=cfg.base_url, speed=cfg.speed,
                         first_audio_timeout_s=cfg.first_audio_timeout_s, policy=ctx.outbound.policy, **opts.given())


def _needs_voice_id(cfg: VoiceConfig) -> str | None:
    return None if cfg.voice_id else "engine 'elevenlabs' needs voice_id"


register(EngineSpec("tts", "elevenlabs", _build, options=ElevenLabsEngineOptions,
                    prices={"characters": 0.05e-3},  # flash/turbo models, per character
                    url="https://api.elevenlabs.io", secret="elevenlabs", check=_needs_voice_id))
