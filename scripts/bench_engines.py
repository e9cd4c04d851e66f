#!/usr/bin/env python3
"""Measure voxd's offline engines on telephone speech and print the numbers.

  python scripts/bench_engines.py [--quick] [--wideband]

- whisper tiny.en: WER per caller voice on the 8 kHz mu-law fixtures (resampled to
  16 kHz, as the pipeline hears a phone call) and CPU-seconds per audio-second;
- piper and espeak: time to first audio and real-time factor for a short clause and
  a long sentence, and WER of whisper hearing them back over a telephone line;
- Silero confirm and Smart Turn: inference ms p50 / p99;
- Smart Turn: end-of-turn probability on complete vs. cut-off utterances.

Every inference goes through voxd's inference pool, as in a call. Wall-clock
numbers depend on what else the machine is doing: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from engines import speech  # noqa: E402  (the fixtures' helpers: tests/engines/speech.py)

from voxd.media.audio import SAMPLE_RATE  # noqa: E402
from voxd.media.inference import intra_op_threads, pool_size, run_inference  # noqa: E402
from voxd.media.silero import SileroVAD  # noqa: E402
from voxd.media.turn import SmartTurn  # noqa: E402
from voxd.providers.base import TextToSpeech  # noqa: E402
from voxd.providers.stt.whisper import WhisperSTT  # noqa: E402
from voxd.providers.tts.espeak import EspeakTTS  # noqa: E402
from voxd.providers.tts.piper import PiperTTS  # noqa: E402

WER_SLUGS = ("what_time", "twelve_times_seven", "book_tuesday", "opening_hours",
             "speak_to_sales", "goodbye", "yes")
SHORT = "It's ten past four."
LONG = ("Your appointment is booked for Tuesday at three pm, and you will get a text "
        "message confirming it shortly.")
HEARD_BACK = ("It's ten past four.", "Twelve times seven is eighty four.",
              "Your appointment is booked for Tuesday at three pm.",
              "We are open from nine to five, Monday to Friday.")


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


async def timed(fn: Callable[..., object], *args: object) -> tuple[float, float]:
    """(wall s, process CPU s) of one call in the inference pool."""
    c0, t0 = time.process_time(), time.perf_counter()
    await run_inference(fn, *args)
    return time.perf_counter() - t0, time.process_time() - c0


class LagProbe:
    """Measures how late a 10 ms timer fires on the event loop while engines run."""

    def __init__(self) -> None:
        self.lags_ms: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(0.01)
            self.lags_ms.append((loop.time() - t - 0.01) * 1000)

    def start(self) -> LagProbe:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def stop(self) -> None:
        if self._task:
            self._task.cancel()

    def summary(self) -> str:
        if not self.lags_ms:
            return "no samples"
        return f"p50 {pct(self.lags_ms, 50):.1f} ms  p99 {pct(self.lags_ms, 99):.1f} ms"


async def bench_whisper(stt: WhisperSTT, rate: int) -> None:
    print(f"\n== whisper tiny.en on {rate // 1000} kHz callers (beam {stt.options.beam_size}, "
          f"{stt.options.threads} threads)")
    print(f"{'voice':14s} {'WER':>6s} {'CPU-s/audio-s':>14s} {'wall-s/utt':>11s}  worst")
    all_pairs: list[tuple[str, str]] = []
    cpu_total = audio_total = 0.0
    probe = LagProbe().start()
    for voice in speech.voices():
        pairs, cpu, audio, walls = [], 0.0, 0.0, []
        for slug in WER_SLUGS:
            pcm = speech.load(voice, slug, rate)
            c0, t0 = time.process_time(), time.perf_counter()
            hyp = await run_inference(stt.transcribe_sync, pcm)
            walls.append(time.perf_counter() - t0)
            cpu += time.process_time() - c0
            audio += pcm.size / SAMPLE_RATE
            pairs.append((speech.text_of(slug), hyp))
        worst = max(pairs, key=lambda p: speech.word_errors(*p)[0])
        print(f"{voice:14s} {speech.wer(pairs):6.1%} {cpu / audio:14.2f} "
              f"{statistics.median(walls):11.2f}  {worst[1]!r}")
        all_pairs += pairs
        cpu_total += cpu
        audio_total += audio
    probe.stop()
    print(f"{'all':14s} {speech.wer(all_pairs):6.1%} {cpu_total / audio_total:14.2f}")
    print(f"event-loop lag while decoding (10 ms timer): {probe.summary()}")


async def first_audio(tts: TextToSpeech, text: str) -> tuple[float, float, float, bytes]:
    """(first-audio s, total wall s, CPU s, pcm)."""
    c0, t0 = time.process_time(), time.perf_counter()
    first = None
    chunks = []
    async for chunk in tts.synthesize(text):
        if first is None:
            first = time.perf_counter() - t0
        chunks.append(chunk.pcm)
    return first or 0.0, time.perf_counter() - t0, time.process_time() - c0, b"".join(chunks)


async def bench_tts(name: str, tts: TextToSpeech, stt: WhisperSTT, repeats: int) -> None:
    await tts.warm_up()
    for label, text in (("short clause", SHORT), ("long sentence", LONG)):
        firsts, rtfs, cpus = [], [], []
        for _ in range(repeats):
            first, wall, cpu, pcm = await first_audio(tts, text)
            dur = len(pcm) / 2 / tts.sample_rate
            firsts.append(first * 1000)
            rtfs.append(wall / dur)
            cpus.append(cpu / dur)
        print(f"{name:7s} {label:14s} first audio {statistics.median(firsts):7.1f} ms"
              f" (max {max(firsts):6.1f})  RTF {statistics.median(rtfs):5.3f}"
              f"  CPU-s/audio-s {statistics.median(cpus):5.3f}  audio {dur:4.1f} s")
    pairs = []
    for text in HEARD_BACK:
        *_, pcm = await first_audio(tts, text)
        line = speech.telephone(np.frombuffer(pcm, dtype="<i2"), tts.sample_rate)
        pairs.append((text, await run_inference(stt.transcribe_sync, line)))
    worst = max(pairs, key=lambda p: speech.word_errors(*p)[0])
    print(f"{name:7s} heard back by whisper over 8 kHz mu-law: WER {speech.wer(pairs):.1%}"
          f"  worst {worst[1]!r}")


async def bench_vad_turn(calls: int) -> None:
    silero, turn = SileroVAD(), SmartTurn()
    await silero.warm_up()
    await turn.warm_up()
    pcm = speech.load("flite-slt", "book_tuesday")
    windows = [pcm[i : i + 8000] for i in range(0, pcm.size - 8000, 800)]
    ms = [(await timed(silero.probability_sync, windows[i % len(windows)]))[0] * 1000
          for i in range(calls * 5)]
    print(f"\n== Silero confirm ({silero.steps} x 32 ms steps): "
          f"p50 {pct(ms, 50):.2f} ms  p99 {pct(ms, 99):.2f} ms")
    speech_p = [silero.probability_sync(speech.load(v, "what_time")[: int(0.5 * SAMPLE_RATE)])
                for v in speech.voices()]
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal(SAMPLE_RATE // 2) * 1000).astype(np.int16)
    print(f"   speech onset +300 ms: min {min(speech_p):.2f} median "
          f"{statistics.median(speech_p):.2f}; silence "
          f"{silero.probability_sync(np.zeros(8000, np.int16)):.2f}; white noise -30 dBFS "
          f"{silero.probability_sync(noise):.2f}")
    lengths = [pcm[: int(s * SAMPLE_RATE)] for s in (1, 2, 3, 4)]
    ms = [(await timed(turn.end_probability_sync, lengths[i % 4]))[0] * 1000 for i in range(calls)]
    print(f"== Smart Turn v3.2 (8 s window): p50 {pct(ms, 50):.1f} ms  p99 {pct(ms, 99):.1f} ms")

    print("\n== Smart Turn end-of-turn probability (8 kHz callers, 300 ms trailing silence)")
    cut_slugs = list(speech.manifest()["cut_after"])
    head = "".join(f" {s + ' full':>20s} {s + ' cut':>20s}" for s in cut_slugs)
    print(f"{'voice':14s} {'what_time':>10s} {'opening_hrs':>11s}{head}")
    for voice in speech.voices():
        row = [turn.end_probability_sync(speech.load(voice, s)) for s in ("what_time", "opening_hours")]
        for slug in cut_slugs:
            row.append(turn.end_probability_sync(speech.load(voice, slug)))
            row.append(turn.end_probability_sync(speech.load(voice, f"{slug}.cut")))
        cells = f"{row[0]:10.2f} {row[1]:11.2f}" + "".join(f" {p:20.2f}" for p in row[2:])
        print(f"{voice:14s} {cells}")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--wideband", action="store_true", help="also score whisper on 16 kHz callers")
    ap.add_argument("--threads", type=int, default=None, help="whisper CTranslate2 threads")
    args = ap.parse_args()
    print(f"cores {os.cpu_count()}, inference pool {pool_size()} threads, "
          f"ONNX intra-op threads {intra_op_threads()}")
    stt = WhisperSTT(threads=args.threads)
    t0 = time.perf_counter()
    await stt.warm_up()
    print(f"whisper load + first decode {time.perf_counter() - t0:.1f} s")
    await bench_whisper(stt, 8000)
    if args.wideband:
        await bench_whisper(stt, 16000)
    print("\n== TTS (first audio = text in -> first PCM chunk out)")
    repeats = 2 if args.quick else 5
    await bench_tts("piper", PiperTTS(), stt, repeats)
    await bench_tts("espeak", EspeakTTS(), stt, repeats)
    await bench_vad_turn(20 if args.quick else 60)


if __name__ == "__main__":
    asyncio.run(main())
