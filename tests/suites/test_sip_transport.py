"""`voxd test --transport sip` without speech models: the wire log, the SIP caller
against a scripted UAS on loopback (RFC 4733 digits, REFER, BYE, a reply's latency on
the caller's RTP clock), and whole suites over SIP against an in-process endpoint whose
agent has fake engines (tool calls read from the daemon's record, a broken
expectation failing with its reason, and `--target` saying what it cannot see)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from voxd.cli import main
from voxd.config import VoxdConfig
from voxd.proto import negotiate
from voxd.proto.g711 import ulaw_decode, ulaw_encode
from voxd.proto.rfc4733 import DtmfReceiver
from voxd.proto.rtp import RtpPacket, RtpSender
from voxd.proto.sdp import SessionDescription
from voxd.proto.sip import UAConfig, UserAgent
from voxd.proto.sip import events as ev
from voxd.suites.model import load_suite_file
from voxd.suites.runner import Options, run_suites
from voxd.suites.sipcall import SipCaller, trailing_quiet
from voxd.suites.wire import FRAME, WireLog, WireMark

ROOT = Path(__file__).parents[2]
SPEECH = ROOT / "tests" / "data" / "speech" / "flite-slt"
TONE = (np.sin(np.arange(FRAME) * 0.3) * 8000).astype(np.int16)
SILENCE = np.zeros(FRAME, np.int16)


# ---------------------------------------------------------------- the wire log


def test_the_wire_log_splits_utterances_and_measures_latency_on_the_callers_clock() -> None:
    log = WireLog(gap_s=0.1)
    at = 0
    for f in [SILENCE] * 3 + [TONE] * 5 + [SILENCE] * 2 + [TONE] * 2 + [SILENCE] * 10:  # a 40 ms gap: one utterance
        log.received(f, at)
        at += FRAME
    log.speech_ended(at)  # the caller finished speaking here
    m = log.mark()
    for f in [SILENCE] * 15 + [TONE] * 4:  # the bot answers 300 ms later
        log.received(f, at)
        at += FRAME
    assert [(u.start, u.end) for u in log.utterances] == [(3 * FRAME, 12 * FRAME), (37 * FRAME, 41 * FRAME)]
    assert log.utterances[0].audio.size >= 9 * FRAME  # the short gap stays inside it
    assert log.latencies_ms(m) == []  # the end of speech came before this mark
    log.speech_ends.clear()
    log.speech_ended(22 * FRAME)
    assert log.latencies_ms(WireMark(0, 0, 0, 0)) == [300.0]
    assert log.sound_samples == 11 * FRAME
    log.position = at
    assert log.quiet_for(at) == 0.0


def test_a_mark_sees_only_what_began_after_it() -> None:
    log = WireLog(gap_s=0.1)
    log.received(TONE, 0)
    log.position = 10 * FRAME
    m = log.mark()
    log.speech_ended(12 * FRAME)
    log.received(TONE, 20 * FRAME)
    assert [u.start for u in log.since(m)] == [20 * FRAME]
    assert log.latencies_ms(m) == [160.0]  # 8 frames of 20 ms


def test_no_latency_when_the_bot_does_not_answer_before_the_next_speech() -> None:
    log = WireLog()
    log.speech_ended(0)
    log.speech_ended(10 * FRAME)
    log.received(TONE, 15 * FRAME)
    assert log.latencies_ms(WireMark(0, 0, 0, 0)) == [100.0]


def test_the_end_of_speech_is_the_last_sounding_frame_sent() -> None:
    pcm = np.concatenate([TONE] * 3 + [SILENCE] * 4 + [SILENCE[:50]])
    assert trailing_quiet(pcm) == 5 * FRAME  # the short last frame is sent padded: a whole frame
    assert trailing_quiet(np.concatenate([TONE, SILENCE[:40]])) == FRAME
    assert trailing_quiet(TONE) == 0
    assert trailing_quiet(np.zeros(3 * FRAME, np.int16)) == 3 * FRAME


# ---------------------------------------------------------------- the caller vs a scripted UAS


class Bot(asyncio.DatagramProtocol):
    """A UAS on loopback: answers, counts RFC 4733 digits, and answers the caller's
    speech with a tone after ``delay_frames`` of the caller's silence."""

    def __init__(self, delay_frames: int = 10) -> None:
        self.delay_frames = delay_frames
        self.ua: UserAgent | None = None
        self.sip: asyncio.DatagramTransport | None = None
        self.rtp: asyncio.DatagramTransport | None = None
        self.remote: tuple[str, int] | None = None
        self.call_id = ""
        self.digits: list[str] = []
        self.refer_results: list[int] = []
        self.dtmf: DtmfReceiver | None = None
        self.sender = RtpSender(0)
        self.heard_speech = False
        self.silent_run = 0
        self.replied = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.sip = transport  # type: ignore[assignment]
        self.ua = UserAgent(UAConfig("127.0.0.1", transport.get_extra_info("sockname")[1], user="bot"))

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.ua is not None
        for e in self.ua.receive(data, addr, time.monotonic()):
            if isinstance(e, ev.IncomingCall):
                self.call_id = e.call_id
                port = self.rtp.get_extra_info("sockname")[1] if self.rtp else 0
                neg = negotiate.answer(SessionDescription.parse(e.offer), "127.0.0.1", port)
                self.remote = neg.remote_address
                self.dtmf = DtmfReceiver(neg.dtmf_payload_types)
                self.ua.answer(e.call_id, neg.sdp.serialize(), time.monotonic())
            elif isinstance(e, ev.ReferProgress) and e.final:
                self.refer_results.append(e.status)
        self.flush()

    def flush(self) -> None:
        assert self.ua is not None and self.sip is not None
        for data, dst in self.ua.data_to_send():
            self.sip.sendto(data, dst)

    def media(self, data: bytes) -> None:
        pkt = RtpPacket.parse(data)
        assert self.dtmf is not None
        if pkt.payload_type != 0:
            self.digits += [d.digit for d in self.dtmf.feed(pkt)]
            return
        loud = int(np.max(np.abs(ulaw_decode(pkt.payload).astype(np.int32)))) > 300
        self.heard_speech |= loud
        self.silent_run = 0 if loud else self.silent_run + 1
        if self.heard_speech and not self.replied and self.silent_run >= self.delay_frames:
            self.replied = True
            for _ in range(10):
                self.send(ulaw_encode(TONE))

    def send(self, payload: bytes) -> None:
        if self.rtp is not None and self.remote is not None:
            self.rtp.sendto(self.sender.packet(payload, FRAME).serialize(), self.remote)

    def refer(self, target: str) -> None:
        assert self.ua is not None
        self.ua.refer(self.call_id, target, time.monotonic())
        self.flush()

    def bye(self) -> None:
        assert self.ua is not None
        self.ua.bye(self.call_id, time.monotonic())
        self.flush()


