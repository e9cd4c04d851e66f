"""One call leg: the life every transport shares, written once.

A transport implements its wire (bytes <-> `AudioFrame`s, through a codec object)
and a `TransportControl` (hang up, transfer, send DTMF). `CallLeg` does the rest,
the same way for SIP/RTP, the websocket platforms and WebRTC:

    transport            CallLeg                               CallSession
    ---------            -------                               -----------
    request/INVITE --> admit(): draining? limits? agent? --> calls.create()
                          (Refused: the transport says 503 / 1013 / 404 its way)
    answered       --> answered(): clock.register ------------> start()
    every 20 ms       tick: caller frame in (the wire's, or silence on a stall)
                            ---- recorder.caller(t, frame) --> feed_audio()
                          bot frame out <-- recorder.bot(t, frame) -- next_frame()
    barge-in          clear() <------------------------------- _interrupt()
                          wire.clear() -> PlaybackFinished -->  (heard text)
    wire breaks    --> fail(reason, message) ---------------> transport_failed()
    hangup/stop    --> end(reason, by):  one teardown   ----> close()
                          clock.unregister, wire.release() <-- media_ended()

Clocking: caller audio is either pulled from the wire once per tick (`inbound="clock"`:
RTP's jitter buffer, a buffered websocket) or fed as it arrives (`"arrival"`: a
platform that sends 20 ms every 20 ms, a browser's track), in which case the leg
feeds silence after STALL_S without any so the call's timers keep running. Bot audio
is either pushed to the wire once per tick (`outbound="clock"`) or pulled by the wire
(`"pull"`: aiortc asks for frames at its own pace).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, cast

from voxd.agents.catalog import AgentCatalog
from voxd.agents.loader import LoadedAgent
from voxd.call.events import CallEvent
from voxd.call.lookup import Outcome
from voxd.call.manager import CallLimitReached, CallManager
from voxd.call.ports import (
    SILENCE,
    AudioFrame,
    EndedBy,
    EndReason,
    Engines,
    PlaybackFinished,
    TransferOutcome,
)
from voxd.call.reply import voice_of
from voxd.call.session import CallSession
from voxd.core.endreason import TRANSPORT_FAILURES
from voxd.media.codecs.base import Codec
from voxd.net.clock import MediaClock

log = logging.getLogger("voxd.leg")

STALL_S = 0.2  # no caller audio for this long on an arrival-paced leg: feed silence
Pacing = Literal["clock", "arrival", "pull"]
RefusalKind = Literal["draining", "busy", "no_agent"]


class Refused(Exception):
    """The call was not admitted; each transport answers it on its wire (SIP 503/404,
    HTTP 503/404, websocket close 1013...)."""

    def __init__(self, kind: RefusalKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class Recorder(Protocol):
    """Sees both directions of a call, time-aligned on the call's media clock
    (`at_s`: seconds of caller audio fed when the frame passed). Issue 15's
    recorder implements this; `LegEnv.recorder` makes one per call."""

    def caller(self, at_s: float, frame: AudioFrame) -> None: ...

    def bot(self, at_s: float, frame: AudioFrame) -> None: ...

    def close(self) -> None: ...


class TransportControl(Protocol):
    """The part of a call only its transport can do."""

    async def hangup(self) -> None: ...

    async def transfer(self, target: str) -> bool: ...

    async def send_dtmf(self, digits: str) -> None: ...


class Wire(Protocol):
    """A transport's media, as frames."""

    def clear(self) -> PlaybackFinished | None:
        """Barge-in: drop bot audio buffered on the wire; what was really played, if known."""

    def release(self) -> None:
        """The call is over: stop sending, put the counters into the record, free sockets."""


class ClockedWire(Wire, Protocol):
    """A wire the leg's clock drives (inbound="clock" and/or outbound="clock")."""

    @property
    def holding(self) -> bool:
        """The wire cannot carry bot audio this tick (RFC 4733 digits replace it, the
        stream is hanging up): the leg leaves the bot's audio queued instead of pulling it."""

    def receive(self) -> AudioFrame | None:
        """inbound="clock": the caller's next 20 ms, None when there is none (silence)."""

    def send(self, frame: AudioFrame | None) -> None:
        """outbound="clock": this tick's bot audio (None: the bot is silent)."""


