"""Scenarios as calls: each one a call through the real session and engines, on the
same call manager and function library `voxd call` uses (`voxd.harness`).

A `Line` clocks the session one 20 ms frame at a time (virtual clock by default, as
`voxd.call.driver` does: after each frame it waits until no model work is in flight, so
latencies are the engines' real compute and the turn timers are exact to the frame).
Each step feeds its caller audio or digits, then lets the call settle: until the bot has
said what it will say and `TAIL_S` of quiet has passed.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np

from voxd.agents.loader import LoadedAgent
from voxd.call.driver import FRAME_S, frames_of
from voxd.call.ports import NullControl
from voxd.call.session import CallSession
from voxd.config import VoxdConfig
from voxd.harness import standalone_calls
from voxd.media.audio import SAMPLE_RATE, SILENCE_FRAME, read_wav_as
from voxd.media.frame import AudioFrame
from voxd.suites import voices
from voxd.suites.expect import Mark, Window, check, mark, window_since
from voxd.suites.model import LoadedSuite, Scenario, Step
from voxd.suites.results import ScenarioResult, StepResult, transcript_of
from voxd.suites.transport import Leg

TAIL_S = 1.2  # quiet after the bot's last word before a step is over
SETTLE_MAX_S = 45.0  # a step that never settles (the bot talks on and on) stops here
INTERRUPT_WAIT_S = 15.0  # how long an interrupt: waits for the bot to start talking
DIGIT_GAP_S = 0.15


class TestControl(NullControl):
    """The harness leg: records hangups, transfers (accepted, as a carrier would) and digits."""

    transport_name = "harness"


class AcceptingControl(TestControl):
    async def transfer(self, target: str) -> bool:
        self.transfers.append(target)
        return True


class HarnessLeg:
    """One harness call's media clock, driven step by step (a `Leg`)."""

    def __init__(self, session: CallSession, control: NullControl, virtual: bool) -> None:
        self.session = session
        self.control = control
        self.virtual = virtual
        self.frames = 0
        self.bot_frames = 0  # frames of bot audio since the last reset
        self._loop = asyncio.get_running_loop()
        self._next = self._loop.time()

    @property
    def ended(self) -> bool:
        return self.session.closed

    @property
    def end_reason(self) -> str:
        return self.session.record.end_reason or "closed"

    @property
    def call_seconds(self) -> float:
        return self.frames * FRAME_S

    async def start(self, until_bot_speaks: bool) -> None:
        await self.session.start()
        if self.virtual:
            await self.session.wait_idle()
        await self.settle(until_bot_speaks=until_bot_speaks)

    def mark(self) -> Mark:
        return mark(self.session.record, self.control.transfers)

    async def window(self, m: object) -> Window:
        assert isinstance(m, Mark)
        s = self.session
        hung_up = self.control.hung_up or (s.closed and s.record.ended_by == "agent")
        return window_since(m, s.record, self.control.transfers, hung_up)

    def unobservable(self, step: Step) -> list[str]:
        return []

    async def transferred(self) -> None:
        await self.settle()
        await self.session.close("transferred", ended_by="agent")  # the carrier took the call away

    async def close(self) -> list[str]:
        if not self.session.closed:
            await self.session.close("caller_hangup", ended_by="caller")
        return transcript_of(self.session.record.turns)

    async def tick(self, frame: bytes = SILENCE_FRAME) -> bool:
        """One frame each way; True if the bot made sound."""
        s = self.session
        s.feed_audio(AudioFrame(frame))
        out = s.next_frame()
        self.frames += 1
        if out is not None:
            self.bot_frames += 1
        if self.virtual:
            await asyncio.sleep(0)
            await s.wait_idle()
        else:
            self._next += FRAME_S
            await asyncio.sleep(max(0.0, self._next - self._loop.time()))
        return out is not None

    def busy(self, active: bool) -> bool:
        s = self.session
        return active or s.playout.pending or s.turns.capturing

    async def play(self, pcm: np.ndarray) -> float:
        """Feed the caller's audio; returns the ms of bot sound while it played."""
        over = 0
        for frame in frames_of(pcm.tobytes()):
            if self.ended:
                break
            over += await self.tick(frame)
        return over * FRAME_S * 1000

    async def quiet(self, seconds: float) -> None:
        for _ in range(round(seconds / FRAME_S)):
            if self.ended:
                return
            await self.tick()

    async def digits(self, digits: str) -> None:
        for d in digits:
            if self.ended:
                return
            self.session.feed_dtmf(d, source="harness")
            await self.quiet(DIGIT_GAP_S)

    async def settle(self, until_bot_speaks: bool = False) -> None:
        """Silence until the bot has finished and TAIL_S of quiet passed (or, before an
        interrupt:, until the bot starts talking)."""
        quiet = 0.0
        for _ in range(round(SETTLE_MAX_S / FRAME_S)):
            if self.ended:
                return
            active = await self.tick()
            if until_bot_speaks and active:
                return
            quiet = 0.0 if self.busy(active) else quiet + FRAME_S
            if quiet >= TAIL_S:
                return

    async def until_bot_spoke(self, ms: int) -> bool:
        """Silence until the bot has made ``ms`` of sound since now; False if it never did."""
        self.bot_frames = 0
        need = max(1, round(ms / 1000 / FRAME_S))
        for _ in range(round(INTERRUPT_WAIT_S / FRAME_S)):
            if self.ended:
                return False
            if self.bot_frames >= need:
                return True
            await self.tick()
        return self.bot_frames >= need