class _Media(asyncio.DatagramProtocol):
    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.bot.media(data)


async def until(pred: object, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if pred():  # type: ignore[operator]
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


@pytest.mark.timeout(30)
async def test_the_caller_sends_digits_takes_a_refer_and_sees_the_bye() -> None:
    loop = asyncio.get_running_loop()
    sip, bot = await loop.create_datagram_endpoint(lambda: Bot(delay_frames=10), local_addr=("127.0.0.1", 0))
    bot.rtp, _ = await loop.create_datagram_endpoint(lambda: _Media(bot), local_addr=("127.0.0.1", 0))
    port = sip.get_extra_info("sockname")[1]
    caller = SipCaller(f"sip:bot@127.0.0.1:{port}", ("127.0.0.1", port))
    try:
        await caller.call()
        speech = (np.sin(np.arange(8000) * 0.2) * 8000).astype(np.int16)  # 1 s of "speech"
        m = caller.log.mark()
        await caller.play(speech)
        await until(lambda: caller.log.utterances)
        (latency,) = caller.log.latencies_ms(m)
        # the bot answered only after receiving 10 silent frames sent after the speech:
        # on the caller's clock that cannot be less than 200 ms (one frame of rounding)
        assert latency >= 180.0, latency
        await caller.digits("4#")
        await until(lambda: len(bot.digits) == 2)
        assert bot.digits == ["4", "#"]
        bot.refer("sip:sales@127.0.0.1")
        await until(lambda: bot.refer_results)
        assert caller.log.transfers == ["sip:sales@127.0.0.1"] and bot.refer_results == [200]
        assert not caller.ended.is_set()
        bot.bye()
        await until(caller.ended.is_set)
        assert caller.bye_received
    finally:
        await caller.close()
        sip.close()
        if bot.rtp is not None:
            bot.rtp.close()


# ---------------------------------------------------------------- whole suites over SIP, fake engines

AGENT = """
greeting: Hello and welcome.
stt: {engine: fake, options: {transcripts: ["what time is it"]}}
llm: {engine: dialog}
voice: {engine: fake}
turn: {detector: silence, max_silence_ms: 400}
tools: [get_current_time]
dialog:
  intents:
    - {name: time, examples: ["what time is it"], tool: get_current_time, reply: "It's {result.spoken}."}
dtmf:
  menus:
    main:
      prompt: Press 3 for sales or 9 to hang up.
      options:
        "3": {say: Transferring you., then: transfer, target: "sip:sales@127.0.0.1"}
        "9": {say: Goodbye!, then: hangup}
  main_menu: main
"""

SUITE = f"""
agent: clock
scenarios:
  - name: the time over SIP
    steps:
      - audio: {SPEECH / "what_time.8k.wav"}
        expect: {{tool: get_current_time, count: 1}}
        max_latency_ms: 20000
        hung_up: false
  - name: a wrong tool over SIP
    steps:
      - audio: {SPEECH / "what_time.8k.wav"}
        expect: {{tool: calculate}}
        reply_contains: banana
  - name: keypad transfer
    steps:
      - dtmf: "3"
        transferred: sip:sales@127.0.0.1
  - name: keypad hangup
    steps:
      - dtmf: "9"
        hung_up: true
"""


def suite_dir(tmp_path: Path) -> Path:
    agents = tmp_path / "agents"
    (agents / "tests").mkdir(parents=True)
    (agents / "clock.yaml").write_text(AGENT)
    path = agents / "tests" / "clock.yaml"
    path.write_text(SUITE)
    return path


def cfg(tmp_path: Path) -> VoxdConfig:
    return VoxdConfig.model_validate({"state_dir": str(tmp_path / "state"), "agents_dir": str(tmp_path / "agents"),
                                      "engines": {"silero_confirm": False, "preload": False}})


@pytest.mark.timeout(120)
async def test_suites_run_over_sip_with_the_daemons_view_of_tool_calls(tmp_path: Path) -> None:
    path = suite_dir(tmp_path)
    assert load_suite_file(path).suite.scenarios
    report = await run_suites([path], cfg(tmp_path), tmp_path, Options(transport="sip"))
    by = {r.name: r for r in report.results}
    assert all(r.mode == "sip" for r in report.results)
    ok = by["the time over SIP"]
    assert ok.status == "passed", ok.failures
    w = ok.steps[0].window
    assert w is not None and [t.name for t in w.tools] == ["get_current_time"]
    assert len(w.replies) == 1 and len(w.latencies_ms) == 1  # heard on the wire, timed on the caller's clock
    bad = by["a wrong tool over SIP"]
    assert bad.status == "failed"
    assert any("expected a call to calculate, the bot called get_current_time" in f for f in bad.failures), bad.failures
    # the fake recogniser "hears" its script on the line; the reason also gives the bot's own text
    assert any("reply lacks 'banana': the bot said 'what time is it' (heard on the line; its text was \"It's "
               in f for f in bad.failures), bad.failures
    assert by["keypad transfer"].status == "passed", by["keypad transfer"].failures
    assert by["keypad hangup"].status == "passed", by["keypad hangup"].failures
    assert report.failed


@pytest.mark.timeout(120)
async def test_a_target_without_the_daemon_says_what_it_cannot_check(tmp_path: Path) -> None:
    from voxd.suites.sipleg import SipTransport

    path = suite_dir(tmp_path)
    c = cfg(tmp_path)
    own = SipTransport(c, tmp_path)  # an endpoint started apart from the runner
    from voxd.agents.loader import load_agent_file

    await own.warm_up(load_agent_file(tmp_path / "agents" / "clock.yaml"))
    try:
        assert own.endpoint is not None
        target = f"sip:clock@127.0.0.1:{own.endpoint.port}"
        report = await run_suites([path], c, tmp_path, Options(transport="sip", target=target, select="keypad"))
        assert [r.status for r in report.results] == ["passed", "passed"], [r.failures for r in report.results]
        report = await run_suites([path], c, tmp_path, Options(transport="sip", target=target, select="the time"))
        (r,) = report.results
        assert r.status == "failed"
        assert any("needs the daemon's record" in f for f in r.failures), r.failures
    finally:
        await own.close()


def test_the_cli_refuses_target_without_sip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = suite_dir(tmp_path)
    assert main(["test", str(path), "--target", "sip:a@127.0.0.1:5080", "--junit", "", "--json", ""]) == 2
    assert "--target needs --transport sip" in capsys.readouterr().err


def test_reply_contains_takes_small_numbers_as_words_or_digits() -> None:
    from voxd.suites.expect import Window, check
    from voxd.suites.model import Step

    step = Step(say="menu", reply_contains=["9 to hang up", "press three"])
    assert check(step, Window(replies=["Press three for sales, or nine to hang up."])) == []
    assert check(step, Window(replies=["Press 3 for sales, or 9 to hang up."])) == []
    (problem,) = check(step, Window(replies=["Press 3 for sales, or 8 to hang up."]))
    assert problem.startswith("reply lacks '9 to hang up'")
