"""Call recording on disk: a two-track timeline and the files it streams into.

`Timeline` places each 20 ms frame of the caller (left) and of the bot (right) at its
media-clock time, so the two tracks stay aligned sample for sample: a gap (no bot audio,
a paused track) is silence, and speech of both at once (barge-in) is overlap. It holds
only the last `window` of audio; everything older than the caller's clock minus a short
margin is handed to a `TrackWriter` once a second, so memory does not grow with the call.

Writers append as they go and leave a file readable after every `flush()`:
- `WavWriter` (standard library framing): PCM s16le, the RIFF and data sizes rewritten
  at each flush, so a process killed mid-call leaves a WAV valid up to its last flush.
- `OggOpusWriter` (PyAV): Opus in Ogg, the muxer writing out a page per flush; a cut
  file plays up to its last complete page. Encoding (about 4 ms of CPU per call-second)
  runs on one shared worker thread, off the event loop; a writer with more than
  `MAX_QUEUED` blocks waiting encodes inline, so memory stays bounded under overload.
"""

from __future__ import annotations

import logging
import struct
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Literal, Protocol

import numpy as np

log = logging.getLogger("voxd.recording")
Channels = Literal["stereo", "mono"]
Format = Literal["wav", "opus"]
RATE = 16000
MARGIN_S = 0.1  # frames may reach the recorder up to this late (the bot's tick runs beside the caller's)
FLUSH_EVERY_S = 1.0
MAX_QUEUED = 5  # blocks (seconds) of one call waiting for the encoder thread (320 KB at most)
_ENCODER: ThreadPoolExecutor | None = None
_ENCODER_LOCK = threading.Lock()


def _encoder() -> ThreadPoolExecutor:
    global _ENCODER
    with _ENCODER_LOCK:
        if _ENCODER is None:
            _ENCODER = ThreadPoolExecutor(1, thread_name_prefix="voxd-opus")
        return _ENCODER


class TrackWriter(Protocol):
    def write(self, block: np.ndarray) -> None:
        """Samples as int16, shape (n, channels)."""

    def flush(self) -> None:
        """Make everything written so far readable from the file."""

    def close(self) -> None: ...


def wav_header(channels: int, rate: int, data_bytes: int) -> bytes:
    block = channels * 2
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, 16)
            + b"data" + struct.pack("<I", data_bytes))


class WavWriter:
    def __init__(self, path: Path, channels: int, rate: int = RATE) -> None:
        self.channels = channels
        self.rate = rate
        self.data_bytes = 0
        self._f: BinaryIO = open(path, "wb")  # noqa: SIM115 (open for the call's life)
        self._f.write(wav_header(channels, rate, 0))
        self._f.flush()

    def write(self, block: np.ndarray) -> None:
        data = np.ascontiguousarray(block, dtype="<i2").tobytes()
        self._f.write(data)
        self.data_bytes += len(data)

    def flush(self) -> None:
        self._f.flush()  # the samples first, then the sizes that cover them
        self._f.seek(0)
        self._f.write(wav_header(self.channels, self.rate, self.data_bytes))
        self._f.seek(0, 2)
        self._f.flush()

    def close(self) -> None:
        if self._f.closed:
            return
        self.flush()
        self._f.close()


