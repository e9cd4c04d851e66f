"""The pipecat-ai side of `bench_calls.py --engine pipecat`.

The same load as the voxd density run, built the way a pipecat 1.14 user would:
one `Pipeline` + `PipelineTask` + `PipelineRunner` per call, all on one event loop.

    CallerInput -> VADProcessor(SileroVADAnalyzer) -> FakeTurnSTT -> FakeLLM -> FakeTTS -> PacedOutput

- CallerInput pushes one `InputAudioRawFrame` every 20 ms from the caller's WAV loop
  (its own paced task, as a pipecat input transport has).
- Silero VAD runs per frame through pipecat's `VADProcessor` (one analyzer per call,
  as pipecat requires: the analyzer holds the recurrent state).
- FakeTurnSTT is the instant stand-in for STT + turn detection: it feeds pipecat's
  `LocalSmartTurnAnalyzerV3` (asked on each VAD stop, with its silence cap), and on
  end of turn pushes `UserStoppedSpeakingFrame` + a `TranscriptionFrame`. Speech
  onset while the bot talks broadcasts an interruption. To be generous to pipecat,
  the Smart Turn ONNX session is shared by all calls (pipecat builds one per analyzer).
- FakeLLM answers a transcription with "You said: ..." as word `LLMTextFrame`s;
  FakeTTS turns the text into 100 ms `TTSAudioRawFrame` chunks of a tone, 60 ms per
  character (voxd's FakeTTS); PacedOutput plays 20 ms per tick and drops its queue
  on `InterruptionFrame`.
"""

from __future__ import annotations

import asyncio
import gc
import os as _os
import sys
import time
from collections import deque
from typing import Any

import numpy as np
from bench_calls import Caller, DensityResult, LagProbe, ModelMeter, callers, measure, rss_mb

FRAME_BYTES = 640
SMART = _os.environ.get("VOXD_BENCH_TURN", "smart") == "smart"
RATE = 16_000
TRANSCRIPT = "what time is it"


def _quiet_loguru() -> None:
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")


class CallStats:
    __slots__ = ("bot_frames", "bot_speaking", "interruptions", "replies", "turns")

    def __init__(self) -> None:
        self.turns = 0
        self.replies = 0
        self.interruptions = 0
        self.bot_frames = 0
        self.bot_speaking = False


