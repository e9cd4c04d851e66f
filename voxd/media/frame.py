"""The unit of audio between a transport and a call: one 20 ms frame.

`pcm` is what the pipeline runs on (16 kHz mono s16le, 640 bytes). Where the wire
carried the same 20 ms in a codec an engine can take as is (G.711 mu-law for a
PCMU SIP leg or a Twilio stream), `payload` holds those bytes untouched and `codec`
names them, so the recogniser gets the caller's own bytes and a mu-law TTS voice
reaches a PCMU leg without being decoded and re-encoded.

`AudioChunk` is the same vocabulary for what a voice streams: PCM of any length at
the voice's own rate, plus the same audio in a wire codec when the voice produced
that (ElevenLabs `ulaw_8000` is PCMU).
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


def split_frames(pcm: bytes) -> list[AudioFrame]:
    """16 kHz PCM of any length as 20 ms frames (the last padded with silence)."""
    return [AudioFrame(pcm[i : i + FRAME_BYTES]) for i in range(0, len(pcm) - len(pcm) % 2, FRAME_BYTES)]


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """A piece of synthesised speech, as a voice streams it.

    `pcm`: mono s16le at the voice's `sample_rate`, any (even) length. `payload`: the
    same audio in the wire codec `codec` ("PCMU"), when that is what the voice made:
    a leg carrying that codec sends these bytes as they are (8 kHz G.711: one byte a
    sample, so its duration is `len(payload) / 8000` whatever the PCM's rate)."""

    pcm: bytes
    payload: bytes | None = None
    codec: str | None = None

    def payload_in(self, codec: str | None) -> bytes | None:
        """The chunk in `codec`, if the voice produced it so."""
        return self.payload if codec is not None and self.codec == codec else None