class OggOpusWriter:
    """Opus at 16 kHz in Ogg (one page a second: the muxer's page_duration, flushed as written)."""

    def __init__(self, path: Path, channels: int, rate: int = RATE, bitrate: int = 32000) -> None:
        import av

        self.channels = channels
        self.rate = rate
        self._container = av.open(str(path), "w", format="ogg",
                                  container_options={"page_duration": str(int(FLUSH_EVERY_S * 1_000_000)),
                                                     "flush_packets": "1"})
        self._stream = self._container.add_stream("libopus", rate=rate)
        self._stream.layout = "stereo" if channels == 2 else "mono"
        self._stream.bit_rate = bitrate
        self._pts = 0
        self._pending = np.zeros((0, channels), dtype=np.int16)
        self._frame = rate // 50  # Opus takes 20 ms frames
        self._closed = False
        self._jobs: list[Future[None]] = []  # in order on the one encoder thread

    def write(self, block: np.ndarray) -> None:
        self._jobs = [j for j in self._jobs if not j.done()]
        if len(self._jobs) >= MAX_QUEUED:
            self._jobs[-1].result()  # the thread is behind: wait for it rather than queue more
        self._jobs.append(_encoder().submit(self._add, block.astype(np.int16, copy=True)))

    def _add(self, block: np.ndarray) -> None:
        try:
            self._pending = np.concatenate([self._pending, block])
            whole = len(self._pending) // self._frame * self._frame
            if whole:
                self._encode(self._pending[:whole])
                self._pending = self._pending[whole:]
        except Exception:
            log.exception("encoding a recording failed")

    def _encode(self, samples: np.ndarray) -> None:
        import av

        layout = "stereo" if self.channels == 2 else "mono"
        for i in range(0, len(samples), self._frame):
            chunk = np.ascontiguousarray(samples[i:i + self._frame]).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout=layout)
            frame.sample_rate = self.rate
            frame.pts = self._pts
            self._pts += chunk.shape[1] // self.channels
            for packet in self._stream.encode(frame):
                self._container.mux(packet)

    def flush(self) -> None:
        pass  # pages go out as the muxer closes them (page_duration, flush_packets)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        _encoder().submit(self._finish).result()  # after this writer's queued blocks

    def _finish(self) -> None:
        if len(self._pending):
            pad = np.zeros((self._frame - len(self._pending), self.channels), dtype=np.int16)
            self._encode(np.concatenate([self._pending, pad]))
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()


def open_writer(path: Path, fmt: Format, channels: Channels) -> TrackWriter:
    n = 2 if channels == "stereo" else 1
    if fmt == "opus":
        return OggOpusWriter(path, n)
    return WavWriter(path, n)


class Timeline:
    """Two tracks on one media clock, streamed to `writer` (see the module docstring)."""

    def __init__(self, writer: TrackWriter, channels: Channels = "stereo", rate: int = RATE,
                 window_s: float = 2.0) -> None:
        self.writer = writer
        self.channels = channels
        self.rate = rate
        self._buf = np.zeros((int(window_s * rate), 2), dtype=np.int16)
        self._base = 0  # sample index of _buf[0]: everything before it has been written
        self._caller_end = 0  # samples of caller time seen (the clock)
        self._flushed_at = 0
        self.dropped = 0  # samples that came later than the margin (or beyond the window)
        self.samples_written = 0
        self.closed = False

    def place(self, track: int, at_s: float, pcm: bytes) -> None:
        """`pcm` (s16le mono at `rate`) of track 0 (caller) or 1 (bot) starting at `at_s`."""
        if self.closed or not pcm:
            return
        samples = np.frombuffer(pcm, dtype="<i2")
        start = round(at_s * self.rate)
        end = start + len(samples)
        if track == 0:
            self._caller_end = max(self._caller_end, end)
        lo = max(start, self._base)
        hi = min(end, self._base + len(self._buf))
        if hi <= lo:
            self.dropped += len(samples)
            return
        self.dropped += len(samples) - (hi - lo)
        self._buf[lo - self._base:hi - self._base, track] = samples[lo - start:hi - start]
        if track == 0 and self._caller_end - self._flushed_at >= FLUSH_EVERY_S * self.rate:
            self.flush()

    def advance(self, at_s: float) -> None:
        """The clock moved to `at_s` with nothing to place (a muted stretch): keep flushing."""
        self._caller_end = max(self._caller_end, round(at_s * self.rate))
        if self._caller_end - self._flushed_at >= FLUSH_EVERY_S * self.rate:
            self.flush()

    def flush(self, final: bool = False) -> None:
        upto = self._caller_end if final else self._caller_end - int(MARGIN_S * self.rate)
        upto = min(upto, self._base + len(self._buf))
        n = upto - self._base
        if n > 0:
            self._emit(self._buf[:n])
            if n < len(self._buf):
                self._buf[:-n] = self._buf[n:]  # numpy copies overlapping slices safely
            self._buf[-n:] = 0
            self._base = upto
        self.writer.flush()
        self._flushed_at = self._caller_end

    def _emit(self, block: np.ndarray) -> None:
        if self.channels == "mono":
            mixed = block.astype(np.int32).sum(axis=1)
            block = np.clip(mixed, -32768, 32767).astype(np.int16).reshape(-1, 1)
        self.writer.write(block)
        self.samples_written += len(block)

    @property
    def duration_s(self) -> float:
        return self.samples_written / self.rate

    def close(self) -> None:
        if self.closed:
            return
        self.flush(final=True)
        self.closed = True
        self.writer.close()