def build_processors(who: Caller, stats: CallStats, turn_session: Any) -> list[Any]:
    """The processors of one call (pipecat imported lazily: the voxd run never loads it)."""
    from pipecat.audio.turn.base_turn_analyzer import EndOfTurnState
    from pipecat.audio.turn.smart_turn.base_smart_turn import BaseSmartTurn
    from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.frames.frames import (
        CancelFrame,
        EndFrame,
        Frame,
        InputAudioRawFrame,
        InterruptionFrame,
        LLMFullResponseEndFrame,
        LLMFullResponseStartFrame,
        LLMTextFrame,
        StartFrame,
        TranscriptionFrame,
        TTSAudioRawFrame,
        TTSStartedFrame,
        TTSStoppedFrame,
        UserStoppedSpeakingFrame,
        VADUserStartedSpeakingFrame,
        VADUserStoppedSpeakingFrame,
    )
    from pipecat.processors.audio.vad_processor import VADProcessor
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

    class SharedSmartTurn(LocalSmartTurnAnalyzerV3):
        def __init__(self) -> None:
            BaseSmartTurn.__init__(self, sample_rate=RATE)
            self._log_data = False
            self._session = turn_session
            self.set_sample_rate(RATE)

    class CallerInput(FrameProcessor):
        def __init__(self) -> None:
            super().__init__()
            self._task: asyncio.Task[None] | None = None

        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            await self.push_frame(frame, direction)
            if isinstance(frame, StartFrame) and self._task is None:
                self._task = self.create_task(self._feed(), "caller-input")
            elif isinstance(frame, (EndFrame, CancelFrame)) and self._task is not None:
                await self.cancel_task(self._task)
                self._task = None

        async def _feed(self) -> None:
            loop = asyncio.get_running_loop()
            deadline = loop.time()
            while True:
                await self.push_frame(InputAudioRawFrame(audio=who.next(), sample_rate=RATE, num_channels=1))
                deadline += 0.02
                await asyncio.sleep(max(0.0, deadline - loop.time()))

    class FakeTurnSTT(FrameProcessor):
        def __init__(self) -> None:
            super().__init__()
            self.smart = SharedSmartTurn()
            self.speaking = False
            self._pending: asyncio.Task[None] | None = None

        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, InputAudioRawFrame):
                if SMART and self.smart.append_audio(frame.audio, self.speaking) == EndOfTurnState.COMPLETE:
                    await self._end_turn()  # the silence cap
            elif isinstance(frame, VADUserStartedSpeakingFrame):
                self.speaking = True
                if stats.bot_speaking:
                    stats.interruptions += 1
                    await self.broadcast_interruption()  # type: ignore[no-untyped-call]
            elif isinstance(frame, VADUserStoppedSpeakingFrame):
                self.speaking = False
                if SMART:
                    self._pending = self.create_task(self._ask_model(), "smart-turn")
                else:
                    await self._end_turn()  # VAD silence only
            await self.push_frame(frame, direction)

        async def _ask_model(self) -> None:
            state, _ = await self.smart.analyze_end_of_turn()
            if state == EndOfTurnState.COMPLETE and not self.speaking:
                await self._end_turn()

        async def _end_turn(self) -> None:
            stats.turns += 1
            await self.push_frame(UserStoppedSpeakingFrame())
            await self.push_frame(TranscriptionFrame(TRANSCRIPT, "caller", str(time.time())))

    class FakeLLM(FrameProcessor):
        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if not isinstance(frame, TranscriptionFrame):
                await self.push_frame(frame, direction)
                return
            stats.replies += 1
            await self.push_frame(LLMFullResponseStartFrame())
            for word in f"You said: {frame.text}.".split(" "):
                await self.push_frame(LLMTextFrame(word + " "))
            await self.push_frame(LLMFullResponseEndFrame())

    class FakeTTS(FrameProcessor):
        def __init__(self) -> None:
            super().__init__()
            t = np.arange(RATE // 10) / RATE
            self._chunk = (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes()
            self._text: list[str] = []

        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, LLMTextFrame):
                self._text.append(frame.text)
                return
            if isinstance(frame, InterruptionFrame):
                self._text.clear()
            if isinstance(frame, LLMFullResponseEndFrame) and self._text:
                text = "".join(self._text).strip()
                self._text.clear()
                await self.push_frame(TTSStartedFrame())
                for _ in range(max(1, int(len(text) * 60 / 100))):
                    await self.push_frame(TTSAudioRawFrame(audio=self._chunk, sample_rate=RATE, num_channels=1))
                await self.push_frame(TTSStoppedFrame())
            await self.push_frame(frame, direction)

    class PacedOutput(FrameProcessor):
        def __init__(self) -> None:
            super().__init__()
            self._queue: deque[bytes] = deque()
            self._task: asyncio.Task[None] | None = None

        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, TTSAudioRawFrame):
                a = frame.audio
                self._queue.extend(a[i : i + FRAME_BYTES] for i in range(0, len(a), FRAME_BYTES))
                stats.bot_speaking = True
                return
            if isinstance(frame, InputAudioRawFrame):
                return
            if isinstance(frame, InterruptionFrame):
                self._queue.clear()
                stats.bot_speaking = False
            elif isinstance(frame, StartFrame) and self._task is None:
                self._task = self.create_task(self._play(), "paced-output")
            elif isinstance(frame, (EndFrame, CancelFrame)) and self._task is not None:
                await self.cancel_task(self._task)
                self._task = None
            await self.push_frame(frame, direction)

        async def _play(self) -> None:
            loop = asyncio.get_running_loop()
            deadline = loop.time()
            while True:
                if self._queue:
                    self._queue.popleft()
                    stats.bot_frames += 1
                    stats.bot_speaking = bool(self._queue)
                deadline += 0.02
                await asyncio.sleep(max(0.0, deadline - loop.time()))

    return [CallerInput(), VADProcessor(vad_analyzer=SileroVADAnalyzer(sample_rate=RATE)), FakeTurnSTT(),
            FakeLLM(), FakeTTS(), PacedOutput()]


