"""`voxd test --transport sip`: scenarios as real SIP calls on loopback.

`SipTransport` starts a voxd SIP endpoint in-process (the daemon's `SipEndpoint`, call
manager and engines), or is pointed at one (``--target sip:agent@127.0.0.1:5080``).
Each scenario is a `SipLeg`: a `voxd.suites.sipcall.SipCaller` placing the call,
sending the caller's audio as G.711 RTP in real time and digits as RFC 4733 events.

What the caller can see on the wire it takes from the wire: the bot's replies
(its RTP, transcribed with the agent's own recogniser), reply latency (its own RTP
clock, `voxd.suites.wire`), BYE (`hung_up`) and REFER (`transferred`). What only the
daemon knows (function calls, what it heard, interruptions) comes from the call's
record in the in-process daemon, read with the same `window_since` the harness uses;
the wire fields then replace the record's, so `expect.check` is one code path for both
transports. Against a ``--target`` there is no record: expectations that need one fail
saying so.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voxd.agents.catalog import AgentCatalog
from voxd.agents.loader import LoadedAgent
from voxd.call.session import CallSession
from voxd.config import VoxdConfig
from voxd.harness import standalone_calls
from voxd.media.audio import SAMPLE_RATE, resample
from voxd.media.frame import split_frames
from voxd.net.clock import MediaClock
from voxd.net.sip import SipEndpoint
from voxd.proto.sip.uri import SipUri
from voxd.providers.base import SpeechToText, STTStream
from voxd.providers.factory import make_stt
from voxd.suites.expect import Mark, Window, mark, window_since
from voxd.suites.model import Step
from voxd.suites.results import transcript_of
from voxd.suites.sipcall import CallRefused, SipCaller
from voxd.suites.wire import RATE, WireMark

TAIL_S = 1.2  # quiet after the bot's last sound before a step is over (as the harness)
NO_REPLY_S = 4.0  # without the daemon's view: quiet this long with no bot sound at all ends a step
SETTLE_MAX_S = 45.0
INTERRUPT_WAIT_S = 15.0
TICK_S = 0.02
DAEMON_ONLY = {"expect": "tool_expects", "no_tool": "no_tool", "interrupted": "interrupted",
               "no_interruption": "no_interruption", "single_turn": "single_turn"}


class _OneAgent(AgentCatalog):
    """The in-process endpoint's catalog: every call goes to the scenario's agent."""

    def __init__(self, agent: LoadedAgent) -> None:
        super().__init__(agent.path.parent if agent.path else Path("."))
        self.current = agent

    def get(self, name: str) -> LoadedAgent | None:
        return self.current if name == self.current.name else None

    def names(self) -> list[str]:
        return [self.current.name]

    def default(self) -> LoadedAgent | None:
        return self.current

    def for_number(self, user: str) -> LoadedAgent | None:
        return self.current


@dataclass
class SipMark:
    wire: WireMark
    daemon: Mark | None


async def transcribe(stream: STTStream, pcm8k: np.ndarray) -> str:
    for frame in split_frames(resample(pcm8k, RATE, SAMPLE_RATE).tobytes()):
        stream.push(frame)
    return await stream.finalize()


class SipLeg:
    def __init__(self, caller: SipCaller, session: CallSession | None, listener: STTStream) -> None:
        self.caller = caller
        self.session = session  # the daemon's side of the call (in-process only)
        self.listener = listener
        self.log = caller.log
        self.heard_lines: list[str] = []  # what the caller heard, for --target transcripts

    @property
    def ended(self) -> bool:
        return self.caller.ended.is_set()

    @property
    def end_reason(self) -> str:
        if self.session is not None and self.session.record.end_reason:
            return self.session.record.end_reason
        return "the bot sent BYE" if self.caller.bye_received else "hung up"

    @property
    def call_seconds(self) -> float:
        return self.log.position / RATE

    def _busy(self) -> bool:
        s = self.session
        return s is not None and not s.closed and (s.replying or s.turns.capturing)

    async def _tick(self) -> None:
        await asyncio.sleep(TICK_S)

    def _sounding(self) -> bool:
        return self.log.last_sound is not None and self.log.quiet_for(self.log.position) < 2 * TICK_S

    async def start(self, until_bot_speaks: bool) -> None:
        await self.settle(until_bot_speaks=until_bot_speaks)

    async def play(self, pcm: np.ndarray) -> float:
        before = self.log.sound_samples
        await self.caller.play(resample(pcm, SAMPLE_RATE, RATE))
        return (self.log.sound_samples - before) * 1000 / RATE

    async def quiet(self, seconds: float) -> None:
        await self.caller.play(np.zeros(round(seconds * RATE), np.int16), speech=False)

    async def digits(self, digits: str) -> None:
        await self.caller.digits(digits)

    async def settle(self, until_bot_speaks: bool = False) -> None:
        spoke = self.log.sound_samples
        quiet = 0.0
        for _ in range(round(SETTLE_MAX_S / TICK_S)):
            if self.ended:
                return
            await self._tick()
            sounding = self._sounding()
            if until_bot_speaks and sounding:
                return
            quiet = 0.0 if sounding or self._busy() else quiet + TICK_S
            need = TAIL_S if self.session is not None or self.log.sound_samples > spoke else NO_REPLY_S
            if quiet >= need:
                return

    async def until_bot_spoke(self, ms: int) -> bool:
        start = self.log.sound_samples
        need = max(1, round(ms * RATE / 1000))
        for _ in range(round(INTERRUPT_WAIT_S / TICK_S)):
            if self.ended:
                return False
            if self.log.sound_samples - start >= need:
                return True
            await self._tick()
        return self.log.sound_samples - start >= need

    def mark(self) -> SipMark:
        daemon = mark(self.session.record, self.log.transfers) if self.session is not None else None
        return SipMark(self.log.mark(), daemon)

    async def window(self, m: object) -> Window:
        assert isinstance(m, SipMark)
        replies = [await transcribe(self.listener, u.audio) for u in self.log.since(m.wire)]
        self.heard_lines += [f"agent (heard): {r}" for r in replies]
        transfers = self.log.transfers
        hung_up = self.caller.bye_received and not transfers[m.wire.transfers:]
        if self.session is not None and m.daemon is not None:
            w = window_since(m.daemon, self.session.record, transfers, hung_up)
            w.texts = w.replies
        else:
            w = Window(transfers=list(transfers[m.wire.transfers:]), hung_up=hung_up)
        w.replies = replies
        w.latencies_ms = self.log.latencies_ms(m.wire)
        return w

    def unobservable(self, step: Step) -> list[str]:
        if self.session is not None:
            return []
        return [f"{key}: needs the daemon's record of the call (function calls, what it heard); "
                "run --transport sip without --target" for key, attr in DAEMON_ONLY.items()
                if getattr(step, attr) not in (None, [], ())]

    async def transferred(self) -> None:
        """The REFER was answered with NOTIFY 200: the bot's side ends its leg (BYE)."""
        try:
            async with asyncio.timeout(5):
                await self.caller.ended.wait()
        except TimeoutError:
            await self.caller.hangup()

    async def close(self) -> list[str]:
        await self.caller.close()
        await self.listener.aclose()
        s = self.session
        if s is None:
            return self.heard_lines
        for _ in range(250):
            if s.closed:
                break
            await asyncio.sleep(TICK_S)
        return transcript_of(s.record.turns)


