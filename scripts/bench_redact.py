"""How long personal-data redaction (voxd/core/pii.py) takes on this machine, per string.

Three inputs: a caller turn with nothing to redact, one with a spoken card number and an
email, and a 300-character log line with ids and timestamps; each redacted ``--rounds``
times. Prints microseconds per string and strings per second.

    .venv/bin/python scripts/bench_redact.py --rounds 20000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from voxd.core.pii import CustomPattern, PiiRedactor

INPUTS = {
    "plain turn": "I'd like to book an appointment for Thursday at ten in the morning please",
    "card + email turn": "my card is four one one one one one one one one one one one one one one one "
                         "and my email is jane.doe@example.com",
    "log line": "call call_3f2a9c0d1e4b5a6c7d8e recorded: wav 182.4 s 5836800 bytes; webhook msg_01J8 "
                "delivered to ep_7f3 in 12.5 ms (attempt 1 of 7) at 2026-12-03T12:00:00Z, next sweep in 3600 s; "
                "agent front-desk version 3 on trunk carrier-a, 14 turns, 2 tool calls, mos 4.31",
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20000)
    args = ap.parse_args()
    for label, red in (("built-in detectors", PiiRedactor()),
                       ("+ 2 custom patterns", PiiRedactor(patterns=(
                           CustomPattern.compile("account", r"\bACC-[0-9]{8}\b"),
                           CustomPattern.compile("mrn", r"MRN ?[0-9]{6,10}"))))):
        for name, text in INPUTS.items():
            t0 = time.perf_counter()
            for _ in range(args.rounds):
                red.text(text)
            dt = time.perf_counter() - t0
            print(f"{label:20s} {name:18s} {dt / args.rounds * 1e6:8.1f} us/string {args.rounds / dt:10.0f} strings/s")


if __name__ == "__main__":
    main()