def _turn_session() -> Any:
    import onnxruntime as ort
    from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3

    probe = LocalSmartTurnAnalyzerV3(sample_rate=RATE)  # builds the session the pipecat way, once
    probe._predict_endpoint(np.zeros(RATE, dtype=np.float32))  # warm
    session: ort.InferenceSession = probe._session
    return session


async def pipecat_density(n: int, seconds: float) -> DensityResult:
    _quiet_loguru()
    from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.runner import PipelineRunner
    from pipecat.pipeline.task import PipelineParams, PipelineTask

    meters = [ModelMeter("silero"), ModelMeter("smart-turn")]
    SileroVADAnalyzer.voice_confidence = meters[0].wrap(SileroVADAnalyzer.voice_confidence)  # type: ignore[method-assign]
    LocalSmartTurnAnalyzerV3._predict_endpoint = meters[1].wrap(  # type: ignore[method-assign]
        LocalSmartTurnAnalyzerV3._predict_endpoint
    )
    turn_session = _turn_session()
    # Warm the Silero code path once so its import and first-run cost is not per call.
    warm = SileroVADAnalyzer(sample_rate=RATE)
    warm.set_sample_rate(RATE)
    warm.voice_confidence(bytes(1024))
    del warm
    people = callers(n)
    gc.collect()
    rss0 = rss_mb()

    t_setup = time.perf_counter()
    probe = LagProbe()
    probe.start()
    all_stats: list[CallStats] = []
    tasks: list[PipelineTask] = []
    runners: list[PipelineRunner] = []
    runs: list[asyncio.Task[None]] = []
    for who in people:
        stats = CallStats()
        all_stats.append(stats)
        pipeline = Pipeline(build_processors(who, stats, turn_session))
        task = PipelineTask(
            pipeline,
            params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE),
            enable_rtvi=False,
            idle_timeout_secs=None,
            check_dangling_tasks=False,
        )
        tasks.append(task)
        runner = PipelineRunner(handle_sigint=False, check_dangling_tasks=False)
        await runner.add_workers(task)
        runners.append(runner)
        runs.append(asyncio.create_task(runner.run()))
    setup_s = time.perf_counter() - t_setup

    w = await measure(probe, n, seconds, rss0, meters)
    await probe.stop()
    snap = [(s.turns, s.replies, s.interruptions, s.bot_frames) for s in all_stats]
    for runner in runners:
        await runner.cancel()
    await asyncio.wait(runs, timeout=10)
    return DensityResult(
        engine="pipecat", calls=n, seconds=seconds, cpu_ms_per_call_s=w.cpu_ms_per_call_s, rss_base_mb=rss0,
        rss_per_call_mb=w.rss_per_call_mb, cpu_cores=w.cpu_cores,
        model_cpu_ms_per_call_s=w.model_cpu_ms_per_call_s, models=w.models, lag_p50_ms=probe.pct(0.50), lag_p99_ms=probe.pct(0.99),
        lag_max_ms=max(probe.samples, default=0.0) * 1000.0,
        caller_turns=sum(x[0] for x in snap), bot_replies=sum(x[1] for x in snap),
        interruptions=sum(x[2] for x in snap), bot_frames=sum(x[3] for x in snap), setup_s=setup_s,
        notes=["one Pipeline/PipelineTask/PipelineRunner per call; Silero per call (VADProcessor); "
               "Smart Turn v3 ONNX session shared"],
    )
