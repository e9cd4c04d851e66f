"""A small adaptive jitter buffer: push RTP packets, pull one frame per tick."""

from __future__ import annotations

from .rtp import RtpPacket


class JitterBuffer:
    """Reorders packets of one audio stream and plays them out at a steady pace.

    ``push()`` packets as they arrive (with the arrival time), ``pop()`` once per
    frame tick (every ``frame_ms``). ``pop()`` returns a payload, or ``None`` when
    the frame is missing (lost, late, or still buffering) so the caller can play
    silence or conceal. Late and duplicate packets are dropped; an SSRC change or
    a large sequence jump restarts the stream. The target depth follows the
    measured interarrival jitter between ``min_ms`` and ``max_ms``.
    """

    def __init__(self, *, clock_rate: int = 8000, frame_ms: int = 20, min_ms: int = 20,
                 max_ms: int = 120) -> None:
        if not 0 < frame_ms <= min_ms <= max_ms:
            raise ValueError("need 0 < frame_ms <= min_ms <= max_ms")
        self.clock_rate = clock_rate
        self.frame_ms = frame_ms
        self.min_frames = max(1, min_ms // frame_ms)
        self.max_frames = max(self.min_frames, max_ms // frame_ms)
        self.target_frames = self.min_frames
        self.jitter_ms = 0.0
        self.played = 0
        self.missing = 0
        self.late = 0
        self.duplicates = 0
        self.overflow_drops = 0
        self.resets = 0
        self._reset(None)

    def _reset(self, ssrc: int | None) -> None:
        self._ssrc = ssrc
        self._packets: dict[int, RtpPacket] = {}
        self._next: int | None = None  # extended sequence number to play next
        self._highest: int | None = None
        self._buffering = True
        self._transit: float | None = None

    @property
    def depth(self) -> int:
        """Frames buffered from the play cursor on."""
        return len(self._packets)

    @property
    def target_ms(self) -> int:
        return self.target_frames * self.frame_ms

    def _extend(self, seq: int) -> int:
        if self._highest is None:
            return seq
        highest = self._highest
        base = highest & ~0xFFFF
        candidates = (base - 0x10000 + seq, base + seq, base + 0x10000 + seq)
        return min(candidates, key=lambda c: abs(c - highest))

    def push(self, packet: RtpPacket, arrival: float) -> None:
        if packet.ssrc != self._ssrc:
            if self._ssrc is not None:
                self.resets += 1
            self._reset(packet.ssrc)
        ext = self._extend(packet.sequence)
        if self._highest is not None and abs(ext - self._highest) > 1000:
            self.resets += 1
            self._reset(packet.ssrc)
            ext = packet.sequence
        self._update_jitter(packet, arrival)
        if self._next is not None and ext < self._next:
            self.late += 1
            # It missed its slot by little: the buffer is too shallow, grow it.
            if self._next - ext <= self.max_frames:
                self.target_frames = min(self.max_frames, self.target_frames + 1)
            return
        if ext in self._packets:
            self.duplicates += 1
            return
        self._packets[ext] = packet
        if self._highest is None or ext > self._highest:
            self._highest = ext
        while len(self._packets) > self.max_frames + 2:
            oldest = min(self._packets)
            del self._packets[oldest]
            self.overflow_drops += 1
            if self._next is not None and oldest >= self._next:
                self._next = oldest + 1

    def _update_jitter(self, packet: RtpPacket, arrival: float) -> None:
        transit = arrival * 1000.0 - packet.timestamp * 1000.0 / self.clock_rate
        if self._transit is not None:
            d = abs(transit - self._transit)
            if d < 2000:
                self.jitter_ms += (d - self.jitter_ms) / 16.0
        self._transit = transit
        want = int((self.frame_ms + 3 * self.jitter_ms) // self.frame_ms) + 1
        want = min(self.max_frames, max(self.min_frames, want))
        if want > self.target_frames:
            self.target_frames = want
        elif want < self.target_frames and self.played % 50 == 0:
            self.target_frames -= 1  # shrink slowly

    def pop(self) -> bytes | None:
        """The next frame's payload, or ``None`` for a missing frame."""
        if not self._packets:
            if not self._buffering and self._next is not None:
                # Underrun (loss, or the stream paused): skip the slot and re-buffer.
                self._next += 1
                self.missing += 1
                self._buffering = True
            return None
        if self._buffering:
            span = max(self._packets) - min(self._packets) + 1
            if span < self.target_frames:
                return None
            self._buffering = False
            if self._next is None or min(self._packets) > self._next:
                self._next = min(self._packets)
        assert self._next is not None
        # Too deep (clock drift or jitter spike over): skip one old frame.
        if max(self._packets) - self._next >= self.target_frames + 2:
            self._packets.pop(self._next, None)
            self._next += 1
            self.overflow_drops += 1
        packet = self._packets.pop(self._next, None)
        self._next += 1
        if packet is None:
            self.missing += 1
            return None
        self.played += 1
        return packet.payload
