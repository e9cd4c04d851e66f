"""The call leg every transport shares: admission, clocking, the recorder tap, the
end; codecs as objects (G.711 pass-through); RTP DTMF out that holds bot audio."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

import numpy as np
import pytest

from tests.daemons import time_agent
from tests.net.test_rtcp import HOST, offer_sdp, peer_sockets, recv
from voxd.agents.loader import parse_agent
from voxd.call.manager import CallManager
from voxd.call.ports import AudioFrame, PlaybackFinished
from voxd.media import codecs
from voxd.media.audio import FRAME_BYTES
from voxd.media.playout import Playout
from voxd.net.clock import MediaClock
from voxd.net.leg import STALL_S, CallLeg, LegEnv, Refused
from voxd.net.rtp import PortPool, RtpStream
from voxd.proto import negotiate
from voxd.proto.g711 import ulaw_encode
from voxd.proto.rtp import RtpPacket
from voxd.tools.builtins import default_registry

TONE = (np.sin(np.arange(FRAME_BYTES // 2) / 3) * 8000).astype("<i2").tobytes()


@dataclass
class Seen:
    caller: list[tuple[float, AudioFrame]] = field(default_factory=list)
    bot: list[tuple[float, AudioFrame]] = field(default_factory=list)
    closed: int = 0


class RecorderDouble:
    """The Recorder protocol (issue 15 implements it), keeping what it saw."""

    def __init__(self) -> None:
        self.seen = Seen()

    def caller(self, at_s: float, frame: AudioFrame) -> None:
        self.seen.caller.append((at_s, frame))

    def bot(self, at_s: float, frame: AudioFrame) -> None:
        self.seen.bot.append((at_s, frame))

    def close(self) -> None:
        self.seen.closed += 1


class FakeWire:
    """A clocked wire: hands out caller frames, keeps what it was sent."""

    def __init__(self, caller: list[AudioFrame]) -> None:
        self.caller = list(caller)
        self.sent: list[AudioFrame | None] = []
        self.released = 0
        self.holding = False
        self.clears = 0
        self.hung_up = False

    def receive(self) -> AudioFrame | None:
        return self.caller.pop(0) if self.caller else None

    def send(self, frame: AudioFrame | None) -> None:
        self.sent.append(frame)

    def clear(self) -> PlaybackFinished | None:
        self.clears += 1
        return None

    def release(self) -> None:
        self.released += 1

    async def hangup(self) -> None:
        self.hung_up = True

    async def transfer(self, target: str) -> bool:
        return False

    async def send_dtmf(self, digits: str) -> None:
        pass


def env_for(max_calls: int = 5, accepting: bool = True) -> tuple[LegEnv, RecorderDouble]:
    rec = RecorderDouble()
    calls = CallManager(default_registry(), max_calls=max_calls)
    env = LegEnv(calls, MediaClock(), accepting=lambda: accepting, recorder=lambda session: rec)
    return env, rec


AGENT = parse_agent(time_agent(), "fakey.yaml", default_name="fakey")


async def test_leg_clocks_both_directions_through_the_recorder_tap_and_ends_once() -> None:
    env, rec = env_for()
    wire = FakeWire([AudioFrame(TONE)] * 10)
    leg = CallLeg(env, "fake", wire, wire)
    session = leg.admit(AGENT)
    assert session.control is leg and session.record.transport == "fake"
    await leg.answered()
    await asyncio.sleep(0.6)
    assert session.record.answered_at is not None
    # the caller side: every tick one frame (the wire's ten, then silence), stamped on the call's media clock
    times = [t for t, _ in rec.seen.caller]
    assert len(times) >= 20 and times[0] == 0.0
    assert all(abs(b - a - 0.02) < 1e-9 for a, b in itertools.pairwise(times))
    assert [f.pcm for _, f in rec.seen.caller[:10]] == [TONE] * 10
    # the bot side: the greeting, sent on the wire and seen by the recorder at the same media times
    voiced = [f for f in wire.sent if f is not None]
    assert voiced and [f for _, f in rec.seen.bot] == voiced
    assert all(0 <= t <= times[-1] + 0.02 for t, _ in rec.seen.bot)
    await leg.end("caller_hangup", "caller")
    await leg.end("caller_hangup", "caller")  # once
    assert session.closed and session.record.end_reason == "caller_hangup"
    assert wire.released == 1 and rec.seen.closed == 1 and leg not in env.legs
    n = len(wire.sent)
    await asyncio.sleep(0.1)
    assert len(wire.sent) == n  # the clock no longer drives this leg
    await env.clock.stop()


async def test_admission_refuses_while_draining_and_at_the_limit() -> None:
    env, _ = env_for(accepting=False)
    wire = FakeWire([])
    with pytest.raises(Refused) as e:
        CallLeg(env, "fake", wire, wire).admit(AGENT)
    assert e.value.kind == "draining"
    env, _ = env_for(max_calls=1)
    first = CallLeg(env, "fake", wire, wire)
    first.admit(AGENT)
    with pytest.raises(Refused) as e:
        CallLeg(env, "fake", wire, wire).admit(AGENT)
    assert e.value.kind == "busy"
    await first.end("shutdown", "system")
    with pytest.raises(Refused) as e:
        env.agent("nobody")
    assert e.value.kind == "no_agent"


async def test_arrival_leg_fills_a_stall_with_silence_and_publishes_transport_failures() -> None:
    env, _ = env_for()
    wire = FakeWire([])
    errors = []
    env.calls.listeners.append(lambda ev: errors.append(ev) if getattr(ev, "role", "") == "transport" else None)
    leg = CallLeg(env, "fake", wire, wire, inbound="arrival")
    session = leg.admit(AGENT)
    await leg.answered()
    for _ in range(5):
        leg.feed(AudioFrame(TONE))
    fed = session.media_t
    await asyncio.sleep(STALL_S + 0.2)
    assert session.media_t > fed and leg.stalls > 0  # silence kept the call's timers running
    await leg.end("connection_lost", "system", error="socket went away")
    assert session.record.end_reason == "connection_lost" and session.record.metadata["error"] == "socket went away"
    assert [e.detail["end_reason"] for e in errors] == ["connection_lost"]
    await env.clock.stop()


def test_g711_is_one_codec_object_with_passthrough() -> None:
    pcmu = codecs.get("pcmu")
    assert pcmu is codecs.PCMU and pcmu.name == "PCMU" and codecs.get("PCMA").name == "PCMA"  # the name recognisers know it by
    wire = ulaw_encode(np.frombuffer(TONE, "<i2")[::2]) * 3  # 60 ms of 8 kHz mu-law, one odd-sized chunk
    frames = pcmu.decoder().decode(wire[:200]) + pcmu.decoder().decode(wire[200:])
    assert all(len(f.pcm) == FRAME_BYTES for f in frames)
    carried = [f.payload for f in frames if f.payload is not None]
    assert carried and all(p in wire for p in carried)  # the caller's own bytes, untouched
    enc = pcmu.encoder()
    payload = bytes(range(160))
    assert enc.encode(AudioFrame(TONE, payload, "PCMU")) == payload and enc.passed_through == 1
    assert enc.encode(AudioFrame(TONE, payload, "PCMA")) != payload  # another codec's bytes are re-encoded
    assert len(enc.encode(AudioFrame(TONE))) == 160
    with pytest.raises(KeyError):
        codecs.get("G729")


def test_a_mulaw_voice_reaches_the_wire_without_transcoding() -> None:
    """Playout keeps a voice's mu-law bytes aligned with its PCM; the PCMU encoder sends them as they are."""
    p = Playout()
    seg = p.open_segment("hello")
    ulaw = bytes((i * 7) % 256 for i in range(480))
    p.push(seg, TONE * 3, ulaw, "PCMU")
    p.finish_segment(seg)
    enc = codecs.PCMU.encoder()
    out = []
    while (f := p.next_frame()) is not None:
        out.append(enc.encode(f))
    assert b"".join(out) == ulaw and enc.passed_through == 3


