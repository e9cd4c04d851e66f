"""The unit of audio between a transport and a call: one 20 ms frame.

`pcm` is what the pipeline runs on (16 kHz mono s16le, 640 bytes). Where the wire
carried the same 20 ms in a codec an engine can take as is (G.711 mu-law for a
PCMU SIP leg or a Twilio stream), `payload` holds those bytes untouched and `codec`
names them, so the recogniser gets the caller's own bytes and a mu-law TTS voice
reaches a PCMU leg without being decoded and re-encoded.
"""

from __future__ import annotations

from dataclasses import dataclass

from voxd.media.audio import FRAME_BYTES, SILENCE_FRAME


@dataclass(frozen=True, slots=True)
class AudioFrame:
    pcm: bytes
    payload: bytes | None = None
    codec: str | None = None  # the codec name of `payload` ("PCMU", "PCMA")

    def __post_init__(self) -> None:
        if len(self.pcm) != FRAME_BYTES:
            object.__setattr__(self, "pcm", (self.pcm + SILENCE_FRAME)[:FRAME_BYTES])

    def payload_in(self, codec: str) -> bytes | None:
        """The frame as `codec` carried it, if it was."""
        return self.payload if self.codec == codec else None


SILENCE = AudioFrame(SILENCE_FRAME)