class SipTransport:
    """The scenarios' calls: to ``target``, or to a SIP endpoint started here."""

    name = "sip"

    def __init__(self, cfg: VoxdConfig, base: Path, target: str | None = None) -> None:
        self.cfg, self.base, self.target = cfg, base, target
        self.manager, self.library = standalone_calls(cfg, base)
        self.endpoint: SipEndpoint | None = None
        self.catalog: _OneAgent | None = None
        self.clock: MediaClock | None = None
        self.listener: SpeechToText | None = None

    async def warm_up(self, agent: LoadedAgent) -> None:
        self.listener = make_stt(agent.config.stt, self.cfg.outbound())
        await self.listener.warm_up()
        if self.target is not None:
            return
        await self.library.warm_up([agent.config])
        await self.manager.warm_up([agent])
        base = 30000 + secrets.randbelow(300) * 100  # a free-ish range: other runs may share the box
        sip_cfg = self.cfg.sip.model_copy(update={"host": "127.0.0.1", "port": 0, "tcp": False, "public_host": None,
                                                  "rtp_port_min": base, "rtp_port_max": base + 99})
        self.catalog = _OneAgent(agent)
        self.clock = MediaClock()
        self.endpoint = SipEndpoint(sip_cfg, self.catalog, self.manager, self.clock)
        await self.endpoint.start()

    async def leg(self, agent: LoadedAgent, scenario: str) -> SipLeg:
        assert self.listener is not None
        if self.endpoint is not None and self.catalog is not None:
            self.catalog.current = agent
            target = f"sip:{agent.name}@127.0.0.1:{self.endpoint.port}"
        else:
            assert self.target is not None
            target = self.target
        uri = SipUri.parse(target)
        caller = SipCaller(target, (uri.host, uri.port or 5060))
        try:
            await caller.call()
        except (TimeoutError, CallRefused):
            await caller.close()
            raise
        session = None
        if self.endpoint is not None:
            sip_call = self.endpoint.sip_calls.get(caller.call_id)
            session = sip_call.session if sip_call is not None else None
            if session is None:
                await caller.close()
                raise CallRefused(f"the endpoint has no session for call {caller.call_id}")
        return SipLeg(caller, session, self.listener.stream("PCMU"))

    async def close(self) -> None:
        if self.endpoint is not None:
            await self.endpoint.stop()
        if self.clock is not None:
            await self.clock.stop()
        await self.manager.close_all()
        await self.library.close()
