"""What a SIP caller heard, on its own clock: bot utterances and reply latencies from
RTP, with no view into the daemon.

Positions are samples (8 kHz) of the caller's own outgoing RTP stream since the call
was answered: a received packet is placed where the caller's stream stood when it
arrived. A reply's latency is then (position of the first non-silent bot packet after
the caller stopped speaking) - (position of the caller's last speech sample), in ms.
Pure data; the asyncio side is `voxd.suites.sipcall`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

RATE = 8000
FRAME = 160  # samples in 20 ms at 8 kHz
SOUND_PEAK = 300  # a received frame whose peak is above this is bot sound (about -40 dBFS)
GAP_S = 0.6  # this much silence ends a bot utterance


def is_sound(pcm8k: np.ndarray) -> bool:
    return bool(pcm8k.size) and int(np.max(np.abs(pcm8k.astype(np.int32)))) > SOUND_PEAK


@dataclass
class Utterance:
    start: int  # position of its first non-silent frame
    end: int  # position just after its last non-silent frame
    chunks: list[np.ndarray] = field(default_factory=list)  # its audio, 8 kHz int16, gaps included

    @property
    def audio(self) -> np.ndarray:
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)


@dataclass
class WireMark:
    utterances: int
    speech_ends: int
    transfers: int
    position: int


class WireLog:
    """Bot audio split into utterances, and the caller's ends of speech."""

    def __init__(self, gap_s: float = GAP_S) -> None:
        self.gap = round(gap_s * RATE)
        self.utterances: list[Utterance] = []
        self.speech_ends: list[int] = []  # positions where a caller's say:/audio: ended
        self.transfers: list[str] = []
        self.sound_samples = 0  # non-silent bot audio received, in samples
        self.last_sound: int | None = None  # position of the end of the last non-silent frame
        self.position = 0  # the caller's stream position (samples sent)

    def received(self, pcm8k: np.ndarray, at: int) -> None:
        """A frame of bot audio that arrived when the caller's stream stood at ``at``."""
        n = int(pcm8k.size)
        cur = self.utterances[-1] if self.utterances else None
        open_ = cur is not None and self.last_sound is not None and at - self.last_sound < self.gap
        if not is_sound(pcm8k):
            if open_ and cur is not None:
                cur.chunks.append(pcm8k)
            return
        self.sound_samples += n
        if not open_:
            cur = Utterance(at, at + n)
            self.utterances.append(cur)
        assert cur is not None
        cur.chunks.append(pcm8k)
        cur.end = at + n
        self.last_sound = at + n

    def speech_ended(self, at: int) -> None:
        self.speech_ends.append(at)

    def quiet_for(self, now: int) -> float:
        """Seconds since the bot last made sound (since the call began if never)."""
        return (now - (self.last_sound or 0)) / RATE

    def mark(self) -> WireMark:
        return WireMark(len(self.utterances), len(self.speech_ends), len(self.transfers), self.position)

    def since(self, m: WireMark) -> list[Utterance]:
        """Bot utterances that began after ``m``."""
        return [u for u in self.utterances[m.utterances - 1 if m.utterances else 0:] if u.start >= m.position]

    def latencies_ms(self, m: WireMark) -> list[float]:
        """For each end of caller speech since ``m``: ms until the bot's next sound (none if
        it never spoke again before the following end of speech)."""
        ends = self.speech_ends[m.speech_ends:]
        out: list[float] = []
        for i, end in enumerate(ends):
            limit = ends[i + 1] if i + 1 < len(ends) else None
            first = next((u.start for u in self.utterances if u.start >= end), None)
            if first is not None and (limit is None or first < limit):
                out.append(round((first - end) * 1000 / RATE, 1))
        return out
