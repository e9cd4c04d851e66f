"""Codec cost: encode and decode microseconds per 20 ms frame, for each SIP codec.

Each codec object (voxd.media.codecs: G.711 through its tables and resampler, G.722
and Opus through PyAV) encodes FRAMES pipeline frames of speech-like audio (16 kHz;
a sum of tones under a syllable-rate envelope, seeded noise) and decodes the
payloads back, one frame at a time as a call does (`decode_packet`). Printed per
codec: µs per frame for encode and decode (median of --repeat runs), the payload
size, and the share of one core that many concurrent calls would take both ways
(one frame each way every 20 ms). One process, one thread: the numbers are per core.

    python scripts/bench_codecs.py                 # 1500 frames (30 s), 5 runs
    python scripts/bench_codecs.py --frames 500 --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from voxd.media import codecs
from voxd.media.audio import FRAME_SAMPLES, SAMPLE_RATE
from voxd.media.frame import AudioFrame

CODECS = ("PCMU", "PCMA", "G722", "opus")


def speechlike(frames: int, seed: int = 7) -> list[AudioFrame]:
    rng = np.random.default_rng(seed)
    t = np.arange(frames * FRAME_SAMPLES) / SAMPLE_RATE
    voice = sum(np.sin(2 * np.pi * f * t) / (i + 1) for i, f in enumerate((180, 360, 720, 1400, 2900, 5200)))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)  # ~4 syllables a second
    pcm = (6000 * envelope * voice / 2.5 + rng.normal(0, 200, t.size)).clip(-32768, 32767).astype("<i2")
    return [AudioFrame(pcm[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES].tobytes()) for i in range(frames)]


def run(name: str, frames: list[AudioFrame]) -> tuple[float, float, float]:
    """(encode µs, decode µs, mean payload bytes) per frame, for one fresh encoder/decoder."""
    codec = codecs.get(name)
    enc, dec = codec.encoder(), codec.decoder()
    t0 = time.perf_counter()
    payloads = [enc.encode(f) for f in frames]
    t1 = time.perf_counter()
    for p in payloads:
        dec.decode_packet(p)
    t2 = time.perf_counter()
    n = len(frames)
    return (t1 - t0) / n * 1e6, (t2 - t1) / n * 1e6, sum(map(len, payloads)) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=1500, help="20 ms frames per run (default 1500: 30 s)")
    ap.add_argument("--repeat", type=int, default=5, help="runs per codec; the median is printed")
    args = ap.parse_args()
    frames = speechlike(max(10, min(args.frames, 30_000)))
    print(f"{len(frames)} frames of 20 ms, median of {args.repeat} runs, one thread")
    print(f"{'codec':<6} {'encode µs':>10} {'decode µs':>10} {'bytes':>6} {'calls/core':>11}")
    for name in CODECS:
        runs = [run(name, frames) for _ in range(max(1, args.repeat))]
        enc = statistics.median(r[0] for r in runs)
        dec = statistics.median(r[1] for r in runs)
        size = runs[0][2]
        per_call = (enc + dec) / 20_000  # share of a core one call takes (20 ms = 20,000 µs)
        print(f"{name:<6} {enc:>10.1f} {dec:>10.1f} {size:>6.0f} {1 / per_call:>11.0f}")


if __name__ == "__main__":
    main()
