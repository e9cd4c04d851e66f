"""G.711 (PCMU, PCMA) as a codec object, shared by RTP and the websocket platforms.

8 kHz, one byte a sample: 160 bytes per 20 ms. The decoder hands each 16 kHz frame
on with the 160 wire bytes it came from (`AudioFrame.payload`), so a recogniser that
takes mu-law gets the caller's own bytes; the encoder passes a frame that already
carries this codec's bytes (a mu-law TTS voice) straight through.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from voxd.media.audio import FRAME_BYTES, SILENCE_FRAME, FrameSplitter, StreamResampler
from voxd.media.codecs.base import Codec, Decoder, Encoder
from voxd.media.frame import AudioFrame
from voxd.proto.g711 import encoder_for

PAYLOAD_BYTES = 160  # 20 ms at 8 kHz
_KEEP_PAYLOAD = 10 * PAYLOAD_BYTES  # unpaired wire bytes kept at most (a resampler's delay is far less)


class G711Encoder(Encoder):
    def __init__(self, name: str, table: npt.NDArray[np.uint8]) -> None:
        self.name = name
        self._table = table
        self._down = StreamResampler(16_000, 8_000)
        self._silence = table[np.zeros(PAYLOAD_BYTES, np.int16).view(np.uint16)].tobytes()
        self.passed_through = 0  # frames sent as they came (no decode, resample, re-encode)

    def encode(self, frame: AudioFrame) -> bytes:
        payload = frame.payload_in(self.name)
        if payload is not None and len(payload) == PAYLOAD_BYTES:
            self.passed_through += 1
            return payload
        pcm8 = np.frombuffer(self._down.process(frame.pcm), np.int16)
        data = self._table[pcm8.view(np.uint16)].tobytes() if pcm8.size else self._silence
        if len(data) != PAYLOAD_BYTES:  # the resampler's start-up delay: keep the packet size
            data = (data + self._silence)[:PAYLOAD_BYTES]
        return data

    def reset(self) -> None:
        self._down = StreamResampler(16_000, 8_000)


class G711Decoder(Decoder):
    def __init__(self, name: str, table: npt.NDArray[np.int16], carried: bool) -> None:
        self.name = name
        self._table = table
        self._carried = carried  # hand the wire bytes on with each frame
        self._up = StreamResampler(8_000, 16_000)
        self._split = FrameSplitter(FRAME_BYTES)
        self._wire = bytearray()  # wire bytes not yet paired with a frame

    def narrowband(self, payload: bytes) -> npt.NDArray[np.int16]:
        """The payload as 8 kHz samples (for in-band tone detection)."""
        return self._table[np.frombuffer(payload, np.uint8)]

    def decode(self, payload: bytes) -> list[AudioFrame]:
        pcm = self._up.process(self.narrowband(payload).tobytes())
        frames = self._split.push(pcm)
        if not self._carried:
            return [AudioFrame(f) for f in frames]
        self._wire += payload
        out = []
        for f in frames:
            wire = None
            if len(self._wire) >= PAYLOAD_BYTES:
                wire = bytes(self._wire[:PAYLOAD_BYTES])
                del self._wire[:PAYLOAD_BYTES]
            out.append(AudioFrame(f, wire, self.name if wire is not None else None))
        if len(self._wire) > _KEEP_PAYLOAD:
            del self._wire[:-PAYLOAD_BYTES]
        return out

    def decode_packet(self, payload: bytes, pcm8: npt.NDArray[np.int16] | None = None) -> AudioFrame:
        """Exactly one frame for one 20 ms packet (a clocked leg plays one per tick):
        the resampler's start-up delay is padded rather than carried."""
        samples = self.narrowband(payload) if pcm8 is None else pcm8
        frame = self._up.process(samples.tobytes())
        if len(frame) != FRAME_BYTES:
            frame = (frame + SILENCE_FRAME)[:FRAME_BYTES]
        return AudioFrame(frame, payload, self.name) if self._carried else AudioFrame(frame)


class G711(Codec):
    clock_rate = 8_000

    def __init__(self, name: str) -> None:
        self.name = name.upper()
        self._enc, self._dec = encoder_for(self.name)

    @property
    def payload_bytes(self) -> int:
        return PAYLOAD_BYTES

    def encoder(self) -> G711Encoder:
        return G711Encoder(self.name, self._enc)

    def decoder(self) -> G711Decoder:
        # only mu-law is handed on: no recogniser here takes A-law as is
        return G711Decoder(self.name, self._dec, carried=self.name == "PCMU")

    def silence(self) -> bytes:
        return self._enc[np.zeros(PAYLOAD_BYTES, np.int16).view(np.uint16)].tobytes()


PCMU = G711("PCMU")
PCMA = G711("PCMA")
