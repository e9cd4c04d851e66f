"""How a scenario reaches the agent: one `Transport` per suite run, one `Leg` per
scenario. The runner (`voxd.suites.audio.run_call`) drives a `Leg` step by step and
checks each step's `Window` with the one `voxd.suites.expect.check`, whichever
transport filled it: the harness (`voxd.suites.audio`: frames fed straight into the
call session) or SIP (`voxd.suites.sipleg`: a real SIP/RTP leg on loopback).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from voxd.agents.loader import LoadedAgent
from voxd.suites.expect import Window
from voxd.suites.model import Step


class Leg(Protocol):
    """One scenario's call, as the runner drives it."""

    @property
    def ended(self) -> bool: ...

    @property
    def end_reason(self) -> str: ...

    @property
    def call_seconds(self) -> float: ...

    async def start(self, until_bot_speaks: bool) -> None:
        """Answer the call and let the greeting play (or, before an interrupt:, start)."""

    async def play(self, pcm: np.ndarray) -> float:
        """Caller audio (16 kHz int16); returns the ms of bot sound while it played."""

    async def quiet(self, seconds: float) -> None: ...

    async def digits(self, digits: str) -> None: ...

    async def settle(self, until_bot_speaks: bool = False) -> None:
        """Until the bot has said what it will say and a tail of quiet passed."""

    async def until_bot_spoke(self, ms: int) -> bool:
        """Until the bot has made ``ms`` of sound from now; False if it never did."""

    def mark(self) -> object:
        """Where the call stands as a step begins."""

    async def window(self, mark: object) -> Window:
        """What the bot did since ``mark``."""

    def unobservable(self, step: Step) -> list[str]:
        """Expectations of ``step`` this leg cannot see, as failures (empty: all seen)."""

    async def transferred(self) -> None:
        """The bot transferred the call: let it go."""

    async def close(self) -> list[str]:
        """Hang up if still up; the call's transcript lines."""


class Transport(Protocol):
    name: str

    async def warm_up(self, agent: LoadedAgent) -> None:
        """Load the agent's engines and functions before its first call."""

    async def leg(self, agent: LoadedAgent, scenario: str) -> Leg: ...

    async def close(self) -> None: ...
