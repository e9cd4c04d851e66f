"""Linear 16-bit PCM at any rate (the plain websocket protocol, a browser's decoded Opus)."""

from __future__ import annotations

from voxd.media.audio import FRAME_BYTES, SAMPLE_RATE, FrameSplitter, StreamResampler
from voxd.media.codecs.base import Codec, Decoder, Encoder
from voxd.media.frame import AudioFrame


class L16Encoder(Encoder):
    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._down = StreamResampler(SAMPLE_RATE, rate)

    def encode(self, frame: AudioFrame) -> bytes:
        """20 ms at `rate` (the resampler's delay makes the first few shorter)."""
        return self._down.process(frame.pcm)

    def reset(self) -> None:
        self._down = StreamResampler(SAMPLE_RATE, self.rate)


class L16Decoder(Decoder):
    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._up = StreamResampler(rate, SAMPLE_RATE)
        self._split = FrameSplitter(FRAME_BYTES)

    def decode(self, payload: bytes) -> list[AudioFrame]:
        if len(payload) % 2:
            payload = payload[:-1]
        return [AudioFrame(f) for f in self._split.push(self._up.process(payload))]


class L16(Codec):
    name = "L16"

    def __init__(self, rate: int = SAMPLE_RATE) -> None:
        self.clock_rate = rate

    @property
    def payload_bytes(self) -> int:
        return self.clock_rate * 2 // 50

    def encoder(self) -> L16Encoder:
        return L16Encoder(self.clock_rate)

    def decoder(self) -> L16Decoder:
        return L16Decoder(self.clock_rate)

    def silence(self) -> bytes:
        return bytes(self.payload_bytes)
