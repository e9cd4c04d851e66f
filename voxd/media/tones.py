"""In-band DTMF: a Goertzel detector and a tone generator (ITU-T Q.23/Q.24).

The detector evaluates the eight DTMF frequencies on overlapping windows
(~25 ms, 10 ms hop), vectorised with numpy as a matrix product against the
Goertzel (single-bin DFT) kernels, then applies level, twist and purity checks.
A digit must hold for two consecutive windows (about 35-40 ms of tone) and is
reported once per key press: the same digit re-triggers only after a gap.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

ROWS = (697.0, 770.0, 852.0, 941.0)
COLS = (1209.0, 1336.0, 1477.0, 1633.0)
KEYS = ("123A", "456B", "789C", "*0#D")

FloatArray = npt.NDArray[np.float64]


class DtmfDetector:
    """Feed int16 PCM (any chunk size) with :meth:`feed`; get the new digits back."""

    def __init__(self, sample_rate: int = 8000, *, min_level_dbfs: float = -36.0,
                 max_twist_db: float = 8.0, max_reverse_twist_db: float = 6.0,
                 min_purity: float = 0.5) -> None:
        if sample_rate not in (8000, 16000):
            raise ValueError("sample_rate must be 8000 or 16000")
        self.sample_rate = sample_rate
        self.window = 205 * sample_rate // 8000
        self.hop = 80 * sample_rate // 8000
        n = np.arange(self.window)
        freqs = np.array(ROWS + COLS)
        # Goertzel kernels: cosine and sine of each DTMF frequency, as one real matrix.
        phase = 2 * np.pi * np.outer(n, freqs) / sample_rate
        self._kernels = np.ascontiguousarray(np.hstack([np.cos(phase), np.sin(phase)]))
        full_scale = 32768.0 * 10 ** (min_level_dbfs / 20)
        self._min_energy = self.window * full_scale**2 / 2  # sum of squares of a sine
        self._twist = 10 ** (max_twist_db / 10)
        self._reverse = 10 ** (max_reverse_twist_db / 10)
        self._purity = min_purity
        self._pending = np.zeros(0, dtype=np.float64)
        self._candidate: str | None = None
        self._count = 0
        self._held: str | None = None  # digit already reported for this key press
        self._gap = 0

    def reset(self) -> None:
        self._pending = np.zeros(0, dtype=np.float64)
        self._candidate, self._count, self._held, self._gap = None, 0, None, 0

    def _classify(self, frames: FloatArray) -> list[str | None]:
        proj = frames @ self._kernels  # (windows, 16): real and imaginary parts
        spectrum = proj[:, :8] ** 2 + proj[:, 8:] ** 2  # (windows, 8)
        energy = np.sum(frames**2, axis=1)
        rows, cols = spectrum[:, :4], spectrum[:, 4:]
        r_idx, c_idx = rows.argmax(axis=1), cols.argmax(axis=1)
        take = np.arange(len(frames))
        r_pow, c_pow = rows[take, r_idx], cols[take, c_idx]
        # Tone power relative to total energy: |X|^2 * 2/N ~ energy of that sine.
        tone_energy = (r_pow + c_pow) * 2 / self.window
        purity = tone_energy / np.maximum(energy, 1e-9)
        rows_sorted = np.sort(rows, axis=1)
        cols_sorted = np.sort(cols, axis=1)
        distinct = (rows_sorted[:, -2] * 6.3 < r_pow) & (cols_sorted[:, -2] * 6.3 < c_pow)
        twist_ok = (r_pow <= c_pow * self._reverse) & (c_pow <= r_pow * self._twist)
        ok = ((energy >= self._min_energy) & (purity >= self._purity) & distinct & twist_ok)
        return [KEYS[r][c] if good else None
                for good, r, c in zip(ok.tolist(), r_idx.tolist(), c_idx.tolist(), strict=True)]

    def feed(self, pcm: npt.ArrayLike) -> list[str]:
        samples = np.asarray(pcm, dtype=np.float64).ravel()
        buf = np.concatenate([self._pending, samples])
        count = 0 if len(buf) < self.window else (len(buf) - self.window) // self.hop + 1
        if count == 0:
            self._pending = buf
            return []
        idx = np.arange(self.window)[None, :] + self.hop * np.arange(count)[:, None]
        labels = self._classify(buf[idx])
        self._pending = buf[count * self.hop :]
        out: list[str] = []
        for label in labels:
            if label is not None and label == self._candidate:
                self._count += 1
            else:
                self._candidate, self._count = label, 1 if label is not None else 0
            if label is None or label != self._held:
                self._gap += 1
            else:
                self._gap = 0
            if self._held is not None and self._gap >= 2:
                self._held = None  # key released
            if label is not None and self._count >= 2 and self._held != label:
                self._held, self._gap = label, 0
                out.append(label)
        return out


def generate_dtmf(digits: str, sample_rate: int = 8000, *, tone_ms: int = 80,
                  gap_ms: int = 80, level_dbfs: float = -10.0,
                  twist_db: float = 0.0) -> npt.NDArray[np.int16]:
    """int16 PCM for ``digits`` (each tone ``tone_ms`` long, then ``gap_ms`` silence).

    ``level_dbfs`` is the peak level of each of the two sines; ``twist_db`` makes
    the column tone that much louder than the row tone.
    """
    amp = 32767 * 10 ** (level_dbfs / 20)
    tone_n = tone_ms * sample_rate // 1000
    gap = np.zeros(gap_ms * sample_rate // 1000)
    t = np.arange(tone_n) / sample_rate
    parts: list[FloatArray] = []
    for digit in digits:
        pos = "".join(KEYS).find(digit.upper()) if len(digit) == 1 else -1
        if pos < 0:
            raise ValueError(f"not a DTMF digit: {digit!r}")
        r, c = divmod(pos, 4)
        tone = amp * np.sin(2 * np.pi * ROWS[r] * t)
        tone += amp * 10 ** (twist_db / 20) * np.sin(2 * np.pi * COLS[c] * t)
        parts += [tone, gap]
    if not parts:
        return np.zeros(0, dtype=np.int16)
    return np.clip(np.concatenate(parts), -32768, 32767).astype(np.int16)
