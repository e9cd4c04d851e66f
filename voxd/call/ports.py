"""The whole contract between a transport and a call.

A transport (SIP/RTP, a websocket platform, WebRTC, the WAV harness) carries the
call; `voxd.net.leg.CallLeg` clocks it. Every 20 ms the session takes one frame of
caller audio and gives one frame of bot audio:

    session.feed_audio(frame)        # AudioFrame: 16 kHz mono s16le PCM, 20 ms
                                     #   (+ the wire's own bytes where it has them)
    out = session.next_frame()       # AudioFrame of bot audio, or None for silence

Digits from any source arrive as `session.feed_dtmf("5", source="rfc4733")`. What
the far end actually played comes back as `session.playback_finished(report)` (or
from `CallControl.clear()` on barge-in); a broken wire says
`session.transport_failed(message)`; the end is `await session.close(reason, ended_by)`
with a typed `EndReason`.

The session acts on the call through the `CallControl` the leg implements, and on
its models through `Engines`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from voxd.core.endreason import EndedBy, EndReason
from voxd.media.codecs.base import Codec
from voxd.media.frame import SILENCE, AudioFrame
from voxd.providers.base import LanguageModel, SpeechToText, TextToSpeech

__all__ = ["SILENCE", "AudioFrame", "CallControl", "EndReason", "EndedBy", "Engines", "NullControl",
           "PlaybackFinished", "TransferOutcome"]


@dataclass(frozen=True, slots=True)
class PlaybackFinished:
    """What the far end really played of the bot's audio (livekit's
    `PlaybackFinishedEvent` shape). `position_s`: seconds of bot audio, counted on the
    session's output since the call started (every frame `next_frame()` returned),
    that the caller has heard; `interrupted`: playback was cut (barge-in)."""

    position_s: float
    interrupted: bool


@dataclass(frozen=True, slots=True)
class TransferOutcome:
    """How an attended transfer went: ``ok`` when the caller was handed to the target;
    otherwise ``reason`` says why (the caller is back with the agent), for the agent."""

    ok: bool
    reason: str = ""


class CallControl(Protocol):
    """What the session can ask of the call's transport."""

    transport_name: str
    codec: Codec | None  # what the wire carries (a recogniser may take it as is), None if unknown

    async def hangup(self) -> None:
        """End the call from our side (SIP BYE, websocket close...)."""

    async def transfer(self, target: str) -> bool:
        """Blind transfer; True when the far end accepted it."""

    async def send_dtmf(self, digits: str) -> None:
        """Send keypad digits to the far end (RFC 4733 for SIP)."""

    def clear(self) -> PlaybackFinished | None:
        """Barge-in: bot audio was cancelled; drop anything buffered below the session
        (queued packets, a platform's playback buffer). Returns what the far end had
        really played, when the transport knows better than what it was handed."""

    def media_ended(self) -> None:
        """The session is closing: stop the media and release it before the record is saved."""


class NullControl:
    """A CallControl for harnesses and tests: records what was asked."""

    transport_name = "local"
    codec: Codec | None = None

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

    def clear(self) -> PlaybackFinished | None:
        self.clears += 1
        return None

    def media_ended(self) -> None:
        pass


@dataclass
class Engines:
    stt: SpeechToText
    llm: LanguageModel
    tts: TextToSpeech
    # Silero confirmation (probability of speech for a short window); None = trust webrtcvad
    confirm: Callable[[np.ndarray], Awaitable[float]] | None = None
    # Smart Turn (probability the turn is complete); None = silence-only endpointing
    turn_model: Callable[[np.ndarray], Awaitable[float]] | None = None