@dataclass
class LegEnv:
    """What every leg of the process shares."""

    calls: CallManager
    clock: MediaClock
    agents: AgentCatalog | None = None
    accepting: Callable[[], bool] = lambda: True
    recorder: Callable[[CallSession], Recorder | None] | None = None
    legs: set[CallLeg] = field(default_factory=set)  # calls in progress, for shutdown

    def check_accepting(self) -> None:
        if not self.accepting():
            raise Refused("draining", "draining: not accepting new calls")

    async def inbound(self, agent: LoadedAgent, *, transport: str, caller: str = "", called: str = "",
                      from_uri: str = "", to_uri: str = "") -> Outcome:
        """Before an inbound call is answered: the agent's inbound lookup, if it has one
        (variables, another agent of this catalog's organisation, or a rejection)."""
        lookups = self.calls.lookups
        if agent.config.inbound_lookup is None or lookups is None or self.agents is None:
            return Outcome(agent)
        return await lookups.resolve(agent, self.agents.getter(agent.org), caller=caller, called=called,
                                     transport=transport, org=agent.org, from_uri=from_uri, to_uri=to_uri)

    def reject(self, outcome: Outcome, transport: str, *, from_uri: str = "", to_uri: str = "",
               metadata: dict[str, Any] | None = None) -> None:
        """Record a call its lookup rejected (the transport refuses it on its wire)."""
        assert outcome.reject is not None
        self.calls.rejected(outcome.agent, transport, outcome.reject.reason, from_uri=from_uri, to_uri=to_uri,
                            metadata={**(metadata or {}), "inbound_lookup": outcome.info},
                            variables=outcome.variables)

    def agent(self, name: str | None = None, *, number: str | None = None, qualified: bool = False,
              org: str | None = None) -> LoadedAgent:
        """The agent a call asked for (by name, or by dialled number), else the default.
        ``qualified``: the name may be ``<org>/<agent>`` (configuration names it: a
        registration's agent), an agent of that organisation. ``org``: the caller's
        credential is that organisation's, so only its agents are found (another's
        name is refused as a missing one is)."""
        if self.agents is None:
            raise Refused("no_agent", "no agents loaded")
        if org is not None and org != self.agents.org:
            fleet = self.agents.fleet
            catalog = fleet.catalog(org) if fleet is not None else None
            found = (catalog.get(name) if name else catalog.default()) if catalog is not None else None
            if found is None:
                raise Refused("no_agent", f"no agent {name!r}" if name else "no agents loaded")
            return found
        if qualified and name and "/" in name:
            org, _, short = name.partition("/")
            found = self.agents.getter(org)(short)
            if found is None:
                raise Refused("no_agent", f"no agent {short!r} in organisation {org!r}")
            return found
        if number is not None:
            found = self.agents.for_number(number)
            if found is None:
                raise Refused("no_agent", "No agent")
            return found
        found = self.agents.get(name) if name else self.agents.default()
        if found is None:
            raise Refused("no_agent", f"no agent {name!r}" if name else "no agents loaded")
        return found


