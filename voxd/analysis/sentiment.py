"""Sentiment of the caller's turns with VADER (``vaderSentiment``, lexicon in the wheel):
a compound score in [-1, 1] per caller turn and overall (the mean over turns with words)."""

from __future__ import annotations

import functools
from typing import Any

VADER = "vader"


class Unavailable(RuntimeError):
    """The offline analyser is not installed."""


@functools.cache
def _analyser() -> Any:
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError as e:  # pragma: no cover - a dependency of voxd
        raise Unavailable("vaderSentiment is not installed (pip install vaderSentiment)") from e
    return SentimentIntensityAnalyzer()


def label(score: float) -> str:
    """VADER's own thresholds."""
    return "positive" if score >= 0.05 else "negative" if score <= -0.05 else "neutral"


def score(text: str) -> float:
    return float(_analyser().polarity_scores(text[:4000])["compound"])


def caller_sentiment(turns: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"method", "overall", "label", "turns": [{"index", "score", "label"}]}``."""
    try:
        per = [{"index": t["index"], "score": round(score(t["text"]), 4)}
               for t in turns if t.get("speaker") == "caller" and (t.get("text") or "").strip()]
    except Unavailable as e:
        return {"method": None, "overall": None, "label": None, "turns": [], "error": str(e)}
    for p in per:
        p["label"] = label(p["score"])
    overall = round(sum(p["score"] for p in per) / len(per), 4) if per else None
    return {"method": VADER, "overall": overall, "label": None if overall is None else label(overall), "turns": per}
