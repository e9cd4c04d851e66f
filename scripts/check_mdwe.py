#!/usr/bin/env python3
"""Which offline engines run under systemd's MemoryDenyWriteExecute=?

  python scripts/check_mdwe.py

MemoryDenyWriteExecute= forbids memory that is both writable and executable, and
making a mapping executable later. Linux 6.3+ offers the same rule per process as
prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN), which systemd also uses. Each engine is
loaded and run once in a child process with that rule set, and once without it, and
the script prints which ones work. An engine that generates machine code at run time
(a JIT) fails under the rule. Exit code 0 when every engine works under it, 1 when
one does not, 2 when this kernel has no PR_SET_MDWE.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1
ENGINES = ("webrtcvad", "silero", "smart_turn", "piper", "espeak", "whisper")
SPEECH = ROOT / "tests" / "data" / "speech" / "flite-slt" / "book_tuesday.16k.wav"


def set_mdwe() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) == 0)


async def run_engine(name: str) -> str:
    """Load and run one engine; returns a one-line result."""
    from voxd.media.audio import read_wav_as

    speech = read_wav_as(SPEECH, 16000)
    if name == "webrtcvad":
        from voxd.media.vad import FrameVAD

        vad = FrameVAD()
        voiced = sum(vad.is_voiced(speech[i:i + 320].tobytes()) for i in range(0, len(speech) - 320, 320))
        return f"{voiced} voiced frames"
    if name == "silero":
        from voxd.media.silero import SileroVAD

        return f"p(speech)={SileroVAD().probability_sync(speech[16000:20096]):.2f}"
    if name == "smart_turn":
        from voxd.media.turn import SmartTurn

        return f"p(end)={SmartTurn().end_probability_sync(speech):.2f}"
    if name in ("piper", "espeak"):
        from voxd.providers.tts.espeak import EspeakTTS
        from voxd.providers.tts.piper import PiperTTS

        tts = PiperTTS() if name == "piper" else EspeakTTS()
        audio = b"".join([chunk.pcm async for chunk in tts.synthesize("It's ten past four.")])
        return f"{len(audio) / 32000:.2f} s of audio"
    if name == "whisper":
        from faster_whisper import WhisperModel

        from voxd.providers.stt.whisper import resolve_model

        model = WhisperModel(resolve_model("tiny.en"), device="cpu", compute_type="int8", cpu_threads=1,
                             local_files_only=True)
        segments, _ = model.transcribe(speech.astype(np.float32) / 32768, beam_size=1, language="en")
        return repr(" ".join(s.text.strip() for s in segments))
    raise SystemExit(f"unknown engine {name}")


def child(name: str, mdwe: bool) -> int:
    if mdwe and not set_mdwe():
        print("PR_SET_MDWE not available")
        return 2
    try:
        print(asyncio.run(run_engine(name)))
    except Exception as e:  # the point is to report whatever breaks
        print(f"FAILED: {type(e).__name__}: {e}")
        return 1
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", choices=ENGINES, help=argparse.SUPPRESS)
    ap.add_argument("--mdwe", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.engine:
        return child(args.engine, args.mdwe)
    worst = 0
    print(f"{'engine':<11} {'without the rule':<40} with MemoryDenyWriteExecute")
    for name in ENGINES:
        results = []
        for mdwe in (False, True):
            cmd = [sys.executable, __file__, "--engine", name] + (["--mdwe"] if mdwe else [])
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
            out = (proc.stdout.strip().splitlines() or [proc.stderr.strip()[-200:]])[-1]
            results.append((proc.returncode, out))
        if results[1][0] == 2:
            print("this kernel has no PR_SET_MDWE (Linux 6.3 or later)")
            return 2
        print(f"{name:<11} {results[0][1][:40]:<40} {results[1][1]}")
        if results[0][0] == 0 and results[1][0] != 0:
            worst = 1
    return worst


if __name__ == "__main__":
    sys.exit(main())
