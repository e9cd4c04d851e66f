#!/usr/bin/env python3
"""Turn-end test set and benchmark: false cut-offs and added latency per detector.

The set: SENTENCES spoken by several local voices (flite slt/kal/awb/rms, festival kal,
piper joe), through an 8 kHz G.711 mu-law line (`voxd.suites.voices`), each one
  - complete, and
  - with a mid-sentence pause of 300/500/700/900 ms inserted at a word boundary
    (found with faster-whisper word timestamps on the whole sentence, then moved to
    the quietest 20 ms nearby, so the words keep their running prosody).

Each utterance goes through voxd's own turn-taking (`voxd.call.turns.TurnTaker`, the
session's webrtcvad frames, Silero onset confirmation, Smart Turn) on a media clock
where each model answer arrives as many frames later as its CPU time took, as in a
live call. Per detector it reports:
  - false cut-off rate: the turn ended inside the pause (the bot would answer half a
    question), over the paused utterances; and on complete ones (a cut at a natural gap)
  - added latency: end of the caller's speech -> end of turn decided, p50/p90, on the
    utterances that were not cut off

`--calls` also runs the "What time ... is it?" utterances as whole calls through the
harness (`voxd.suites.audio`, the receptionist agent, real engines) and counts the calls
in which get_current_time ran more than once (the known double-answer defect).

  python scripts/bench_turns.py [--voices flite:slt,...] [--pauses 300,500,700,900]
                                [--calls] [--write-manifest tests/data/turns/manifest.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from voxd.agents.schema import InterruptionConfig, TurnConfig
from voxd.call import turns as tt
from voxd.media.audio import FRAME_BYTES, SAMPLE_RATE
from voxd.media.vad import FrameVAD
from voxd.suites import voices

ROOT = Path(__file__).resolve().parent.parent
FRAME_S = 0.02
FRAME = FRAME_BYTES // 2  # samples
TURN_AUDIO_S = 8.0
CONFIRM_FRAMES = 10
PREROLL_FRAMES = 15

# (sentence, the word after which the pause goes)
SENTENCES: list[tuple[str, str]] = [
    ("What time is it?", "time"),
    ("What is twelve times seven?", "twelve"),
    ("I'd like to book an appointment on Tuesday.", "book"),
    ("Can I speak to someone in sales, please?", "to"),
    ("What are your opening hours?", "your"),
    ("My patient number is four five six.", "is"),
    ("I need to change my appointment to Friday.", "change"),
    ("Do you have anything on Monday morning?", "anything"),
]
VOICES = ["flite:slt", "flite:kal", "flite:awb", "flite:rms", "festival:kal", "piper:joe"]
PAUSES_MS = [300, 500, 700, 900]

DETECTORS: dict[str, TurnConfig] = {
    "silence (max 1000 ms)": TurnConfig(detector="silence", min_silence_ms=200, max_silence_ms=1000),
    "silence (max 600 ms)": TurnConfig(detector="silence", min_silence_ms=200, max_silence_ms=600),
    "smart_turn (200/1000 ms)": TurnConfig(detector="smart_turn", min_silence_ms=200, max_silence_ms=1000),
}


@dataclass
class Utterance:
    voice: str
    text: str
    pause_ms: int  # 0: complete
    pcm: np.ndarray
    speech_end_s: float  # last voiced sample of the whole utterance
    pause_at_s: float | None = None  # where the pause starts / ends
    pause_end_s: float | None = None


def _word(w: str) -> str:
    return w.strip(" ,.?!").lower()


def _quietest(pcm: np.ndarray, at: int, span: int = 960) -> int:
    lo, hi = max(FRAME, at - span), min(len(pcm) - FRAME, at + span)
    best, best_e = at, math.inf
    for i in range(lo, hi, 80):
        e = float(np.mean(pcm[i - 160: i + 160].astype(np.float64) ** 2))
        if e < best_e:
            best, best_e = i, e
    return best


def _last_voiced(pcm: np.ndarray) -> float:
    idx = np.flatnonzero(np.abs(pcm.astype(np.int32)) > 500)
    return float(idx[-1]) / SAMPLE_RATE if idx.size else 0.0


class SetBuilder:
    def __init__(self) -> None:
        from faster_whisper import WhisperModel

        from voxd.providers.stt.whisper import bundled_model_dir

        self.model = WhisperModel(bundled_model_dir(), device="cpu", compute_type="int8", cpu_threads=2)
        self.cuts: dict[str, dict[str, float]] = {}
        self.fallbacks = 0  # boundaries placed from the prefix's length, not word timestamps

    def boundary(self, voice: str, text: str, after: str, pcm: np.ndarray) -> int | None:
        segments, _ = self.model.transcribe(pcm.astype(np.float32) / 32768.0, language="en",
                                            word_timestamps=True, beam_size=1)
        words = [w for seg in segments for w in seg.words]
        said = [_word(w) for w in text.split()]
        k = said.index(after)
        if len(words) == len(said):  # heard word for word (maybe misspelt): the same position
            i = k
        else:
            idx = [i for i, w in enumerate(words[:-1]) if _word(w.word) == after]
            if not idx:
                return self.by_prefix(voice, text, after, pcm)
            i = idx[0]
        t = (words[i].end + words[i + 1].start) / 2
        return _quietest(pcm, int(t * SAMPLE_RATE))

    def by_prefix(self, voice: str, text: str, after: str, pcm: np.ndarray) -> int | None:
        """Where the words up to ``after`` end, from the same voice saying only them
        (whisper misheard the word): their voiced length, then the quietest point near."""
        said = text.split()
        k = [_word(w) for w in said].index(after)
        prefix = voices.speech(voice, " ".join(said[: k + 1]).strip(" ,.?!"))
        end = _last_voiced(prefix)
        if not end:
            return None
        self.fallbacks += 1
        return _quietest(pcm, int(end * SAMPLE_RATE), span=1600)

    def build(self, voice_list: list[str], pauses: list[int]) -> list[Utterance]:
        out: list[Utterance] = []
        for voice in voice_list:
            for text, after in SENTENCES:
                pcm = voices.speech(voice, text)
                end = _last_voiced(pcm)
                out.append(Utterance(voice, text, 0, pcm, end))
                cut = self.boundary(voice, text, after, pcm)
                if cut is None:
                    print(f"  {voice} {text!r}: no boundary after {after!r}, no paused versions", file=sys.stderr)
                    continue
                self.cuts.setdefault(voice, {})[text] = round(cut / SAMPLE_RATE, 3)
                for p in pauses:
                    gap = np.zeros(int(p * SAMPLE_RATE / 1000), np.int16)
                    paused = np.concatenate([pcm[:cut], gap, pcm[cut:]])
                    out.append(Utterance(voice, text, p, paused, end + p / 1000, cut / SAMPLE_RATE,
                                         cut / SAMPLE_RATE + p / 1000))
        return out


@dataclass
class Outcome:
    turn_ends: list[float] = field(default_factory=list)  # media times turns were decided
    speech_ends: list[float] = field(default_factory=list)
    model_ms: list[float] = field(default_factory=list)


class Models:
    def __init__(self) -> None:
        from voxd.media.silero import SileroVAD
        from voxd.media.turn import SmartTurn

        self.silero = SileroVAD()
        self.turn = SmartTurn()
        self.turn.warm_up_sync()

    def confirm(self, window: np.ndarray) -> tuple[float, float]:
        t0 = time.perf_counter()
        p = self.silero.probability_sync(window)
        return p, (time.perf_counter() - t0) * 1000

    def end_probability(self, audio: np.ndarray) -> tuple[float, float]:
        t0 = time.perf_counter()
        p = self.turn.end_probability_sync(audio)
        return p, (time.perf_counter() - t0) * 1000


def simulate(u: Utterance, cfg: TurnConfig, models: Models, tail_s: float = 2.0,
             model_ms: float | None = None) -> Outcome:
    """The session's turn-taking over ``u``: model answers arrive after their CPU time
    (or after ``model_ms``, the same on any machine)."""
    vad = FrameVAD(2)
    turns = tt.TurnTaker(cfg, InterruptionConfig())
    pcm = np.concatenate([u.pcm, np.zeros(int(tail_s * SAMPLE_RATE), np.int16)])
    frames = [pcm[i: i + FRAME] for i in range(0, len(pcm) - FRAME + 1, FRAME)]
    recent: list[np.ndarray] = []
    utterance: list[np.ndarray] = []
    pending: list[tuple[float, str, int, float]] = []  # (deliver at, kind, ticket, probability)
    out = Outcome()

    def handle(actions: list[tt.TurnAction], now: float) -> None:
        for a in actions:
            if isinstance(a, tt.ConfirmOnset):
                if not utterance:
                    utterance.extend(recent)
                since = round((now - turns.onset) / FRAME_S) + 2
                window = np.concatenate(recent[-min(CONFIRM_FRAMES, max(since, 5)):])
                p, ms = models.confirm(window)
                pending.append((now + ms / 1000, "confirm", a.ticket, p))
            elif isinstance(a, tt.OnsetRejected):
                utterance.clear()
            elif isinstance(a, tt.AskTurnModel):
                audio = np.concatenate(utterance)[-int(TURN_AUDIO_S * SAMPLE_RATE):]
                p, ms = models.end_probability(audio)
                out.model_ms.append(ms)
                ms = ms if model_ms is None else model_ms
                pending.append((now + ms / 1000, "turn", a.ticket, p))
            elif isinstance(a, tt.TurnEnded):
                out.turn_ends.append(now + FRAME_S)
                out.speech_ends.append(a.speech_end)
                utterance.clear()

    for n, frame in enumerate(frames):
        now = n * FRAME_S
        recent.append(frame)
        del recent[:-PREROLL_FRAMES]
        if turns.capturing:
            utterance.append(frame)
        handle(turns.frame(vad.is_voiced(frame.tobytes()), now), now)
        for item in sorted(p for p in pending if p[0] <= now + FRAME_S):
            pending.remove(item)
            _, kind, ticket, p = item
            acts = turns.confirmed(ticket, p >= 0.5, now) if kind == "confirm" else turns.turn_model(ticket, p)
            handle(acts, now)
    return out


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def score(u: Utterance, o: Outcome) -> tuple[bool, float | None]:
    """(cut off, latency ms). Cut off: a turn was decided before the caller finished."""
    if not o.turn_ends:
        return False, None
    first = o.turn_ends[0]
    cut = first < u.speech_end_s - 0.05
    if cut:
        return True, None
    return False, (o.turn_ends[-1] - u.speech_end_s) * 1000


async def double_answers(utts: list[Utterance], detectors: list[str]) -> dict[str, dict[str, Any]]:
    """Whole calls for "What time ... is it?": how often get_current_time runs twice."""
    from voxd.agents.loader import LoadedAgent, load_agent_file
    from voxd.config import load_config
    from voxd.harness import standalone_calls
    from voxd.suites.audio import AcceptingControl, HarnessLeg

    cfg, base = load_config(None)
    agent0 = load_agent_file(ROOT / "agents" / "receptionist.yaml")
    manager, library = standalone_calls(cfg, base)
    await manager.warm_up([agent0])
    results: dict[str, dict[str, Any]] = {}
    for name in detectors:
        agent = LoadedAgent(agent0.config.model_copy(update={"turn": DETECTORS[name]}), agent0.version,
                            agent0.path, agent0.text)
        runs = [u for u in utts if u.text == "What time is it?" and u.pause_ms]
        twice = cut = 0
        details = []
        for u in runs:
            control = AcceptingControl()
            session = manager.create(agent, control)
            line = HarnessLeg(session, control, virtual=True)
            await session.start()
            await line.settle()
            over_ms = await line.play(u.pcm)
            await line.settle()
            n = sum(tc.name == "get_current_time" for t in session.record.turns for tc in t.tool_calls)
            heard = [t.text for t in session.record.turns if t.speaker == "caller"]
            await session.close("caller_hangup")
            twice += n > 1
            cut += bool(over_ms) or len(heard) > 1
            details.append({"voice": u.voice, "pause_ms": u.pause_ms, "tool_runs": n, "heard": heard,
                            "bot_over_caller_ms": over_ms})
        results[name] = {"calls": len(runs), "tool_ran_twice": twice, "cut_off": cut, "details": details}
    await library.close()
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--voices", default=",".join(VOICES))
    ap.add_argument("--pauses", default=",".join(map(str, PAUSES_MS)))
    ap.add_argument("--detectors", default=",".join(DETECTORS), help="comma-separated names from DETECTORS")
    ap.add_argument("--calls", action="store_true", help="also run 'What time ... is it?' as whole calls")
    ap.add_argument("--model-ms", type=float, help="Smart Turn's answers arrive this many ms after the question "
                    "(default: as long as it took here); 12 is its authors' figure for a modern CPU")
    ap.add_argument("--no-sim", action="store_true", help="skip the per-detector simulation (with --calls)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--write-manifest", help="write the set's texts, voices, pauses and cut points here")
    args = ap.parse_args()
    voice_list = args.voices.split(",")
    pauses = [int(p) for p in args.pauses.split(",")]
    detectors = args.detectors.split(",")
    t0 = time.perf_counter()
    builder = SetBuilder()
    utts = builder.build(voice_list, pauses)
    complete = [u for u in utts if not u.pause_ms]
    paused = [u for u in utts if u.pause_ms]
    print(f"turn-end set: {len(complete)} complete + {len(paused)} paused utterances, {len(voice_list)} voices, "
          f"8 kHz mu-law; {builder.fallbacks} pause points from the prefix's length "
          f"({time.perf_counter() - t0:.0f} s to build)")
    if args.write_manifest:
        Path(args.write_manifest).parent.mkdir(parents=True, exist_ok=True)
        Path(args.write_manifest).write_text(json.dumps(
            {"sentences": [{"text": t, "pause_after": a} for t, a in SENTENCES], "voices": voice_list,
             "pauses_ms": pauses, "cut_s": builder.cuts, "boundaries_from_prefix_length": builder.fallbacks, "line": "8 kHz G.711 mu-law, back at 16 kHz"},
            indent=2) + "\n")
    models = None if args.no_sim else Models()
    report: dict[str, Any] = {"complete": len(complete), "paused": len(paused), "model_ms": args.model_ms,
                              "detectors": {}}
    if args.model_ms is not None:
        print(f"Smart Turn answers {args.model_ms:.0f} ms after each question (--model-ms)")
    header = (f"{'detector':<26} {'cut-offs (paused)':>18} {'by pause 300/500/700/900':>26} "
              f"{'cut-offs (complete)':>20} {'latency p50':>12} {'p90':>6} {'model ms p50':>13}")
    print(header)
    for name in [] if args.no_sim else detectors:
        cfg = DETECTORS[name]
        assert models is not None
        outcomes = [(u, simulate(u, cfg, models, model_ms=args.model_ms)) for u in utts]
        cut_p = [score(u, o)[0] for u, o in outcomes if u.pause_ms]
        cut_c = [score(u, o)[0] for u, o in outcomes if not u.pause_ms]
        lat = [ms for u, o in outcomes for c, ms in [score(u, o)] if not c and ms is not None]
        by_pause: dict[int, float] = {p: sum(score(u, o)[0] for u, o in outcomes if u.pause_ms == p)
                    / max(1, sum(u.pause_ms == p for u, _ in outcomes)) for p in pauses}
        model_ms = [m for _, o in outcomes for m in o.model_ms]
        row: dict[str, Any] = {"false_cutoff_paused": sum(cut_p) / max(1, len(cut_p)), "false_cutoff_complete":
               sum(cut_c) / max(1, len(cut_c)), "by_pause": by_pause, "latency_ms_p50": pct(lat, 0.5),
               "latency_ms_p90": pct(lat, 0.9), "model_ms_p50": statistics.median(model_ms) if model_ms else None,
               "cut_off": [f"{u.voice} {u.text!r} +{u.pause_ms} ms" for u, o in outcomes if score(u, o)[0]]}
        report["detectors"][name] = row
        bp = "/".join(f"{100 * by_pause[p]:.0f}" for p in pauses)
        mm = f"{row['model_ms_p50']:.0f}" if row["model_ms_p50"] is not None else "-"
        print(f"{name:<26} {100 * row['false_cutoff_paused']:>17.1f}% {bp + ' %':>26} "
              f"{100 * row['false_cutoff_complete']:>19.1f}% {row['latency_ms_p50']:>10.0f}ms "
              f"{row['latency_ms_p90']:>5.0f} {mm:>13}")
    if args.calls:
        calls = asyncio.run(double_answers(utts, [d for d in detectors if d.startswith(("smart", "silence (max 6"))]))
        report["calls"] = calls
        for name, r in calls.items():
            print(f"calls, 'What time ... is it?' with a pause, {name}: answered before the caller finished in "
                  f"{r['cut_off']}/{r['calls']}, get_current_time ran twice in {r['tool_ran_twice']}/{r['calls']}")
    print(f"({time.perf_counter() - t0:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
