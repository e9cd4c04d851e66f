"""Cutting streamed LLM text into clauses TTS can start on early."""

from __future__ import annotations

import re

_BOUNDARY = re.compile(r"([.!?;:]+[\"')\]]*\s+|\n+)")
_SOFT = re.compile(r"(,\s+)")


class ClauseSplitter:
    """Feed text deltas; get back whole clauses as soon as they end.

    A sentence end always cuts. A comma cuts only once the clause is long enough
    to be worth synthesising on its own (`soft_min` chars), so the first audio comes
    quickly without chopping speech into stutters.
    """

    def __init__(self, soft_min: int = 40, first_soft_min: int = 20) -> None:
        self._buf = ""
        self._soft_min = soft_min
        self._first_soft_min = first_soft_min
        self._emitted = 0

    def push(self, text: str) -> list[str]:
        self._buf += text
        out: list[str] = []
        while True:
            m = _BOUNDARY.search(self._buf)
            limit = self._first_soft_min if self._emitted == 0 else self._soft_min
            soft = None
            for sm in _SOFT.finditer(self._buf):
                if sm.start() >= limit:
                    soft = sm
                    break
            cut = m if m and (soft is None or m.start() <= soft.start()) else soft
            if cut is None:
                break
            clause = self._buf[: cut.end()].strip()
            self._buf = self._buf[cut.end() :]
            if clause:
                out.append(clause)
                self._emitted += 1
        return out

    def flush(self) -> list[str]:
        rest, self._buf = self._buf.strip(), ""
        return [rest] if rest else []


def strip_for_speech(text: str) -> str:
    """Remove markdown a language model may emit that TTS would read aloud."""
    text = re.sub(r"[*_`#]+", "", text)
    text = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", text)
    return text.strip()