Line = HarnessLeg  # its earlier name


def agent_voice(agent: LoadedAgent) -> str:
    """The agent's own voice in caller-voice terms (piper:joe, espeak:en-us, ...)."""
    v = agent.config.voice
    if v.engine == "piper":
        return "piper:joe" if v.voice in (None, "", "joe", "en_US-joe-medium") else f"piper:{v.voice}"
    return f"{v.engine}:{v.voice or 'en-us'}"


def own_voice_note(agent: LoadedAgent, scenario: Scenario, default_voice: str) -> str:
    used = {s.voice or scenario.voice or default_voice for s in scenario.steps if s.words is not None}
    own = agent_voice(agent)
    return f"the caller speaks with the agent's own voice ({own})" if own in used else ""


def caller_audio(step: Step, default_voice: str, base: Path) -> np.ndarray:
    voice = step.voice or default_voice
    if step.audio is not None:
        path = Path(step.audio)
        return read_wav_as(path if path.is_absolute() else base / path, SAMPLE_RATE)
    if isinstance(step.say, list):
        return voices.speech_with_pauses(voice, step.say, step.pause_ms)
    text = step.say if step.say is not None else step.interrupt
    assert text is not None
    return voices.speech(voice, text)


async def run_call(leg: Leg, agent: LoadedAgent, loaded: LoadedSuite, index: int, scenario: Scenario,
                   transport: str = "audio") -> ScenarioResult:
    """One scenario over ``leg``: each step's caller action, then its expectations
    checked on the leg's window (the same `check` for every transport)."""
    suite = loaded.suite
    res = ScenarioResult(str(loaded.path), agent.name, scenario.name, transport, loaded.line_of(index), scenario.tags)
    voice = scenario.voice or suite.voice
    res.note = own_voice_note(agent, scenario, suite.voice)
    t0 = time.perf_counter()
    try:
        await leg.start(until_bot_speaks=scenario.steps[0].interrupt is not None)
        for j, step in enumerate(scenario.steps):
            sr = StepResult(j, step.action, step.words, loaded.line_of(index, j))
            res.steps.append(sr)
            if leg.ended and step.action not in ("wait", "silence"):
                sr.failures.append(f"the call had already ended ({leg.end_reason}) before this step")
                break
            m = leg.mark()
            nxt = scenario.steps[j + 1] if j + 1 < len(scenario.steps) else None
            before_interrupt = nxt is not None and nxt.interrupt is not None
            try:
                pcm = caller_audio(step, voice, loaded.path.parent) if step.action in ("say", "audio", "interrupt") \
                    else None
            except (voices.VoiceUnavailable, OSError, ValueError, EOFError) as e:
                res.status, res.note = "error", f"step {j + 1}: {e}"
                break
            if step.interrupt is not None and not await leg.until_bot_spoke(step.after_ms):
                sr.failures.append(f"the bot did not speak for {step.after_ms} ms to be interrupted")
            talked_over = 0.0
            if pcm is not None:
                talked_over = await leg.play(pcm)
            elif step.dtmf is not None:
                await leg.digits(step.dtmf)
            elif step.wait is not None:
                await leg.quiet(step.wait)
            elif step.silence is not None:
                await leg.quiet(step.silence)
            if step.wait is None:
                await leg.settle(until_bot_speaks=before_interrupt)
            sr.window = await leg.window(m)
            if step.interrupt is None:
                sr.window.bot_over_caller_ms = talked_over
            sr.failures += leg.unobservable(step) + check(step, sr.window)
            if sr.window.transfers and not leg.ended:
                await leg.transferred()
    finally:
        res.transcript = await leg.close()
        res.seconds = time.perf_counter() - t0
        res.call_seconds = leg.call_seconds
    return res


class HarnessTransport:
    """Scenarios as harness calls on one call manager (`voxd call`'s)."""

    name = "harness"

    def __init__(self, cfg: VoxdConfig, base: Path, virtual: bool = True) -> None:
        self.manager, self.library = standalone_calls(cfg, base)
        self.virtual = virtual

    async def warm_up(self, agent: LoadedAgent) -> None:
        await self.library.warm_up([agent.config])
        await self.manager.warm_up([agent])

    async def leg(self, agent: LoadedAgent, scenario: str) -> HarnessLeg:
        control = AcceptingControl()
        session = self.manager.create(agent, control, from_uri=f"test:{scenario}")
        return HarnessLeg(session, control, self.virtual)

    async def close(self) -> None:
        await self.manager.close_all()
        await self.library.close()
