"""The recorder alone: N calls' timelines fed as fast as they go (no sessions, no models),
RSS per call at several call lengths (flat: nothing grows with the call) and recorder CPU
per call-second, for WAV and Opus.

    python scripts/bench_recording.py --calls 50 --seconds 180
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def run(fmt: str, calls: int, seconds: int) -> None:
    from voxd.media.recording import Timeline, open_writer

    folder = Path(tempfile.mkdtemp(prefix="voxd-bench-rec-"))
    voice = (np.sin(np.arange(320) * 0.2) * 8000).astype("<i2").tobytes()
    r0 = rss_mb()
    lines = [Timeline(open_writer(folder / f"{i}.{fmt}", fmt, "stereo")) for i in range(calls)]  # type: ignore[arg-type]
    opened = rss_mb()
    marks = {s for s in (10, 30, 60, 120, 180, 300, 600) if s <= seconds}
    t0 = time.process_time()
    for sec in range(1, seconds + 1):
        for f in range(50):
            t = (sec - 1) + f * 0.02
            for tl in lines:
                tl.place(0, t, voice)
                tl.place(1, t, voice)
        if sec in marks:
            print(f"{fmt:<5} {sec:>4} s of call: RSS {(rss_mb() - r0) / calls:6.3f} MB/call "
                  f"({(opened - r0) / calls:.3f} of it when opened)", flush=True)
    cpu = time.process_time() - t0
    for tl in lines:
        tl.close()
    size = sum(p.stat().st_size for p in folder.iterdir())
    shutil.rmtree(folder, ignore_errors=True)
    print(f"{fmt:<5} recorder CPU {cpu * 1000 / (calls * seconds):.3f} ms per call-second "
          f"(all threads); {size / (calls * seconds) / 1000:.1f} kB per call-second on disk")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=50)
    p.add_argument("--seconds", type=int, default=180)
    p.add_argument("--format", choices=["wav", "opus", "both"], default="both")
    args = p.parse_args()
    for fmt in (["wav", "opus"] if args.format == "both" else [args.format]):
        run(fmt, args.calls, args.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
