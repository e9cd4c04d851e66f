"""A call's quality from its stored record: E-model R and MOS from RTP/RTCP counters,
talk-time ratios, overlap (interruptions), silence and per-turn latency percentiles.

Pure functions over ``CallRepo.get`` dicts; nothing here does I/O.
"""

from __future__ import annotations

import math
from typing import Any

from voxd.analysis import emodel


def percentiles(values: list[float], qs: tuple[int, ...] = (50, 90, 99)) -> dict[str, float | None]:
    """Nearest-rank percentiles (None for no values)."""
    s = sorted(values)
    out: dict[str, float | None] = {}
    for q in qs:
        out[f"p{q}"] = None if not s else round(s[max(0, math.ceil(q / 100 * len(s)) - 1)], 1)
    return out


def _num(d: Any, key: str) -> float | None:
    v = d.get(key) if isinstance(d, dict) else None
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def network(call: dict[str, Any]) -> dict[str, Any]:
    """R and MOS from what the RTP leg left in ``metadata["rtp"]`` (None without RTP)."""
    meta = call.get("metadata") or {}
    rtp = meta.get("rtp")
    codec = meta.get("codec")
    if not isinstance(rtp, dict):
        return {"r_factor": None, "mos": None, "method": None, "reason": "no RTP counters on this call's transport"}
    received = _num(rtp, "received") or 0.0
    lost = _num(rtp, "lost") or 0.0
    loss_in = 100.0 * lost / (received + lost) if received + lost > 0 else 0.0
    peer = (rtp.get("rtcp") or {}).get("peer") or {}
    loss_out = 100.0 * (_num(peer, "fraction_lost") or 0.0) if (_num(peer, "reports") or 0) > 0 else 0.0
    jitter = max(_num(rtp, "jitter_ms") or 0.0, _num(peer, "jitter_ms") or 0.0)
    rtt = _num(peer, "rtt_ms")
    loss = max(loss_in, loss_out)
    params = emodel.call_params(codec=codec if isinstance(codec, str) else None, loss_pct=loss,
                                jitter_ms=jitter, rtt_ms=rtt)
    r = emodel.rating(params)
    c = emodel.codec_of(codec if isinstance(codec, str) else None)
    return {
        "r_factor": round(r, 2), "mos": round(emodel.mos(r), 2), "method": "ITU-T G.107 E-model",
        "codec": c.name, "codec_values": {"ie": c.ie, "bpl": c.bpl, "source": c.source},
        "loss_pct": round(loss, 3), "loss_in_pct": round(loss_in, 3), "loss_out_pct": round(loss_out, 3),
        "jitter_ms": round(jitter, 2), "rtt_ms": rtt, "one_way_delay_ms": round(params.ta, 1),
    }


def _span(t: dict[str, Any], end: float) -> tuple[float, float] | None:
    start = _num(t, "started_at")
    if start is None:
        return None
    stop = _num(t, "ended_at") or start
    return start, max(start, min(stop, end))


def _union(spans: list[tuple[float, float]]) -> float:
    total, cur_s, cur_e = 0.0, None, None
    for s, e in sorted(spans):
        if cur_e is None or s > cur_e:
            if cur_e is not None and cur_s is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None and cur_s is not None:
        total += cur_e - cur_s
    return total


def _overlap(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(e1, e2) - max(s1, s2)) for s1, e1 in a for s2, e2 in b)


def conversation(call: dict[str, Any]) -> dict[str, Any]:
    """Talk time per side, their ratios to the answered duration, overlap, silence,
    interruptions, and reply latency (caller's end of speech -> first bot audio)."""
    start = _num(call, "answered_at") or _num(call, "started_at") or 0.0
    end = _num(call, "ended_at") or start
    duration = max(0.0, end - start)
    spans: dict[str, list[tuple[float, float]]] = {"caller": [], "bot": []}
    latencies: list[float] = []
    for t in call.get("turns") or []:
        span = _span(t, end)
        if span is not None and t.get("speaker") in spans:
            spans[t["speaker"]].append(span)
        lat = t.get("latency") or {}
        first_audio = _num(lat, "first_audio_ms")
        if t.get("speaker") == "bot" and first_audio is not None:
            latencies.append((_num(lat, "endpoint_ms") or 0.0) + first_audio)
    caller, bot = _union(spans["caller"]), _union(spans["bot"])
    talking = _union(spans["caller"] + spans["bot"])
    interrupted = sum(1 for t in call.get("turns") or [] if t.get("speaker") == "bot" and t.get("interrupted"))

    def ratio(x: float) -> float | None:
        return round(x / duration, 3) if duration > 0 else None

    return {
        "duration_s": round(duration, 3),
        "caller_talk_s": round(caller, 3), "bot_talk_s": round(bot, 3),
        "caller_talk_ratio": ratio(caller), "bot_talk_ratio": ratio(bot),
        "overlap_s": round(_overlap(spans["caller"], spans["bot"]), 3),
        "silence_s": round(max(0.0, duration - talking), 3), "silence_ratio": ratio(max(0.0, duration - talking)),
        "interruptions": max(interrupted, int(call.get("interruptions") or 0)),
        "reply_latency_ms": percentiles(latencies) | {"count": len(latencies)},
    }


def quality(call: dict[str, Any]) -> dict[str, Any]:
    return network(call) | conversation(call)