async def test_dtmf_out_holds_bot_audio_instead_of_dropping_it() -> None:
    """While RFC 4733 digits go out, bot audio is not taken from the playout (so not
    counted as heard); every frame of it is sent once the digits are done."""
    pool = PortPool(42500, 42600)
    peer_rtp, peer_rtcp = peer_sockets()
    sock, port = pool.bind(HOST)
    neg = negotiate.answer(offer_sdp(peer_rtp.getsockname()[1]), HOST, port)
    playout = Playout()
    seg = playout.open_segment("one two three four five six")
    playout.push(seg, TONE * 30)
    playout.finish_segment(seg)
    pulled_while_dtmf = 0
    stream: RtpStream | None = None

    def next_frame() -> AudioFrame | None:
        nonlocal pulled_while_dtmf
        assert stream is not None
        if stream.sending_dtmf:
            pulled_while_dtmf += 1
        return playout.next_frame()

    stream = RtpStream(neg, lambda f: None, lambda d, s: None, next_frame)
    await stream.open(sock, pool.rtcp_socket(port))
    silence_payload = codecs.PCMU.silence()
    audio = dtmf = 0
    try:
        for tick in range(80):
            if tick == 5:
                stream.send_dtmf("12")
                played_before = seg.played_bytes
            stream.send_tick()
            if tick > 5 and stream.sending_dtmf:
                assert seg.played_bytes == played_before  # nothing "heard" while the digits play
            await asyncio.sleep(0.02)
        while True:
            try:
                data, _ = await recv(peer_rtp, 0.2)
            except TimeoutError:
                break
            pkt = RtpPacket.parse(data)
            if pkt.payload_type == 0 and pkt.payload != silence_payload:
                audio += 1
            elif pkt.payload_type == 101:
                dtmf += 1
    finally:
        stream.close()
        peer_rtp.close()
        peer_rtcp.close()
    assert dtmf > 0 and pulled_while_dtmf == 0
    assert audio == 30 and not playout.pending  # all 600 ms of bot audio went out, none dropped
