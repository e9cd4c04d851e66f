"""DTMF carried in SIP INFO bodies (application/dtmf-relay, application/dtmf)."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import is_digits

_SIGNALS = "0123456789*#ABCD"
_NAMED = {"10": "*", "11": "#", "12": "A", "13": "B", "14": "C", "15": "D"}


@dataclass
class InfoDigit:
    digit: str
    duration_ms: int | None = None


def parse_info_dtmf(content_type: str, body: bytes) -> InfoDigit | None:
    """The digit in an INFO body, or ``None`` if the body carries no DTMF."""
    ctype = content_type.split(";")[0].strip().lower()
    text = body.decode("utf-8", "replace").strip()
    if ctype == "application/dtmf":
        value = _NAMED.get(text, text.upper())
        return InfoDigit(value) if len(value) == 1 and value in _SIGNALS else None
    if ctype != "application/dtmf-relay":
        return None
    signal: str | None = None
    duration: int | None = None
    for line in text.replace("\r\n", "\n").split("\n"):
        key, sep, value = line.partition("=")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key == "signal":
            signal = _NAMED.get(value, value.upper())
        elif key == "duration" and is_digits(value):
            duration = int(value)
    if signal is None or len(signal) != 1 or signal not in _SIGNALS:
        return None
    return InfoDigit(signal, duration)
