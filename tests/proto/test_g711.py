"""G.711 against a scalar transcription of the ITU-T G.191 reference (g711.c)."""

from __future__ import annotations

import numpy as np
import pytest

from voxd.proto.g711 import alaw_decode, alaw_encode, encoder_for, ulaw_decode, ulaw_encode


def ref_ulaw_compress(x: int) -> int:
    absno = ((~x) >> 2) + 33 if x < 0 else (x >> 2) + 33
    absno = min(absno, 0x1FFF)
    i, segno = absno >> 6, 1
    while i:
        segno += 1
        i >>= 1
    code = ((8 - segno) << 4) | (0xF - ((absno >> segno) & 0xF))
    return code | 0x80 if x >= 0 else code


def ref_ulaw_expand(code: int) -> int:
    sign = -1 if code < 0x80 else 1
    mantissa = ~code
    exponent = (mantissa >> 4) & 7
    step = 4 << (exponent + 1)
    return sign * ((0x80 << exponent) + step * (mantissa & 0xF) + step // 2 - 4 * 33)


def ref_alaw_compress(x: int) -> int:
    ix = (~x) >> 4 if x < 0 else x >> 4
    if ix > 15:
        iexp = 1
        while ix > 16 + 15:
            ix >>= 1
            iexp += 1
        ix = ix - 16 + (iexp << 4)
    if x >= 0:
        ix |= 0x80
    return ix ^ 0x55


def ref_alaw_expand(code: int) -> int:
    ix = (code ^ 0x55) & 0x7F
    iexp, mant = ix >> 4, ix & 0xF
    if iexp > 0:
        mant += 16
    mant = (mant << 4) + 8
    if iexp > 1:
        mant <<= iexp - 1
    return mant if code > 127 else -mant


ALL = np.arange(-32768, 32768, dtype=np.int16)
CODES = bytes(range(256))


def test_ulaw_bit_exact_for_every_sample_and_code():
    assert list(ulaw_encode(ALL)) == [ref_ulaw_compress(int(x)) for x in ALL]
    assert ulaw_decode(CODES).tolist() == [ref_ulaw_expand(c) for c in CODES]


def test_alaw_bit_exact_for_every_sample_and_code():
    assert list(alaw_encode(ALL)) == [ref_alaw_compress(int(x)) for x in ALL]
    assert alaw_decode(CODES).tolist() == [ref_alaw_expand(c) for c in CODES]


@pytest.mark.parametrize(("encode", "decode", "known", "not_identity"), [
    # silence codes and extremes; mu-law 0x7F is "negative zero" and re-encodes as 0xFF
    (ulaw_encode, ulaw_decode, {0: 0xFF, 32767: 0x80, -32768: 0x00}, [0x7F]),
    (alaw_encode, alaw_decode, {0: 0xD5, 32767: 0xAA, -32768: 0x2A, 8: 0xD5}, []),
])
def test_known_values_and_all_codes_round_trip(encode, decode, known, not_identity):
    for sample, code in known.items():
        assert encode(np.array([sample], dtype=np.int16)) == bytes([code])
    back = encode(decode(CODES))
    assert [c for c in CODES if back[c] != c] == not_identity


def test_accepts_lists_floats_and_clips():
    assert ulaw_encode([0, 40000.0, -40000.0]) == bytes([0xFF, 0x80, 0x00])
    table_enc, table_dec = encoder_for("pcma")
    assert table_enc.shape == (65536,) and table_dec.shape == (256,)
    with pytest.raises(ValueError):
        encoder_for("opus")


def test_quantisation_error_is_small():
    x = (10000 * np.sin(np.arange(8000) / 7)).astype(np.int16)
    for enc, dec in ((ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)):
        err = np.abs(dec(enc(x)).astype(int) - x.astype(int))
        assert err.max() < 10000 // 16 + 64
