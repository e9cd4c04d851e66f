"""G.722 and Opus through PyAV (FFmpeg's g722 and libopus), as codec objects.

G.722 (ITU-T G.722, RTP payload type 9) carries 16 kHz audio, the pipeline's own
rate: its frames go in and come out without resampling, so a G.722 caller reaches
the recogniser at 16 kHz. Its RTP clock is 8000 although it samples at 16 kHz (RFC
3551 §4.5.2, kept for historic reasons): 160 timestamp units and 160 bytes a 20 ms
packet at 64 kbit/s.

Opus (RFC 7587) is always signalled as opus/48000/2 and its RTP clock is 48 kHz
(960 units a 20 ms packet) whatever it really carries. voxd encodes mono 16 kHz
(wideband, the pipeline's rate) and decodes whatever the peer sends, mono, to 48
kHz (libopus here always gives 48 kHz), then 16 kHz. A payload the decoder cannot
read becomes a frame of silence: a lost packet is not a dead call.
"""

from __future__ import annotations

import logging
from typing import Literal, cast

import av
import numpy as np
from av.audio.codeccontext import AudioCodecContext
from av.audio.frame import AudioFrame as AvFrame
from av.codec.context import CodecContext

from voxd.media.audio import (
    FRAME_BYTES,
    FRAME_SAMPLES,
    SAMPLE_RATE,
    SILENCE_FRAME,
    FrameSplitter,
    StreamResampler,
)
from voxd.media.codecs.base import Codec, Decoder, Encoder
from voxd.media.frame import AudioFrame

log = logging.getLogger("voxd.codecs")

G722_PAYLOAD_BYTES = 160  # 20 ms at 64 kbit/s
OPUS_RATE = 48_000
OPUS_BITRATE = 32_000  # wideband speech; libopus' own default is higher than speech needs
# libopus complexity 0-10 (default 10): 5 costs about a third of the CPU (scripts/bench_codecs.py)
# for speech that sounds the same, and a daemon encodes one stream per call
OPUS_OPTIONS = {"compression_level": "5"}


def _context(name: str, mode: Literal["r", "w"], rate: int, *, bit_rate: int | None = None,
             options: dict[str, str] | None = None) -> AudioCodecContext:
    ctx = cast(AudioCodecContext, CodecContext.create(name, mode))
    if options:
        ctx.options = dict(options)
    ctx.sample_rate = rate
    ctx.layout = "mono"
    if mode == "w":
        ctx.format = "s16"
    if bit_rate is not None:
        ctx.bit_rate = bit_rate
    ctx.open()
    return ctx


def _av_frame(pcm: bytes, pts: int) -> AvFrame:
    samples = np.frombuffer(pcm, "<i2").reshape(1, -1)
    frame = AvFrame.from_ndarray(samples, format="s16", layout="mono")
    frame.sample_rate = SAMPLE_RATE
    frame.pts = pts
    return frame


def _decoded(frames: list[AvFrame]) -> bytes:
    """Decoded frames as mono s16 bytes (a packed or planar, s16 or float layout)."""
    out = []
    for f in frames:
        data = f.to_ndarray()
        if data.dtype != np.int16:
            data = np.clip(data * 32768.0, -32768, 32767).astype(np.int16)
        if data.ndim == 2 and data.shape[0] > 1:  # planar with several channels: the first
            data = data[0]
        out.append(data.reshape(-1).astype("<i2").tobytes())
    return b"".join(out)


class AvEncoder(Encoder):
    """One PyAV encoder context: a 20 ms 16 kHz frame in, one packet out."""

    def __init__(self, name: str, codec: str, bit_rate: int | None = None,
                 options: dict[str, str] | None = None) -> None:
        self.name = name
        self._codec, self._bit_rate, self._options = codec, bit_rate, options
        self._ctx = self._open()
        self._pts = 0

    def encode(self, frame: AudioFrame) -> bytes:
        payload = frame.payload_in(self.name)
        if payload is not None:
            return payload
        packets = self._ctx.encode(_av_frame(frame.pcm, self._pts))
        self._pts += FRAME_SAMPLES
        return b"".join(bytes(p) for p in packets)

    def _open(self) -> AudioCodecContext:
        return _context(self._codec, "w", SAMPLE_RATE, bit_rate=self._bit_rate, options=self._options)

    def reset(self) -> None:
        self._ctx = self._open()
        self._pts = 0


class AvDecoder(Decoder):
    """One PyAV decoder context; its output resampled to 16 kHz when it is not."""

    def __init__(self, codec: str, rate: int) -> None:
        self._ctx = _context(codec, "r", rate)
        self._up = StreamResampler(rate, SAMPLE_RATE)
        self._split = FrameSplitter(FRAME_BYTES)
        self.errors = 0  # payloads that did not decode (each became silence)

    def _pcm(self, payload: bytes) -> bytes:
        try:
            frames = self._ctx.decode(av.packet.Packet(payload))
        except (av.error.FFmpegError, ValueError) as e:
            self.errors += 1
            if self.errors == 1:
                log.info("codec: undecodable payload (%d bytes): %s", len(payload), e)
            return b""
        return self._up.process(_decoded(frames))

    def decode(self, payload: bytes) -> list[AudioFrame]:
        return [AudioFrame(f) for f in self._split.push(self._pcm(payload))]

    def decode_packet(self, payload: bytes) -> AudioFrame:
        """One packet, one frame: a resampler's start-up delay is padded, not carried."""
        pcm = self._pcm(payload)
        return AudioFrame(pcm[-FRAME_BYTES:] if len(pcm) >= FRAME_BYTES else (pcm + SILENCE_FRAME)[:FRAME_BYTES])


class G722(Codec):
    name = "G722"
    stateful = True
    clock_rate = 8_000  # RFC 3551: 8000 although it samples at 16 kHz

    @property
    def payload_bytes(self) -> int:
        return G722_PAYLOAD_BYTES

    def encoder(self) -> AvEncoder:
        return AvEncoder(self.name, "g722")

    def decoder(self) -> AvDecoder:
        return AvDecoder("g722", SAMPLE_RATE)


class Opus(Codec):
    name = "opus"
    stateful = True
    clock_rate = OPUS_RATE
    channels = 2  # as RFC 7587 has it signalled, whatever the stream carries

    def encoder(self) -> AvEncoder:
        return AvEncoder(self.name, "libopus", bit_rate=OPUS_BITRATE, options=OPUS_OPTIONS)

    def decoder(self) -> AvDecoder:
        return AvDecoder("libopus", OPUS_RATE)


G722_CODEC = G722()
OPUS_CODEC = Opus()
