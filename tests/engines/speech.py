"""Caller speech fixtures (tests/data/speech) and word-error-rate scoring.

Also imported by scripts/bench_engines.py, so it depends on nothing but voxd.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from voxd.media.audio import SAMPLE_RATE, read_wav_as, resample

SPEECH_DIR = Path(__file__).resolve().parent.parent / "data" / "speech"

# What each fixture must be heard to contain (after `normalize`).
KEY_WORDS: dict[str, tuple[str, ...]] = {
    "what_time": ("time",),
    "twelve_times_seven": ("twelve", "seven"),
    "book_tuesday": ("appointment", "tuesday"),
    "opening_hours": ("hours",),
    "speak_to_sales": ("speak", "sales"),
    "goodbye": ("goodbye",),
    "yes": ("yes",),
}

_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
)
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


@cache
def manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SPEECH_DIR / "manifest.json").read_text())
    return data


def voices() -> list[str]:
    return list(manifest()["voices"])


def text_of(slug: str) -> str:
    return str(manifest()["utterances"][slug])


def load(voice: str, slug: str, rate: int = 8000) -> np.ndarray:
    """A fixture as the pipeline hears it: 16 kHz int16 (8 kHz files are telephone band)."""
    khz = {8000: "8k", 16000: "16k"}[rate]
    return read_wav_as(SPEECH_DIR / voice / f"{slug}.{khz}.wav", SAMPLE_RATE)


def telephone(pcm: np.ndarray, rate: int) -> np.ndarray:
    """Any-rate int16 audio through an 8 kHz mu-law line, back at 16 kHz."""
    narrow = resample(pcm, rate, 8000).astype(np.float32) / 32768.0
    mu = np.sign(narrow) * np.log1p(255 * np.abs(narrow)) / np.log1p(255)
    mu = np.round(mu * 127) / 127  # 8-bit companded
    lin = np.sign(mu) * ((1 + 255) ** np.abs(mu) - 1) / 255
    return resample((lin * 32767).astype(np.int16), 8000, SAMPLE_RATE)


def _number_words(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    return str(n)


def normalize(text: str) -> list[str]:
    """Lower-case words without punctuation; digits spelled out ("3pm" -> three pm)."""
    t = text.lower().replace("p.m.", "pm").replace("a.m.", "am")
    t = re.sub(r"(\d+)\s*(am|pm)\b", r"\1 \2", t)
    t = re.sub(r"\d+", lambda m: " " + _number_words(int(m.group())) + " ", t)
    t = re.sub(r"[^a-z' ]+", " ", t)
    return [w.strip("'") for w in t.split() if w.strip("'")]


def word_errors(ref: str, hyp: str) -> tuple[int, int]:
    """(edit distance in words, reference length)."""
    r, h = normalize(ref), normalize(hyp)
    prev = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        cur = [i] + [0] * len(h)
        for j, hw in enumerate(h, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (rw != hw))
        prev = cur
    return prev[-1], len(r)


def wer(pairs: list[tuple[str, str]]) -> float:
    """Word error rate over (reference, hypothesis) pairs."""
    errors = total = 0
    for ref, hyp in pairs:
        e, n = word_errors(ref, hyp)
        errors += e
        total += n
    return errors / max(1, total)


def has_key_words(slug: str, hyp: str) -> bool:
    words = set(normalize(hyp))
    return all(k in words for k in KEY_WORDS[slug])
