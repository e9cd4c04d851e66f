"""The bot's outbound audio: a clearable, pausable frame queue that knows what was heard.

TTS pushes PCM per text segment (a clause); the transport pulls one 20 ms frame per
tick. On barge-in the queue is paused at once (the caller stops hearing the bot on
the next tick) and then either resumed (a backchannel) or cleared. `heard_text()`
reports the words the caller actually heard, so the LLM context stays honest.

A segment whose voice made the leg's own codec (a mu-law voice on a PCMU leg:
`Playout(carries="PCMU")`) keeps those bytes next to its PCM; its frames then follow
the voice's bytes, 160 a frame, so every byte the voice made reaches the wire as it
was (the PCM beside them, resampled once, is only the pipeline's copy).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from voxd.media import codecs
from voxd.media.audio import FRAME_BYTES
from voxd.media.frame import AudioFrame

PCM_PER_PAYLOAD = 4  # G.711: 640 bytes of 16 kHz PCM per 160 wire bytes


@dataclass
class Segment:
    text: str
    queued_bytes: int = 0
    played_bytes: int = 0
    complete: bool = False  # all audio for this text has been pushed
    audio: bytearray = field(default_factory=bytearray, repr=False)
    # the same audio as a voice produced it in a wire codec (a mu-law voice), if it did:
    # a leg that carries that codec sends these bytes instead of re-encoding `audio`
    payload: bytearray | None = field(default=None, repr=False)
    codec: str | None = None

    def heard_fraction(self) -> float:
        if self.queued_bytes == 0:
            return 0.0
        return min(1.0, self.played_bytes / self.queued_bytes)


class Playout:
    def __init__(self, frame_bytes: int = FRAME_BYTES, carries: str | None = None) -> None:
        self.frame_bytes = frame_bytes
        # the codec the call's leg sends ("PCMU"): a voice's bytes in it are kept (see reply.synthesize_into)
        self.carries = carries
        self._queue: deque[Segment] = deque()
        self._done: list[Segment] = []  # fully or partially played segments of this reply
        self.paused = False
        self.frames_out = 0

    # -- producer side
    def open_segment(self, text: str) -> Segment:
        seg = Segment(text)
        self._queue.append(seg)
        return seg

    def push(self, seg: Segment, pcm: bytes, payload: bytes | None = None, codec: str | None = None) -> None:
        """Queue PCM for `seg`; `payload`/`codec`: the same audio in a G.711 codec, when
        the voice produced that (160 bytes per 640 of PCM, give or take a resampler's
        delay; `b""` adds PCM only, e.g. a resampler's tail, and keeps the segment's
        bytes). PCM without a payload after some with one ends the pairing: the rest of
        the segment is encoded from its PCM."""
        if seg not in self._queue:
            return  # cleared while TTS was still producing
        if payload is not None and (seg.queued_bytes == 0 or seg.payload is not None):
            if seg.payload is None:
                seg.payload, seg.codec = bytearray(), codec
            seg.payload += payload
        elif seg.payload is not None:  # PCM-only audio after encoded: no longer aligned
            seg.payload = None
        seg.audio += pcm
        seg.queued_bytes += len(pcm)

    def finish_segment(self, seg: Segment) -> None:
        seg.complete = True

    # -- consumer side
    @property
    def has_audio(self) -> bool:
        return any(s.audio or s.payload for s in self._queue)

    @property
    def pending(self) -> bool:
        """Audio queued or a segment still being synthesised."""
        return bool(self._queue)

    def next_frame(self) -> AudioFrame | None:
        if self.paused:
            return None
        while self._queue:
            seg = self._queue[0]
            if seg.payload is not None:
                if seg.payload or not seg.complete:
                    return self._carried_frame(seg)
                seg.audio.clear()  # the voice's bytes are all sent: the rest is a resampler's tail
            if len(seg.audio) >= self.frame_bytes or (seg.complete and seg.audio):
                chunk = bytes(seg.audio[: self.frame_bytes])
                del seg.audio[: self.frame_bytes]
                seg.played_bytes += len(chunk)
                if seg.complete and not seg.audio:
                    self._done.append(self._queue.popleft())
                self.frames_out += 1
                return AudioFrame(chunk)
            if seg.complete:  # empty segment (TTS produced nothing, or all of it was sent)
                self._done.append(self._queue.popleft())
                continue
            return None  # waiting for TTS: underrun
        return None

    def _carried_frame(self, seg: Segment) -> AudioFrame | None:
        """The next frame of a segment that carries its voice's codec bytes: the bytes
        set the pace (a short last piece is padded with the codec's silence) and the PCM
        beside them is taken frame for frame; what the resampler left over at the end
        (a few samples) is dropped with the segment."""
        assert seg.payload is not None and seg.codec is not None
        n = self.frame_bytes // PCM_PER_PAYLOAD
        if len(seg.payload) < n and not seg.complete:
            return None  # waiting for TTS: underrun
        payload = bytes(seg.payload[:n])
        del seg.payload[:n]
        if len(payload) < n:
            payload += codecs.get(seg.codec).silence()[: n - len(payload)]
        chunk = bytes(seg.audio[: self.frame_bytes])
        del seg.audio[: self.frame_bytes]
        seg.played_bytes += self.frame_bytes
        if seg.complete and not seg.payload:
            seg.audio.clear()
            self._done.append(self._queue.popleft())
        self.frames_out += 1
        return AudioFrame(chunk, payload, seg.codec)

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def clear(self) -> None:
        """Drop everything queued; keep what was played for heard_text()."""
        while self._queue:
            seg = self._queue.popleft()
            seg.audio.clear()
            if seg.payload is not None:
                seg.payload.clear()
            if seg.played_bytes:
                self._done.append(seg)
        self.paused = False

    def rewind(self, report_position_s: float, frame_s: float = 0.02) -> int:
        """The far end played only `report_position_s` seconds of everything this
        playout handed out (a `PlaybackFinished`): mark the rest of this reply as
        unheard. Returns the frames taken back."""
        heard = round(report_position_s / frame_s)
        unheard = max(0, self.frames_out - heard)
        left = unheard * self.frame_bytes
        for seg in reversed(self._done + list(self._queue)):
            if left <= 0:
                break
            take = min(seg.played_bytes, left)
            seg.played_bytes -= take
            left -= take
        return (unheard * self.frame_bytes - left) // self.frame_bytes

    def new_reply(self) -> None:
        """Forget per-reply bookkeeping (called when a new bot turn starts)."""
        self._done = []

    def heard_text(self) -> str:
        parts: list[str] = []
        for seg in self._done + list(self._queue):
            frac = seg.heard_fraction()
            if seg.played_bytes == 0:
                continue
            words = seg.text.split()
            if frac >= 0.999:
                parts.append(seg.text.strip())
            else:
                n = int(len(words) * frac)
                if n:
                    parts.append(" ".join(words[:n]))
        return " ".join(p for p in parts if p)
