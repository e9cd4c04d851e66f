"""Speculative decoding: at a pause, a whole-turn recogniser (whisper) starts on the
audio so far; the turn's transcript is that text when only the pause's silence
follows, and a fresh decode when the caller spoke on. Virtual media clock."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from tests.call.helpers import make_session
from tests.synth import silence, voiced
from voxd.agents.schema import InterruptionConfig, TurnConfig
from voxd.call import turns as tt
from voxd.call.driver import drive, frames_of
from voxd.providers.base import SpeechToText, STTStream
from voxd.providers.stt.whisper import WhisperStream


class CountingWhisper(SpeechToText):
    """WhisperStream's buffering and speculation around a fake decoder that takes
    `decode_s` of wall time (in the inference pool, like the real one)."""

    name = "whisper"

    def __init__(self, decode_s: float = 0.05) -> None:
        self.decode_s = decode_s
        self.decoded: list[float] = []  # seconds of audio per decode
        self.streams: list[WhisperStream] = []
        self._lock = threading.Lock()

    def transcribe_sync(self, pcm16k: np.ndarray) -> str:
        time.sleep(self.decode_s)
        with self._lock:
            self.decoded.append(len(pcm16k) / 16000)
        return f"heard {len(pcm16k) // 16000} seconds"

    def stream(self, carried: str | None = None) -> STTStream:
        s = WhisperStream(self)  # type: ignore[arg-type]
        self.streams.append(s)
        return s


def agent(**turn: Any) -> dict[str, Any]:
    return {"greeting": None, "turn": {"detector": "silence", "min_silence_ms": 200, "max_silence_ms": 800, **turn}}


def caller_texts(s: Any) -> list[str]:
    return [t.text for t in s.record.turns if t.speaker == "caller"]


async def test_a_pause_that_ends_the_turn_is_decoded_once_ahead() -> None:
    stt = CountingWhisper()
    s, *_ = make_session(agent(), steps=["Sure."], stt=stt)
    await drive(s, frames_of(silence(0.5) + voiced(1.0) + silence(2.0)))
    (stream,) = stt.streams
    assert (stream.speculations, stream.speculations_used) == (1, 1)
    assert len(stt.decoded) == 1  # the speculative decode was the turn's only decode
    assert 1.0 <= stt.decoded[0] <= 1.6  # the speech (plus preroll and the pause), not the later silence
    assert caller_texts(s) == ["heard 1 seconds"]


async def test_speech_after_the_pause_drops_the_guess() -> None:
    stt = CountingWhisper()
    s, *_ = make_session(agent(), steps=["Sure."], stt=stt)
    await drive(s, frames_of(silence(0.5) + voiced(0.6) + silence(0.4) + voiced(1.2) + silence(2.0)))
    (stream,) = stt.streams
    assert (stream.speculations, stream.speculations_used) == (2, 1)
    assert caller_texts(s) == [f"heard {int(max(stt.decoded))} seconds"]
    assert max(stt.decoded) >= 2.0  # the transcript covers both parts of the turn


async def test_off_when_the_agent_says_so() -> None:
    stt = CountingWhisper()
    s, *_ = make_session(agent(speculative_stt=False), steps=["Sure."], stt=stt)
    await drive(s, frames_of(silence(0.5) + voiced(1.0) + silence(2.0)))
    (stream,) = stt.streams
    assert stream.speculations == 0 and len(stt.decoded) == 1 and stt.decoded[0] > 1.6  # decoded at turn end
    assert caller_texts(s) == [f"heard {int(stt.decoded[0])} seconds"]


async def test_no_guess_while_the_bot_talks() -> None:
    """A pause while the bot is speaking is a backchannel or an interruption being
    decided: no speculative decode competes with the reply for the inference pool."""
    stt = CountingWhisper()
    s, *_ = make_session({**agent(), "greeting": "Hello there, how can I help you today with anything at all?"},
                         steps=["Sure."], stt=stt)
    await drive(s, frames_of(silence(0.3) + voiced(0.15) + silence(3.0)))
    assert stt.streams[0].speculations == 0


async def test_by_default_only_with_the_silence_detector() -> None:
    """With smart_turn the decode would compete with Smart Turn for the box's cores, so
    it is off unless the agent asks for it."""
    for setting, expected in [(None, 0), (True, 1)]:
        stt = CountingWhisper()
        turn = {"min_silence_ms": 200, "max_silence_ms": 1500}
        if setting is not None:
            turn["speculative_stt"] = setting
        s, *_ = make_session({"greeting": None, "turn": turn}, steps=["Hi."], turn_prob=0.9, stt=stt)
        await drive(s, frames_of(voiced(0.8) + silence(2.0)))
        assert stt.streams[0].speculations == expected and caller_texts(s), setting


def test_the_turn_taker_reports_pauses_and_resumption() -> None:
    tk = tt.TurnTaker(TurnConfig(detector="silence", min_silence_ms=100, max_silence_ms=1000), InterruptionConfig())
    seen: list[tt.TurnAction] = []
    now = 0.0
    for voiced_frame in [True] * 10 + [False] * 6 + [True] * 3 + [False] * 60:
        for a in tk.frame(voiced_frame, now):
            seen.append(a)
            if isinstance(a, tt.ConfirmOnset):
                seen += tk.confirmed(a.ticket, True, now)
        now += 0.02
    kinds = [type(a).__name__ for a in seen]
    assert kinds.count("Paused") == 2 and kinds.count("Resumed") == 1 and kinds[-1] == "TurnEnded"
    assert kinds.index("Paused") < kinds.index("Resumed") < len(kinds) - 1 - kinds[::-1].index("Paused")
