"""How transports and the call session meet.

A transport (SIP/RTP, websocket, WebRTC, the WAV harness) owns the media clock.
Every 20 ms it gives the session one frame of caller audio and takes one frame of
bot audio:

    session.feed_audio(frame)        # 640 bytes: 16 kHz mono s16le, 20 ms
    out = session.next_frame()       # 640 bytes of bot audio, or None for silence

Digits from any source arrive as `session.feed_dtmf("5", source="rfc4733")`.
When the far end hangs up: `await session.close("caller_hangup", ended_by="caller")`.

The session acts on the call through the `CallControl` the transport implements,
and on its models through `Engines`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from voxd.providers.base import LanguageModel, SpeechToText, TextToSpeech


class CallControl(Protocol):
    """What the session can ask of the transport that carries the call."""

    transport_name: str
    # the audio the call carries, for engines that can take it untouched: "mulaw"
    # (PCMU, Twilio) or None; see SpeechToText.stream
    carried_audio: str | None

    async def hangup(self) -> None:
        """End the call from our side (SIP BYE, websocket close...)."""

    async def transfer(self, target: str) -> bool:
        """Blind transfer; True when the far end accepted it."""

    async def send_dtmf(self, digits: str) -> None:
        """Send keypad digits to the far end (RFC 4733 for SIP)."""

    def clear_output(self) -> None:
        """Bot audio was cancelled: drop anything the transport buffered downstream
        (queued RTP, a platform's playback buffer via Twilio `clear`)."""


class NullControl:
    """A CallControl for harnesses and tests: records what was asked."""

    transport_name = "local"
    carried_audio: str | None = None

    def __init__(self) -> None:
        self.hung_up = False
        self.transfers: list[str] = []
        self.sent_dtmf: list[str] = []
        self.clears = 0

    async def hangup(self) -> None:
        self.hung_up = True

    async def transfer(self, target: str) -> bool:
        self.transfers.append(target)
        return False

    async def send_dtmf(self, digits: str) -> None:
        self.sent_dtmf.append(digits)

    def clear_output(self) -> None:
        self.clears += 1


@dataclass
class Engines:
    stt: SpeechToText
    llm: LanguageModel
    tts: TextToSpeech
    # Silero confirmation (probability of speech for a short window); None = trust webrtcvad
    confirm: Callable[[np.ndarray], Awaitable[float]] | None = None
    # Smart Turn (probability the turn is complete); None = silence-only endpointing
    turn_model: Callable[[np.ndarray], Awaitable[float]] | None = None
