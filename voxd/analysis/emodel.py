"""The ITU-T G.107 E-model (06/2015, narrowband): transmission rating R and MOS.

Pure arithmetic, no I/O: ``rating(Params(...))`` follows G.107 §7 formula by formula
(Ro, Is, Id, Ie-eff, A), so the defaults of Table 3 give R = 93.2. ``call_quality``
turns what a call measured (RTP loss, jitter, RTCP round-trip time, the codec) into the
parameters that change (Ta, T, Tr, Ie, Bpl, Ppl) and keeps the rest at their defaults.

Codec values (``CODECS``): G.711 from G.113 Appendix I (Ie 0; Bpl 25.1 with the PLC of
G.711 Appendix I). G.722 at 64 kbit/s has Ie,wb 14 on the wideband scale; on this
narrowband scale (Ie = Ie,wb - 15, G.107.1) that is -1, taken as 0 so no codec scores
above G.711. Opus has no G.113 value: Ie 0 and Bpl 20 (its in-band concealment) are
voxd's planning assumption, named as such in the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Codec:
    name: str
    ie: float  # equipment impairment factor
    bpl: float  # packet-loss robustness factor
    delay_ms: float  # frame + look-ahead
    source: str


CODECS: dict[str, Codec] = {
    "pcmu": Codec("PCMU", 0.0, 25.1, 20.0, "G.113 App. I (G.711 with PLC)"),
    "pcma": Codec("PCMA", 0.0, 25.1, 20.0, "G.113 App. I (G.711 with PLC)"),
    "g722": Codec("G722", 0.0, 25.1, 21.5, "G.113 Ie,wb 14 mapped to the NB scale (G.107.1); Bpl as G.711"),
    "opus": Codec("opus", 0.0, 20.0, 26.5, "voxd planning assumption (no G.113 value)"),
}
DEFAULT_CODEC = "pcmu"


@dataclass(frozen=True)
class Params:
    """G.107 Table 3 defaults."""

    slr: float = 8.0
    rlr: float = 2.0
    stmr: float = 15.0
    lstr: float = 18.0
    ds: float = 3.0
    dr: float = 3.0
    telr: float = 65.0
    wepl: float = 110.0
    t: float = 0.0  # mean one-way delay of the echo path, ms
    tr: float = 0.0  # round-trip delay in a 4-wire loop, ms
    ta: float = 0.0  # absolute delay, ms
    qdu: float = 1.0
    ie: float = 0.0
    bpl: float = 4.3  # G.711 without concealment; a codec sets its own
    ppl: float = 0.0  # random packet loss, percent
    burst_r: float = 1.0
    nc: float = -70.0
    nfor: float = -64.0
    ps: float = 35.0
    pr: float = 35.0
    a: float = 0.0


def _lg(x: float) -> float:
    return math.log10(x)


def noise(p: Params) -> tuple[float, float]:
    """(Ro, No): basic signal-to-noise ratio and the power addition of the noise sources."""
    olr = p.slr + p.rlr
    nos = p.ps - p.slr - p.ds - 100 + 0.004 * (p.ps - olr - p.ds - 14) ** 2
    pre = p.pr + 10 * _lg(1 + 10 ** ((10 - p.lstr) / 10))
    nor = p.rlr - 121 + pre + 0.008 * (pre - 35) ** 2
    nfo = p.nfor + p.rlr
    no = 10 * _lg(10 ** (p.nc / 10) + 10 ** (nos / 10) + 10 ** (nor / 10) + 10 ** (nfo / 10))
    return 15 - 1.5 * (p.slr + no), no


def simultaneous(p: Params, ro: float, no: float) -> float:
    """Is = Iolr + Ist + Iq."""
    olr = p.slr + p.rlr
    xolr = olr + 0.2 * (64 + no - p.rlr)
    iolr = 20 * ((1 + (xolr / 8) ** 8) ** (1 / 8) - xolr / 8)
    stmro = -10 * _lg(10 ** (-p.stmr / 10) + math.exp(-p.t / 4) * 10 ** (-p.telr / 10))
    ist = (12 * (1 + ((stmro - 13) / 6) ** 8) ** (1 / 8) - 28 * (1 + ((stmro + 1) / 19.4) ** 35) ** (1 / 35)
           - 13 * (1 + ((stmro - 3) / 33) ** 13) ** (1 / 13) + 29)
    q = 37 - 15 * _lg(p.qdu)
    g = 1.07 + 0.258 * q + 0.0602 * q * q
    y = (ro - 100) / 15 + 46 / 8.4 - g / 9
    z = 46 / 30 - g / 40
    iq = 15 * _lg(1 + 10 ** y + 10 ** z)
    return float(iolr + ist + iq)


def delay(p: Params, ro: float, no: float, ist_stmr_low: float = 0.0) -> float:
    """Id = Idte + Idle + Idd (talker echo, listener echo, absolute delay)."""
    roe = -1.5 * (no - p.rlr)
    terv = p.telr - 40 * _lg((1 + p.t / 10) / (1 + p.t / 150)) + 6 * math.exp(-0.3 * p.t ** 2)
    if p.stmr < 9:
        terv += ist_stmr_low / 2
    re = 80 + 2.5 * (terv - 14)
    idte = ((roe - re) / 2 + math.sqrt((roe - re) ** 2 / 4 + 100) - 1) * (1 - math.exp(-p.t))
    rle = 10.5 * (p.wepl + 7) * (p.tr + 1) ** -0.25
    idle = (ro - rle) / 2 + math.sqrt((ro - rle) ** 2 / 4 + 169)
    idd = 0.0
    if p.ta > 100:
        x = _lg(p.ta / 100) / _lg(2)
        idd = 25 * ((1 + x ** 6) ** (1 / 6) - 3 * (1 + (x / 3) ** 6) ** (1 / 6) + 2)
    return float(idte + idle + idd)


def ie_eff(p: Params) -> float:
    return p.ie + (95 - p.ie) * p.ppl / (p.ppl / p.burst_r + p.bpl)


def rating(p: Params) -> float:
    """R = Ro - Is - Id - Ie,eff + A."""
    ro, no = noise(p)
    return ro - simultaneous(p, ro, no) - delay(p, ro, no) - ie_eff(p) + p.a


def mos(r: float) -> float:
    """G.107 Annex B: the estimated conversational MOS for a rating R."""
    if r <= 0:
        return 1.0
    if r >= 100:
        return 4.5
    return 1 + 0.035 * r + r * (r - 60) * (100 - r) * 7e-6


def codec_of(name: str | None) -> Codec:
    return CODECS.get((name or DEFAULT_CODEC).lower(), CODECS[DEFAULT_CODEC])


def call_params(*, codec: str | None, loss_pct: float, jitter_ms: float, rtt_ms: float | None,
                jitter_buffer_ms: float = 40.0, burst_r: float = 1.0) -> Params:
    """One call's E-model inputs: one-way delay = half the RTCP round trip (0 when the
    peer never echoed a report) + the jitter buffer (at least twice the jitter) + the
    codec's frame delay; loss as random loss (BurstR 1 unless measured)."""
    c = codec_of(codec)
    one_way = (rtt_ms or 0.0) / 2 + max(jitter_buffer_ms, 2 * jitter_ms) + c.delay_ms
    return replace(Params(), t=one_way, ta=one_way, tr=2 * one_way, ie=c.ie, bpl=c.bpl,
                   ppl=max(0.0, min(100.0, loss_pct)), burst_r=max(1.0, burst_r))
