"""The E-model against ITU-T G.107's own numbers."""

from __future__ import annotations

from dataclasses import replace

import pytest

from voxd.analysis import emodel
from voxd.analysis.emodel import Params, call_params, ie_eff, mos, rating


def test_default_parameters_give_r_93_2() -> None:
    # G.107 §7.7 / Table 3: "the default values ... result in a very high quality with R = 93.2"
    assert rating(Params()) == pytest.approx(93.2, abs=0.05)
    assert mos(rating(Params())) == pytest.approx(4.41, abs=0.01)


@pytest.mark.parametrize(("r", "expected"), [(0, 1.0), (50, 2.575), (60, 3.1), (70, 3.597), (80, 4.024),
                                             (90, 4.339), (100, 4.5), (120, 4.5), (-3, 1.0)])
def test_mos_of_r_annex_b(r: float, expected: float) -> None:
    # Annex B: MOS = 1 + 0.035 R + R (R - 60)(100 - R) 7e-6, clamped to [1, 4.5]
    assert mos(r) == pytest.approx(expected, abs=0.001)


def test_absolute_delay_below_100_ms_costs_nothing_above_it_does() -> None:
    # Idd is 0 for Ta <= mT (100 ms), and grows with Ta beyond (G.107 eq. 7-28)
    base = rating(Params())
    assert rating(replace(Params(), ta=100)) == pytest.approx(base)
    r150, r300, r500 = (rating(replace(Params(), ta=t)) for t in (150, 300, 500))
    assert base > r150 > r300 > r500


def test_packet_loss_impairment_eq_7_30() -> None:
    # Ie-eff = Ie + (95 - Ie) Ppl / (Ppl / BurstR + Bpl): G.711 with PLC (Bpl 25.1), 2 % random loss
    p = replace(Params(), ie=0.0, bpl=25.1, ppl=2.0)
    assert ie_eff(p) == pytest.approx(95 * 2 / (2 + 25.1))
    assert rating(Params()) - rating(p) == pytest.approx(ie_eff(p), abs=1e-9)
    # bursty loss hurts more than random loss at the same rate
    assert rating(replace(p, burst_r=2.0)) < rating(p)


def test_codecs_are_told_apart() -> None:
    clean = {c: rating(call_params(codec=c, loss_pct=0, jitter_ms=2, rtt_ms=20)) for c in ("PCMU", "G722", "opus")}
    lossy = {c: rating(call_params(codec=c, loss_pct=5, jitter_ms=2, rtt_ms=20)) for c in ("PCMU", "G722", "opus")}
    assert all(lossy[c] < clean[c] - 10 for c in clean)
    assert lossy["opus"] < lossy["PCMU"]  # a smaller Bpl: less robust to the same loss
    assert emodel.codec_of("unknown-codec").name == "PCMU"  # the default, G.711


def test_call_params_map_rtt_jitter_and_loss() -> None:
    p = call_params(codec="PCMA", loss_pct=150, jitter_ms=50, rtt_ms=200)
    assert p.ppl == 100  # clamped
    assert p.ta == pytest.approx(100 + 100 + 20)  # rtt/2 + jitter buffer (2 x jitter) + frame
    assert p.tr == pytest.approx(2 * p.ta)
