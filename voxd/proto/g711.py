"""G.711 mu-law and A-law, bit-exact with the ITU-T G.191 reference (g711.c).

Encoding indexes a 65536-entry table by the int16 sample, decoding a 256-entry
table by the code byte; both are built once, vectorised, at import.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Int16Array = npt.NDArray[np.int16]


def _segment(value: npt.NDArray[np.int64], limits: list[int]) -> npt.NDArray[np.int64]:
    seg = np.zeros_like(value)
    for limit in limits:
        seg += (value > limit).astype(np.int64)
    return seg


def _build_ulaw_encode() -> npt.NDArray[np.uint8]:
    x = np.arange(-32768, 32768, dtype=np.int64)
    absno = np.where(x < 0, ((~x) >> 2) + 33, (x >> 2) + 33)
    absno = np.minimum(absno, 0x1FFF)
    # segno: 1 + number of significant bits of absno >> 6
    segno = 1 + _segment(absno >> 6, [0, 1, 3, 7, 15, 31, 63])
    high = 0x8 - segno
    low = 0xF - ((absno >> segno) & 0xF)
    code = (high << 4) | low
    code = np.where(x >= 0, code | 0x80, code)
    table = np.empty(65536, dtype=np.uint8)
    table[x.astype(np.uint16)] = code.astype(np.uint8)
    return table


def _build_ulaw_decode() -> Int16Array:
    code = np.arange(256, dtype=np.int64)
    sign = np.where(code < 0x80, -1, 1)
    mantissa = ~code
    exponent = (mantissa >> 4) & 0x7
    step = 4 << (exponent + 1)
    mantissa &= 0xF
    value = (0x80 << exponent) + step * mantissa + step // 2 - 4 * 33
    table: Int16Array = (sign * value).astype(np.int16)
    return table


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    x = np.arange(-32768, 32768, dtype=np.int64)
    ix = np.where(x < 0, (~x) >> 4, x >> 4)
    # Segments 1..7: shift right until below 32, recording how many shifts.
    iexp = 1 + _segment(ix, [31, 63, 127, 255, 511, 1023])
    shifted = ix >> (iexp - 1)
    big = ix > 15
    ix = np.where(big, (shifted - 16) + (iexp << 4), ix)
    ix = np.where(x >= 0, ix | 0x80, ix)
    table = np.empty(65536, dtype=np.uint8)
    table[x.astype(np.uint16)] = (ix ^ 0x55).astype(np.uint8)
    return table


def _build_alaw_decode() -> Int16Array:
    code = np.arange(256, dtype=np.int64)
    ix = (code ^ 0x55) & 0x7F
    iexp = ix >> 4
    mant = ix & 0xF
    mant = np.where(iexp > 0, mant + 16, mant)
    mant = (mant << 4) + 0x8
    mant = np.where(iexp > 1, mant << np.maximum(iexp - 1, 0), mant)
    return np.where(code > 127, mant, -mant).astype(np.int16)


ULAW_ENCODE = _build_ulaw_encode()
ULAW_DECODE = _build_ulaw_decode()
ALAW_ENCODE = _build_alaw_encode()
ALAW_DECODE = _build_alaw_decode()
ULAW_SILENCE = int(ULAW_ENCODE[0])
ALAW_SILENCE = int(ALAW_ENCODE[0])


def _index(pcm: npt.ArrayLike) -> npt.NDArray[np.uint16]:
    arr = np.asarray(pcm)
    if arr.dtype != np.int16:
        arr = np.clip(arr, -32768, 32767).astype(np.int16)
    return arr.view(np.uint16)


def ulaw_encode(pcm: npt.ArrayLike) -> bytes:
    """int16 PCM samples -> mu-law bytes."""
    return ULAW_ENCODE[_index(pcm)].tobytes()


def ulaw_decode(data: bytes) -> Int16Array:
    """mu-law bytes -> int16 PCM samples."""
    return ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def alaw_encode(pcm: npt.ArrayLike) -> bytes:
    """int16 PCM samples -> A-law bytes."""
    return ALAW_ENCODE[_index(pcm)].tobytes()


def alaw_decode(data: bytes) -> Int16Array:
    """A-law bytes -> int16 PCM samples."""
    return ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def encoder_for(codec_name: str) -> tuple[npt.NDArray[np.uint8], Int16Array]:
    """(encode table, decode table) for "PCMU" or "PCMA"."""
    name = codec_name.upper()
    if name == "PCMU":
        return ULAW_ENCODE, ULAW_DECODE
    if name == "PCMA":
        return ALAW_ENCODE, ALAW_DECODE
    raise ValueError(f"not a G.711 codec: {codec_name}")
