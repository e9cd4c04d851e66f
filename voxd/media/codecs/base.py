"""What every codec provides (the aiortc `codecs/base.py` shape).

A `Codec` names a wire format and makes a per-call `Encoder` and `Decoder`; each
owns the resampler between the wire's rate and the pipeline's 16 kHz, so a
transport never resamples by hand. Frames are 20 ms `AudioFrame`s on the pipeline
side; on the wire side a payload is whatever the codec packs (160 bytes of G.711).
"""

from __future__ import annotations

import abc

from voxd.media.frame import AudioFrame


class Encoder(abc.ABC):
    @abc.abstractmethod
    def encode(self, frame: AudioFrame) -> bytes:
        """One 20 ms pipeline frame as this codec's payload. A frame that already
        carries this codec's payload is passed through untouched."""

    def reset(self) -> None:  # noqa: B027 - optional hook
        """Forget filter state (the audio stream was cut, e.g. a barge-in clear)."""


class Decoder(abc.ABC):
    @abc.abstractmethod
    def decode(self, payload: bytes) -> list[AudioFrame]:
        """Wire audio of any length -> whole 20 ms pipeline frames (a remainder is kept
        for the next call). Frames carry the payload bytes they came from when the
        codec is one engines can take as is."""

    def decode_packet(self, payload: bytes) -> AudioFrame:
        """Exactly one frame for one 20 ms packet (a clocked leg plays one per tick)."""
        frames = self.decode(payload)
        return frames[-1] if frames else AudioFrame(b"")


class Codec(abc.ABC):
    name: str  # SDP encoding name, e.g. "PCMU"
    clock_rate: int
    # payloads depend on the ones before (ADPCM, Opus): silence must go through the
    # call's own encoder, or the far end's decoder drifts from it (G.711 is stateless)
    stateful: bool = False

    @abc.abstractmethod
    def encoder(self) -> Encoder: ...

    @abc.abstractmethod
    def decoder(self) -> Decoder: ...

    @property
    def payload_bytes(self) -> int:
        """Bytes of one 20 ms payload (0 when variable)."""
        return 0

    @property
    def rtp_samples(self) -> int:
        """RTP timestamp units of one 20 ms packet (the RTP clock, not the sampling
        rate: 160 for G.722, whose clock is 8000, 960 for Opus)."""
        return self.clock_rate // 50

    def silence(self) -> bytes:
        """One 20 ms payload of silence."""
        return self.encoder().encode(AudioFrame(b""))
