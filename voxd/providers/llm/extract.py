"""Pulling values out of a caller's words for the dialog engine: numbers, digits,
times, weekdays, arithmetic expressions. Recognisers write numbers either way
("twelve" or "12"), so both are handled."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

_UNITS = {
    "zero": 0, "oh": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_OPS = [
    (r"\bmultiplied by\b|\btimes\b|(?<=\d)\s*x\s*(?=\d)|\bx\b", " * "),
    (r"\bdivided by\b|\bover\b", " / "),
    (r"\bplus\b|\band\b|\badd\b", " + "),
    (r"\bminus\b|\bless\b|\btake away\b", " - "),
    (r"\bto the power of\b|\bpower\b", " ** "),
    (r"\bsquared\b", " ** 2 "),
    (r"\bcubed\b", " ** 3 "),
    (r"\bsquare root of\b", " sqrt "),
    (r"\bpercent of\b", " / 100 * "),
]
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


def normalise(text: str) -> str:
    t = text.lower().replace("’", "'")
    t = re.sub(r"(?<=\d),(?=\d{3})", "", t)
    t = re.sub(r"[^a-z0-9:'.+\-*/^×÷ ]+", " ", t)
    t = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", t)
    return re.sub(r"\s+", " ", t).strip()


def words_to_numbers(text: str) -> str:
    """'twelve times seventy five' -> '12 times 75'; digits are kept."""
    out: list[str] = []
    cur: int | None = None
    total = 0

    def flush() -> None:
        nonlocal cur, total
        if cur is not None or total:
            out.append(str(total + (cur or 0)))
        cur, total = None, 0

    for tok in text.split():
        w = tok.replace(",", "")
        if w in _UNITS:
            if cur is not None and not (cur >= 20 and cur % 10 == 0) and not (cur >= 100 and cur % 100 == 0):
                flush()
            cur = (cur or 0) + _UNITS[w]
        elif w in _TENS:
            if cur is not None and cur % 100 != 0:
                flush()
            cur = (cur or 0) + _TENS[w]
        elif w in _SCALES and (cur is not None or total):
            scale = _SCALES[w]
            if scale == 100:
                cur = (cur or 1) * 100
            else:
                total += (cur or 1) * scale
                cur = None
        elif w == "and" and cur is not None and cur >= 100:
            continue
        else:
            flush()
            out.append(tok)
    flush()
    return " ".join(out)


def extract_number(text: str) -> float | int | None:
    m = re.search(r"-?\d+(?:\.\d+)?", words_to_numbers(normalise(text)))
    if not m:
        return None
    v = float(m.group())
    return int(v) if v.is_integer() else v


def extract_digits(text: str) -> str | None:
    t = words_to_numbers(normalise(text))
    digits = "".join(re.findall(r"\d", t))
    return digits or None


def extract_expression(text: str) -> str | None:
    t = words_to_numbers(normalise(text).replace("×", "*").replace("÷", "/").replace("^", "**"))
    for pat, rep in _OPS:
        t = re.sub(pat, rep, t)
    tokens = re.findall(r"\d+(?:\.\d+)?|\*\*|[-+*/()]|sqrt", t)
    # keep the longest run that starts with a number/sqrt and alternates sensibly
    expr = " ".join(tokens).strip()
    expr = re.sub(r"^[*/+]\s*|\s*[-+*/]+$", "", expr)
    if not re.search(r"\d", expr) or not re.search(r"[-+*/]|sqrt", expr):
        return None
    expr = re.sub(r"sqrt\s+(\d+(?:\.\d+)?)", r"sqrt(\1)", expr)
    return expr


def extract_time(text: str) -> str | None:
    t = words_to_numbers(normalise(text)).replace("o'clock", "").replace("o clock", "")
    t = re.sub(r"\b(\d{1,2}) (\d{2})\b", r"\1:\2", t)
    m = re.search(r"\b(\d{1,2})(?::(\d{2}))?\s*(a ?m|p ?m|in the morning|in the afternoon|in the evening)?\b", t)
    if not m or not (m.group(3) or m.group(2)):
        m2 = re.search(r"\bat (\d{1,2})\b", t)
        if not m2:
            return None
        hour, minute, mer = int(m2.group(1)), 0, None
    else:
        hour, minute, mer = int(m.group(1)), int(m.group(2) or 0), m.group(3)
    if mer and (mer.startswith("p") or "afternoon" in mer or "evening" in mer) and hour < 12:
        hour += 12
    if mer and (mer.startswith("a") or "morning" in mer) and hour == 12:
        hour = 0
    if not mer and 1 <= hour <= 7:
        hour += 12  # "at three" means the afternoon for an appointment
    if hour > 23 or minute > 59:
        return None
    return f"{hour:02d}:{minute:02d}"


def extract_weekday(text: str) -> str | None:
    t = normalise(text)
    for d in WEEKDAYS:
        if re.search(rf"\b{d}s?\b", t):
            return d.capitalize()
    for w in ("today", "tomorrow"):
        if re.search(rf"\b{w}\b", t):
            return w
    return None


def extract_name(text: str) -> str | None:
    m = re.search(r"\b(?:my name is|this is|i am|i'm|it's)\s+([a-z][a-z' -]{1,40})", normalise(text))
    if m:
        return " ".join(w.capitalize() for w in m.group(1).split()[:3])
    words = normalise(text).split()
    return " ".join(w.capitalize() for w in words[:3]) if 0 < len(words) <= 3 else None


def extract_text(text: str) -> str | None:
    return text.strip() or None


EXTRACTORS: dict[str, Callable[[str], Any]] = {
    "number": extract_number,
    "digits": extract_digits,
    "time": extract_time,
    "date": extract_weekday,
    "weekday": extract_weekday,
    "expression": extract_expression,
    "name": extract_name,
    "text": extract_text,
}
