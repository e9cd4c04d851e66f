"""Turn-taking as a sans-IO state machine.

Fed one VAD decision per 20 ms frame plus the results of the (asynchronous) Silero
confirmation and Smart Turn model, it says when the caller started speaking, when
a barge-in is real rather than a backchannel, when to ask the turn model, and when
the caller's turn is over. It never touches audio, tasks or clocks: times are
media-clock seconds passed in by the session.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from voxd.agents.schema import InterruptionConfig, TurnConfig

FRAME_S = 0.02


class State(enum.Enum):
    IDLE = "idle"  # caller silent
    PENDING = "pending"  # onset candidate awaiting Silero
    SPEAKING = "speaking"
    PAUSED = "paused"  # caller silent after speech; turn may be over


@dataclass(frozen=True)
class ConfirmOnset:
    """Ask Silero whether the last frames are speech; answer with `confirmed()`."""

    ticket: int


@dataclass(frozen=True)
class OnsetRejected:
    """The onset candidate was never confirmed: drop what was captured."""


@dataclass(frozen=True)
class SpeechStarted:
    onset: float  # media time of the first voiced frame


@dataclass(frozen=True)
class SpeechSustained:
    """The caller has spoken long enough to count as a real interruption."""

    onset: float


@dataclass(frozen=True)
class AskTurnModel:
    ticket: int


@dataclass(frozen=True)
class ShortSpeechEnded:
    """Speech ended before min_speech: a backchannel if the bot was talking."""

    onset: float


@dataclass(frozen=True)
class Paused:
    """The caller went quiet after speech (min_silence): the turn may be over."""

    speech_end: float


@dataclass(frozen=True)
class Resumed:
    """The caller spoke again after a pause: the turn goes on."""


@dataclass(frozen=True)
class TurnEnded:
    speech_end: float  # media time of the first silent frame
    reason: str  # "turn_model" | "max_silence" | "max_turn"


TurnAction = (ConfirmOnset | OnsetRejected | SpeechStarted | SpeechSustained | AskTurnModel | ShortSpeechEnded
              | Paused | Resumed | TurnEnded)


class TurnTaker:
    ONSET_FRAMES = 3  # voiced frames among the last ONSET_WINDOW before asking Silero
    ONSET_WINDOW = 4
    REASK_S = 0.3  # while the caller stays silent, ask the turn model again this often
    MAX_ASKS = 3  # per pause: Smart Turn costs tens of ms of CPU per question
    RESUME_FRAMES = 2  # voiced frames that end a pause
    RECHECK_S = 0.04  # after a "no" from Silero, ask again this much later while voiced
    MAX_PENDING_S = 0.5  # give up on a candidate Silero keeps rejecting

    def __init__(self, turn: TurnConfig, interruption: InterruptionConfig) -> None:
        self.cfg = turn
        self.intr = interruption
        self.state = State.IDLE
        self._voiced_run = 0
        self._silent_run = 0
        self._onset = 0.0
        self._voiced_s = 0.0
        self._speech_end = 0.0
        self._ticket = 0
        self._sustained = False
        self._asked = False
        self._long_turn = False
        self._awaiting = False
        self._recheck_at = 0.0
        self._last_ask = 0.0
        self._asks = 0
        self._recent: list[bool] = []

    @property
    def onset(self) -> float:
        return self._onset

    @property
    def in_speech(self) -> bool:
        return self.state in (State.SPEAKING, State.PAUSED)

    @property
    def capturing(self) -> bool:
        """Audio should be going to the recogniser."""
        return self.state is not State.IDLE

    def frame(self, voiced: bool, now: float) -> list[TurnAction]:
        """`now` is the media time at the start of this frame."""
        out: list[TurnAction] = []
        if voiced:
            self._voiced_run += 1
            self._silent_run = 0
        else:
            self._silent_run += 1
            self._voiced_run = 0

        self._recent.append(voiced)
        if len(self._recent) > self.ONSET_WINDOW:
            del self._recent[0]
        if self.state is State.IDLE:
            if voiced and sum(self._recent) >= self.ONSET_FRAMES:
                self.state = State.PENDING
                first = self._recent.index(True)
                self._onset = now - (len(self._recent) - 1 - first) * FRAME_S
                self._voiced_s = sum(self._recent) * FRAME_S
                self._ticket += 1
                self._awaiting = True
                out.append(ConfirmOnset(self._ticket))
        elif self.state is State.PENDING:
            if voiced:
                self._voiced_s += FRAME_S
                if not self._awaiting and now >= self._recheck_at:
                    self._ticket += 1
                    self._awaiting = True
                    out.append(ConfirmOnset(self._ticket))
            if (
                self._silent_run * FRAME_S >= self.cfg.min_silence_ms / 1000
                or now - self._onset >= self.MAX_PENDING_S
            ):
                self.state = State.IDLE  # Silero never said yes: noise
                self._ticket += 1
                self._voiced_run = 0
                out = [OnsetRejected()]
        elif self.state is State.SPEAKING:
            if voiced:
                self._voiced_s += FRAME_S
                if now - self._onset >= self.cfg.max_turn_s:
                    self._long_turn = True
            elif self._silent_run == 1:
                self._speech_end = now
            if (
                not self._sustained
                and self._voiced_s >= self.intr.min_speech_ms / 1000
            ):
                self._sustained = True
                out.append(SpeechSustained(self._onset))
            if self._silent_run * FRAME_S >= self.cfg.min_silence_ms / 1000:
                self.state = State.PAUSED
                out.append(Paused(self._speech_end))
                if not self._sustained:
                    out.append(ShortSpeechEnded(self._onset))
                if self._long_turn:
                    return [*out, self._end("max_turn")]
                if self.cfg.detector == "smart_turn":
                    self._ticket += 1
                    self._asked = True
                    self._asks = 1
                    self._last_ask = now + FRAME_S
                    out.append(AskTurnModel(self._ticket))
        elif self.state is State.PAUSED:
            if self._voiced_run >= self.RESUME_FRAMES:
                self.state = State.SPEAKING
                self._voiced_s += self._voiced_run * FRAME_S
                self._ticket += 1  # outstanding turn-model answers are stale
                self._asked = False
                out.append(Resumed())
            elif now - self._speech_end + FRAME_S >= self.cfg.max_silence_ms / 1000:
                out.append(self._end("max_silence"))
            elif (
                self.cfg.detector == "smart_turn"
                and not self._asked
                and self._asks < self.MAX_ASKS
                and now + FRAME_S - self._last_ask >= self.REASK_S
            ):
                self._asks += 1
                self._ticket += 1
                self._asked = True
                self._last_ask = now + FRAME_S
                out.append(AskTurnModel(self._ticket))
        return out

    def confirmed(self, ticket: int, is_speech: bool, now: float) -> list[TurnAction]:
        """Silero's answer for ConfirmOnset(ticket)."""
        if ticket != self._ticket or self.state is not State.PENDING:
            return []
        self._awaiting = False
        if not is_speech:
            self._recheck_at = now + self.RECHECK_S
            return []
        self.state = State.SPEAKING
        self._sustained = False
        self._long_turn = False
        out: list[TurnAction] = [SpeechStarted(self._onset)]
        if self._silent_run:
            self._speech_end = now - (self._silent_run - 1) * FRAME_S
        if self._voiced_s >= self.intr.min_speech_ms / 1000:
            self._sustained = True
            out.append(SpeechSustained(self._onset))
        return out

    def turn_model(self, ticket: int, probability: float) -> list[TurnAction]:
        """Smart Turn's answer for AskTurnModel(ticket)."""
        if ticket != self._ticket or self.state is not State.PAUSED:
            return []
        if probability >= self.cfg.smart_turn_threshold:
            return [self._end("turn_model")]
        self._asked = False  # ask again after more silence
        return []

    def _end(self, reason: str) -> TurnEnded:
        self.state = State.IDLE
        self._ticket += 1
        self._asked = False
        self._voiced_s = 0.0
        return TurnEnded(self._speech_end, reason)

    def reset(self) -> None:
        """Forget the current utterance (e.g. it was a backchannel)."""
        self.state = State.IDLE
        self._ticket += 1
        self._voiced_s = 0.0
        self._asked = False