class CallLeg:
    """One call's life between a transport and a session. Implements CallControl."""

    def __init__(
        self,
        env: LegEnv,
        transport_name: str,
        control: TransportControl,
        wire: Wire,
        *,
        codec: Codec | None = None,
        inbound: Pacing = "clock",
        outbound: Pacing = "clock",
    ) -> None:
        self.env = env
        self.transport_name = transport_name
        self.codec = codec
        self.transport = control
        self.wire = wire
        # only clocked pacings call receive/send/holding
        self._clocked = cast(ClockedWire, wire) if "clock" in (inbound, outbound) else None
        self.inbound = inbound
        self.outbound = outbound
        self.session: CallSession | None = None
        self.recorder: Recorder | None = None
        self.last_media = -1e9  # loop time of the last arrived caller frame
        self._clock: int | None = None
        self._released = False
        self._ending = False
        self.stalls = 0  # silence frames fed because the caller's audio stalled

    # ------------------------------------------------------------ admission
    def admit(
        self,
        agent: LoadedAgent,
        *,
        from_uri: str = "",
        to_uri: str = "",
        direction: str = "inbound",
        metadata: dict[str, Any] | None = None,
        listener: Callable[[CallEvent], None] | None = None,
        engines: Engines | None = None,
        source: str = "",
        authenticated: bool = True,
        variables: dict[str, str] | None = None,
    ) -> CallSession:
        """Create the call's session; Refused("busy") at the limits (the total, this
        transport's share, the caps on calls nobody authenticated, for `source`),
        ("draining") while draining. `engines`: instead of the agent's (harnesses, benchmarks)."""
        self.env.check_accepting()
        try:
            session = self.env.calls.create(agent, self, from_uri=from_uri, to_uri=to_uri, direction=direction,
                                            metadata=metadata, listener=listener, engines=engines,
                                            source=source, authenticated=authenticated, variables=variables)
        except CallLimitReached as e:
            raise Refused("busy", str(e)) from None
        self.session = session
        self.env.legs.add(self)
        make = self.env.recorder or getattr(self.env.calls, "recorder", None)  # the process's, unless the leg's own
        if make is not None:
            self.recorder = make(session)
        return session

    # ------------------------------------------------------------ media
    def start_media(self) -> None:
        """Start the leg's clock (media flows; the session has not been answered yet:
        early media)."""
        if self._clock is None and not self._released:
            first = self._send_tick if self.outbound == "clock" else None
            self._clock = self.env.clock.register(self._receive_tick, first=first)

    async def answered(self) -> None:
        """The call is up: media flows and the agent starts (greets)."""
        self.start_media()
        if self.session is not None and not self.session.closed:
            await self.session.start()

    def feed(self, frame: AudioFrame) -> None:
        """inbound="arrival": a frame of caller audio arrived from the wire."""
        self.last_media = self._now()
        self._feed(frame)

    def dtmf(self, digit: str, source: str) -> None:
        s = self.session
        if s is not None and not s.closed and len(digit) == 1:
            s.feed_dtmf(digit, source=source)

    def pull(self) -> AudioFrame | None:
        """The bot's next 20 ms (outbound="pull" wires ask; clocked ones are handed it)."""
        s = self.session
        if s is None or s.closed:
            return None
        frame = s.next_frame()
        if frame is not None and self.recorder is not None:
            self.recorder.bot(s.media_t, frame)
        return frame

    def _feed(self, frame: AudioFrame) -> None:
        s = self.session
        if s is None or s.closed:
            return
        if self.recorder is not None:
            self.recorder.caller(s.media_t, frame)
        s.feed_audio(frame)

    def _send_tick(self) -> None:
        wire = self._clocked
        assert wire is not None
        wire.send(None if wire.holding else self.pull())

    def _receive_tick(self) -> None:
        if self._clocked is not None and self.inbound == "clock":
            frame = self._clocked.receive()
            self._feed(frame if frame is not None else SILENCE)
        elif self._now() - self.last_media > STALL_S:
            self.stalls += 1
            self._feed(SILENCE)

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    # ------------------------------------------------------------ CallControl
    @property
    def cannot_do(self) -> frozenset[str] | None:
        """What the transport says it cannot carry out (None: voxd.call.toolctx's table)."""
        cannot: frozenset[str] | None = getattr(self.transport, "cannot_do", None)
        return cannot

    async def hangup(self) -> None:
        await self.transport.hangup()

    async def transfer(self, target: str) -> bool:
        return await self.transport.transfer(target)

    async def send_dtmf(self, digits: str) -> None:
        await self.transport.send_dtmf(digits)

    async def attended_transfer(self, target: str, summary: str) -> TransferOutcome:
        """Warm transfer (SIP: voxd/net/sip_attended.py): hold the caller, call ``target``,
        say ``summary`` to it with the agent's voice, then hand the caller over."""
        carry = getattr(self.transport, "attended_transfer", None)
        if carry is None or self.session is None:
            return TransferOutcome(False, f"attended transfer is not available on a {self.transport_name} call")
        outcome: TransferOutcome = await carry(target, summary, voice_of(self.session.engines.tts))
        return outcome

    def clear(self) -> PlaybackFinished | None:
        return self.wire.clear()

    def media_ended(self) -> None:
        """The session is closing (either side): stop the clock, release the wire."""
        if self._released:
            return
        self._released = True
        if self._clock is not None:
            self.env.clock.unregister(self._clock)
            self._clock = None
        try:
            self.wire.release()
        finally:
            if self.recorder is not None:
                self.recorder.close()
            self.env.legs.discard(self)

    # ------------------------------------------------------------ the end
    def fail(self, reason: EndReason, message: str, **detail: Any) -> None:
        """The wire broke: note it on the record and tell the call's observers (once)."""
        s = self.session
        if s is None or s.closed:
            return
        s.record.metadata.setdefault("error", message)
        s.transport_failed(message, end_reason=reason, **detail)

    async def end(self, reason: EndReason, ended_by: EndedBy, *, error: str | None = None) -> None:
        """The one teardown, from whichever side ended the call: publish a transport
        failure, close the session (which releases the media first), stop the clock."""
        if self._ending:
            return
        self._ending = True
        s = self.session
        try:
            if s is not None and not s.closed:
                if reason in TRANSPORT_FAILURES:
                    self.fail(reason, error or reason.replace("_", " "))
                await s.close(reason, ended_by=ended_by)
        finally:
            self.media_ended()
