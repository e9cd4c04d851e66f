"""One call's conversation: listens, decides turns, replies, yields to barge-in and keys.

The session is clocked by its transport (see `voxd.call.ports`): one caller frame in
and one bot frame out every 20 ms. Turn-taking and keypad logic are sans-IO state
machines (`turns`, `dtmf`) evaluated on that media clock; model work (Silero,
Smart Turn, STT, LLM, TTS) runs in tracked tasks so it can be cancelled at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np

from voxd.agents.schema import AgentConfig
from voxd.call import dtmf as kp
from voxd.call import turns as tt
from voxd.call.events import (
    CallEnded,
    CallerSpeaking,
    CallEvent,
    CallStarted,
    DtmfReceived,
    EngineError,
    ToolExecuted,
    TurnCompleted,
)
from voxd.call.ports import AudioFrame, CallControl, EndedBy, EndReason, Engines, PlaybackFinished
from voxd.call.reply import ReplyMetrics, Speaker, ToolPolicy, run_llm_reply, synthesize_into
from voxd.call.toolctx import SessionTools
from voxd.call.work import CallWork
from voxd.core.calllog import CallRecord, DtmfRecord, Turn, TurnLatency
from voxd.core.endreason import END_REASONS
from voxd.media import inference
from voxd.media.audio import SAMPLE_RATE
from voxd.media.playout import Playout
from voxd.media.vad import FrameVAD
from voxd.providers.base import Message, ProviderError
from voxd.providers.fallback import bind_call
from voxd.providers.pricing import Switch
from voxd.tools.registry import ToolRegistry

log = logging.getLogger("voxd.call")

FRAME_S = 0.02
TURN_AUDIO_S = 8.0  # Smart Turn looks at the last 8 s
NOISE_HOLDOFF_S = 3.0  # after a rejected onset, only confirmed speech pauses the bot
OVERLOAD_BACKLOG = 8  # inference jobs in flight beyond which Smart Turn is skipped
CONFIRM_FRAMES = 10  # Silero sees at most the last 200 ms since the onset


class CallSession:
    def __init__(
        self,
        agent: AgentConfig,
        agent_version: str,
        engines: Engines,
        tools: ToolRegistry,
        control: CallControl,
        record: CallRecord,
        *,
        vad: FrameVAD | None = None,
        on_event: Callable[[CallEvent], None] | None = None,
    ) -> None:
        self.agent = agent
        self.agent_version = agent_version
        # fallback chains report provider switches and usage onto this call's record
        stt, llm, tts, self.usage = bind_call(engines.stt, engines.llm, engines.tts, metadata=record.metadata,
                                              on_switch=self._on_switch)
        self.engines = dataclasses.replace(engines, stt=stt, llm=llm, tts=tts)
        self.control = control
        self.record = record
        self.vad = vad or FrameVAD()
        self._on_event = on_event
        # a voice's own bytes in the leg's codec (a mu-law voice on a PCMU leg) go out untouched
        self.playout = Playout(carries=control.codec.name if control.codec is not None else None)
        self.turns = tt.TurnTaker(agent.turn, agent.interruption)
        self.keypad = kp.KeypadMachine(agent.dtmf)
        self.stt = self.engines.stt.stream(control.codec.name if control.codec is not None else None)
        self._interim = ""
        self.stt.on_interim = self._on_interim
        self.work = CallWork(record.id)
        self.tools = SessionTools(self, tools)
        self.messages: list[Message] = [Message("system", agent.prompt)]
        self._tool_policy = ToolPolicy(
            filler_after_s=agent.filler_after_ms / 1000,
            filler=agent.filler,
            interruptible=self.tools.interruptible,
            keep=self.work.keep,
        )
        self.media_t = 0.0
        self.consent_prompt: str | None = None  # said before the greeting (a recorded call's notice)
        self.closed = False
        self.ended = asyncio.Event()
        self._recent: deque[AudioFrame] = deque(maxlen=15)  # preroll / Silero window
        self._utterance = bytearray()  # captured caller audio for Smart Turn
        self._reply: asyncio.Task[None] | None = None
        self._bot_turn: Turn | None = None
        self._barge_onset: float | None = None  # caller onset that paused the bot
        self._paused_at: float | None = None  # media time the bot's voice was paused for a caller
        self._noise_until = 0.0  # after noise fooled webrtcvad, wait for Silero before pausing
        self._hangup_reason: EndReason | None = None
        self._menu_after: str | None = None
        self._speaker: Speaker | None = None
        self._drained = asyncio.Event()
        self.backchannels = 0
        self.frames_taken_back = 0  # bot frames handed out that the far end never played
        self.held = False  # the caller is on hold (either side): nothing is heard, nothing said

    # ------------------------------------------------------------ transport side
    async def start(self) -> None:
        """The call is answered: greet, and open the main menu if asked to."""
        self.record.answered_at = time.time()
        if self.control.codec is not None:  # an outbound SIP call knows its codec from the answer
            self.playout.carries = self.control.codec.name
        self._emit(CallStarted(self.record))
        lines = [t for t in (self.consent_prompt, self.agent.greeting) if t]
        if self.agent.dtmf.start_menu and self.agent.dtmf.main_menu:
            lines += [a.text for a in self.keypad.open_menu(self.agent.dtmf.main_menu, 0.0)
                      if isinstance(a, kp.Say)]
        if lines:
            self._start_reply(self._say_lines(lines, "greeting"))

    def feed_audio(self, frame: AudioFrame) -> None:
        """One 20 ms frame of caller audio (with the wire's bytes, where it has them)."""
        now = self.media_t
        self.media_t += FRAME_S
        if self.closed:
            return
        if self.held:  # on hold: the call's clock runs, but nobody is listening
            if now >= self.agent.max_call_s:
                self.work.spawn(self._hangup_now("max_duration"))
            return
        self._recent.append(frame)
        if self.turns.capturing:
            self._capture(frame)
        for action in self.turns.frame(self.vad.is_voiced(frame.pcm), now):
            self._on_turn_action(action, now)
        for kaction in self.keypad.tick(now):
            self._on_keypad([kaction])
        if now >= self.agent.max_call_s and not self.closed:
            self.work.spawn(self._hangup_now("max_duration"))

    def next_frame(self) -> AudioFrame | None:
        """The bot's next 20 ms of audio, or None for silence."""
        frame = self.playout.next_frame()
        if frame is not None and not self.playout.pending:
            self._drained.set()
        return frame

    def playback_finished(self, report: PlaybackFinished) -> None:
        """The transport knows what the far end really played (platform marks): what it
        did not play of this reply is unheard, for `heard_text` and the LLM context."""
        if report.interrupted:
            self.frames_taken_back += self.playout.rewind(report.position_s, FRAME_S)

    def set_held(self, held: bool) -> None:
        """The caller is put on hold (a re-INVITE with sendonly/inactive, or voxd holds
        it during a consultation) or taken off: while held no caller audio reaches the
        turn-taker or STT (no turns), and the transport sends none of the bot's speech."""
        if held == self.held:
            return
        self.held = held
        self._drop_utterance()
        self._recent.clear()
        self._barge_onset = None
        self._paused_at = None
        if self.playout.paused:
            self.playout.resume()
        self.record.metadata["holds"] = int(self.record.metadata.get("holds", 0)) + (1 if held else 0)

    def transport_failed(self, message: str, **detail: object) -> None:
        """The call's transport broke: tell observers (webhooks `error.occurred`, metrics)."""
        self._emit(EngineError(self.record, "transport", message, {"transport": self.record.transport, **detail}))

    def feed_dtmf(self, digit: str, source: str = "rfc4733") -> None:
        if self.closed or len(digit) != 1:
            return
        rec = DtmfRecord(digit=kp.MASK if self.keypad.secure else digit, at=time.time(), source=source)
        self.record.dtmf.append(rec)
        self._emit(DtmfReceived(self.record, rec))
        if self._bot_busy():
            self._interrupt(reason="dtmf")
        self._on_keypad(self.keypad.digit(digit, self.media_t))

    async def close(self, reason: EndReason, ended_by: EndedBy = "caller") -> None:
        if self.closed:
            return
        self.closed = True
        if self._bot_turn is not None:
            self._finish_bot_turn(interrupted=True)
        await self.work.cancel_all()
        self.playout.clear()
        with contextlib.suppress(Exception):
            await self.stt.aclose()
        with contextlib.suppress(Exception):
            await self.engines.llm.aclose()
        self.record.ended_at = time.time()
        self.record.end_reason = self.record.end_reason or reason
        self.record.ended_by = self.record.ended_by or ended_by
        try:
            self.control.media_ended()  # the transport releases its media before the record is saved
        except Exception:
            log.exception("releasing the call's media failed")
        self._emit(CallEnded(self.record))
        self.ended.set()

    async def wait_idle(self) -> None:
        """Wait until no model work is in flight (virtual-clock harness)."""
        await self.work.wait_idle()

    # ------------------------------------------------------------ turn-taking
    def _capture(self, frame: AudioFrame) -> None:
        self.stt.push(frame)  # as the wire gave it: a recogniser that takes its codec sends its bytes
        self._utterance += frame.pcm
        excess = len(self._utterance) - int(TURN_AUDIO_S * SAMPLE_RATE) * 2
        if excess > 0:
            del self._utterance[:excess]

    def _on_turn_action(self, a: tt.TurnAction, now: float) -> None:
        if isinstance(a, tt.ConfirmOnset):
            # start capturing with the preroll so the first syllable is kept
            if len(self._utterance) == 0:  # first ask for this onset: start with the preroll
                for f in self._recent:
                    self._capture(f)
            if (self._paused_at is None and self.agent.interruption.enabled and self._bot_busy()
                    and now >= self._noise_until):
                # hold the bot's voice while Silero decides: barge-in costs one frame, not a model call
                self.playout.pause()
                self._paused_at = now
            self.work.spawn(self._confirm(a.ticket, now))
        elif isinstance(a, tt.OnsetRejected):
            self.stt.reset()
            self._utterance.clear()
            if self._paused_at is not None and self._barge_onset is None:
                self._paused_at = None  # it was noise: carry on talking
                self.playout.resume()
                self._noise_until = now + NOISE_HOLDOFF_S
        elif isinstance(a, tt.SpeechStarted):
            self._on_speech_started(a.onset, now)
        elif isinstance(a, tt.SpeechSustained):
            if self._barge_onset is not None and self._enough_words():
                self._interrupt(reason="speech")
        elif isinstance(a, tt.ShortSpeechEnded):
            if self._barge_onset is not None:  # a backchannel: carry on talking
                self.backchannels += 1
                self._barge_onset = None
                self._paused_at = None
                self.playout.resume()
                self._drop_utterance()
        elif isinstance(a, tt.AskTurnModel):
            if self.engines.turn_model is None:
                return
            self.work.spawn(self._ask_turn_model(a.ticket))
        elif isinstance(a, tt.Paused):
            # only with a free inference worker: a guess must never delay real work
            if self.agent.turn.speculates and not self._bot_busy() and inference.backlog() < inference.pool_size():
                self.stt.speculate()
        elif isinstance(a, tt.Resumed):
            self.stt.drop_speculation()
        elif isinstance(a, tt.TurnEnded):
            self._on_turn_end(a, now)

    def _on_speech_started(self, onset: float, now: float) -> None:
        self._emit(CallerSpeaking(self.record, interrupting=self._bot_busy()))
        self.keypad.note_activity(now)
        if not self._bot_busy():
            return
        if not self.agent.interruption.enabled:
            self._drop_utterance()
            return
        # the bot's voice stops on the next frame (if the onset candidate did not already
        # stop it); whether this is a real interruption is decided later
        self.playout.pause()
        paused_at = self._paused_at if self._paused_at is not None else now
        self._paused_at = paused_at
        self._barge_onset = onset
        if self._bot_turn is not None and self._bot_turn.barge_in_ms is None:
            self._bot_turn.barge_in_ms = round((paused_at + FRAME_S - onset) * 1000, 1)

    def _drop_utterance(self) -> None:
        self.turns.reset()
        self.stt.reset()
        self._utterance.clear()

    def _on_turn_end(self, a: tt.TurnEnded, now: float) -> None:
        audio_turn_end = time.perf_counter()
        endpoint_ms = round((now + FRAME_S - a.speech_end) * 1000, 1)
        self._utterance.clear()
        if self._barge_onset is not None:
            # the bot is paused, waiting to know if this was an interruption (min_words):
            # decide on the transcript without cutting the reply first
            self.work.spawn(self._caller_turn(audio_turn_end, endpoint_ms))
        else:
            self._start_reply(self._caller_turn(audio_turn_end, endpoint_ms))

    def _enough_words(self, text: str | None = None) -> bool:
        need = self.agent.interruption.min_words
        if need <= 0:
            return True
        words = len((text if text is not None else self._interim).split())
        return words >= need

    def _on_interim(self, text: str) -> None:
        self._interim = text
        if self._barge_onset is not None and self.turns.in_speech and self._enough_words():
            self._interrupt(reason="speech")

    async def _confirm(self, ticket: int, now: float) -> None:
        since_onset = round((now - self.turns.onset) / FRAME_S) + 2
        window = b"".join(f.pcm for f in list(self._recent)[-min(CONFIRM_FRAMES, max(since_onset, 5)):])
        ok = True
        if self.engines.confirm is not None:
            try:
                prob = await self.engines.confirm(np.frombuffer(window, dtype="<i2"))
                ok = prob >= 0.5
            except Exception as e:  # a broken confirmer must not deafen the call
                log.warning("speech confirmation failed: %s", e)
        actions = self.turns.confirmed(ticket, ok, self.media_t)
        for action in actions:
            self._on_turn_action(action, self.media_t)

    async def _ask_turn_model(self, ticket: int) -> None:
        assert self.engines.turn_model is not None
        if inference.backlog() > OVERLOAD_BACKLOG:
            return  # shed load: the max_silence cap still ends the turn
        audio = np.frombuffer(bytes(self._utterance), dtype="<i2")
        try:
            prob = await self.engines.turn_model(audio)
        except Exception as e:
            log.warning("turn model failed: %s", e)
            return
        for action in self.turns.turn_model(ticket, prob):
            self._on_turn_action(action, self.media_t)

    # ------------------------------------------------------------ barge-in
    @property
    def replying(self) -> bool:
        """A reply is being made or played (the model may not have said a word yet)."""
        return self._bot_busy()

    def _bot_busy(self) -> bool:
        return (self._reply is not None and not self._reply.done()) or self.playout.pending

    def _interrupt(self, reason: str) -> None:
        """Cancel the in-flight reply and drop queued audio; keep what was heard."""
        self._barge_onset = None
        self._paused_at = None
        if self._reply is not None and not self._reply.done():
            self._reply.cancel()
        self._reply = None
        self.playout.clear()
        report = self.control.clear()
        if report is not None:
            self.playback_finished(report)
        self.record.interruptions += 1
        if self._bot_turn is not None:
            self._finish_bot_turn(interrupted=True)
        log.debug("interrupted by %s", reason)

    def _finish_bot_turn(self, interrupted: bool) -> None:
        turn, self._bot_turn = self._bot_turn, None
        if turn is None:
            return
        turn.ended_at = time.time()
        self.keypad.note_activity(self.media_t)
        if interrupted:
            if not turn.text and self._speaker is not None:
                turn.text = " ".join(self._speaker.spoken)
            turn.interrupted = True
            turn.heard_text = self.playout.heard_text()
        # the LLM context holds only what the caller heard
        spoken = turn.heard_text if turn.interrupted else turn.text
        if spoken:
            self.messages.append(Message("assistant", spoken))
        self._emit(TurnCompleted(self.record, turn))

    # ------------------------------------------------------------ replies
    def _start_reply(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._reply is not None and not self._reply.done():
            self._interrupt(reason="new_turn")
        self._reply = self.work.spawn(coro)

    def _new_bot_turn(self, source: str) -> Turn:
        self.playout.new_reply()
        turn = Turn(index=len(self.record.turns), speaker="bot", text="", started_at=time.time(),
                    source=source)  # type: ignore[arg-type]
        self.record.turns.append(turn)
        self._bot_turn = turn
        return turn

    async def _caller_turn(self, t0: float, endpoint_ms: float) -> None:
        try:
            text = (await self.stt.finalize()).strip()
        except ProviderError as e:
            self._engine_error("stt", e)
            return
        transcript_ms = (time.perf_counter() - t0) * 1000
        self._interim = ""
        if self._barge_onset is not None:
            if not self._enough_words(text):  # "yeah", "mm-hmm": a backchannel after all
                self.backchannels += 1
                self._barge_onset = None
                self._paused_at = None
                self.playout.resume()
                return
            self._interrupt(reason="speech")
            self._reply = asyncio.current_task()  # this task is now the reply
        if not text:
            self._paused_at = None
            if self.playout.paused:
                self.playout.resume()
            return
        self.record.turns.append(
            Turn(index=len(self.record.turns), speaker="caller", text=text, started_at=time.time(),
                 ended_at=time.time())
        )
        log.debug("caller said: %s", text)  # personal data in it is masked by the log filter (voxd/logs.py)
        self._emit(TurnCompleted(self.record, self.record.turns[-1]))
        self.messages.append(Message("user", text))
        await self._llm_reply(t0, TurnLatency(endpoint_ms=endpoint_ms, transcript_ms=round(transcript_ms, 1)))

    async def _llm_reply(self, t0: float, latency: TurnLatency) -> None:
        turn = self._new_bot_turn("reply")
        turn.latency = latency
        metrics = ReplyMetrics(started=t0)
        speaker = Speaker(self.engines.tts, self.playout, metrics)
        self._speaker = speaker
        tts_task = asyncio.ensure_future(speaker.run())
        try:
            try:
                turn.text = await run_llm_reply(
                    self.engines.llm, self.messages, self.tools.specs(), speaker, turn, self.tools.run, self._tool_policy
                )
            except ProviderError as e:
                self._engine_error("llm", e)
                speaker.say("Sorry, I'm having trouble right now.")
                turn.text = "Sorry, I'm having trouble right now."
            finally:
                speaker.done()
            if not turn.text and self._hangup_reason and self.agent.goodbye:
                speaker.say(self.agent.goodbye)
                turn.text = self.agent.goodbye
            await tts_task
        finally:
            if not tts_task.done():
                tts_task.cancel()
        latency.first_token_ms = metrics.ms(metrics.first_token)
        latency.first_audio_ms = metrics.ms(metrics.first_audio)
        for k in ("first_token_ms", "first_audio_ms"):
            v = getattr(latency, k)
            if v is not None:
                setattr(latency, k, round(v, 1))
        await self._drain_then_finish()

    async def _say_lines(self, lines: list[str], source: str) -> None:
        turn = self._new_bot_turn(source)
        turn.text = " ".join(lines)
        for line in lines:
            await synthesize_into(self.engines.tts, line, self.playout)
        await self._drain_then_finish()

    async def _drain_then_finish(self) -> None:
        """Wait until the caller has heard everything, then close the bot turn."""
        await self._wait_playout()
        self._finish_bot_turn(interrupted=False)
        self._speaker = None
        if self._hangup_reason is not None:
            await self._hangup_now(self._hangup_reason)
        elif self._menu_after is not None:
            name, self._menu_after = self._menu_after, None
            await self._keypad_actions(self.keypad.open_menu(name, self.media_t))

    async def _wait_playout(self) -> None:
        with self.work.waiting():
            while self.playout.pending:
                self._drained.clear()
                await self._drained.wait()

    def say(self, text: str, source: str = "menu") -> None:
        """Speak fixed text as its own bot turn (menus, API), replacing any reply."""
        self._start_reply(self._say_lines([text], source))

    async def say_now(self, text: str) -> None:
        """Speak within the running reply and wait until it has been heard."""
        await synthesize_into(self.engines.tts, text, self.playout)
        await self._wait_playout()

    def end_with(self, text: str | None, reason: EndReason) -> None:
        """Say `text` (cutting off any reply in progress), then hang up."""

        async def go() -> None:
            if text:
                await self._say_lines([text], "reply")
            await self._hangup_now(reason)

        if not self.closed:
            self._start_reply(go())

    def open_menu_after_reply(self, name: str) -> None:
        self._menu_after = name

    # ------------------------------------------------------------ keypad
    def _on_keypad(self, actions: list[kp.DtmfAction]) -> None:
        if actions:
            self._start_reply(self._keypad_actions(actions))

    async def _keypad_actions(self, actions: list[kp.DtmfAction]) -> None:
        lines = [a.text for a in actions if isinstance(a, kp.Say)]
        if lines:
            await self._say_lines(lines, "menu")
        for a in actions:
            if isinstance(a, kp.Hangup):
                await self._hangup_now("menu_hangup")
            elif isinstance(a, kp.Transfer):
                await self.tools.transfer(a.target, attended=a.attended, summary=a.summary)
            elif isinstance(a, kp.ToConversation):
                self.messages.append(Message("user", a.text))
                await self._llm_reply(time.perf_counter(), TurnLatency())
            elif isinstance(a, kp.CallTool):
                res = await self.tools.run_named(a.name, a.arguments, masked=a.masked)
                self.messages.append(Message("user", f"(Keypad entry sent to {a.name}: {res.for_llm()})"))
                await self._llm_reply(time.perf_counter(), TurnLatency())

    # ------------------------------------------------------------ call control
    def request_hangup(self, reason: str) -> None:
        """Hang up once the current reply has been heard (end_call tool). A reason
        outside the EndReason vocabulary (the model's own words) is kept in metadata."""
        if reason in END_REASONS:
            self._hangup_reason = reason  # type: ignore[assignment]
        else:
            self._hangup_reason = "agent_hangup"
            self.record.metadata["hangup_reason"] = reason[:200]

    async def _hangup_now(self, reason: EndReason) -> None:
        self.record.end_reason = reason
        self.record.ended_by = "agent"
        try:
            await self.control.hangup()
        finally:
            self.work.forget(asyncio.current_task())
            await self.close(reason, ended_by="agent")

    def _on_switch(self, sw: Switch) -> None:
        self._emit(EngineError(self.record, sw.role, sw.message(), {"provider": sw.from_provider, "fallback": sw.to_provider}))

    def _engine_error(self, role: str, e: ProviderError) -> None:
        log.warning("%s engine error: %s", role, e)
        self._emit(EngineError(self.record, role, str(e), {"provider": e.provider}))

    # ------------------------------------------------------------ plumbing
    def _emit(self, event: CallEvent) -> None:
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                log.exception("event listener failed")

    def emit_tool(self, event: ToolExecuted) -> None:
        self._emit(event)

    def publish(self, event: CallEvent) -> None:
        """An event about this call from outside the session (its recording is ready)."""
        self._emit(event)
