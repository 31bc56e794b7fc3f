"""Which 20 ms analysis windows hold a DTMF digit: the spectral half of the in-band detector.

Windows of 160 samples hop by 40 (5 ms). For each of the 8 DTMF frequencies a grid of nine
single-bin DFTs spans ±5 % around it — what a Goertzel filter computes, done here as one
matrix product per chunk, which numpy runs far faster than a per-sample recursion. The
window is Hann: with a rectangular one the stronger tone's sidelobes leak into the other
group's bins (941 and 1209 Hz are only 268 Hz apart) and, at 8 dB of twist, make the weaker
tone's frequency estimate beat by ±0.5 %; with Hann it is unbiased, with a standard
deviation of 0.16 % at the worst corner of the accept bar.

A window holds a digit when (every threshold is in ``DetectorConfig``):

1. in each group (rows 697-941 Hz, columns 1209-1633 Hz) the strongest bin's log-parabolic
   peak lies within ±``max_offset`` of a nominal frequency (the bar accepts ±1.5 % and
   rejects ±3.5 %; the line sits halfway);
2. each tone is at least ``min_tone_dbm0`` and the twist (column minus row level) is within
   ``min_twist_db``..``max_twist_db``;
3. the two tones carry at least ``min_purity`` of the window's power: speech and music
   spread theirs over many partials;
4. the four 5 ms sub-blocks have similar power, so the tone fills the whole window;
5. talk-off guard, on a zero-padded Hann spectrum: nothing more than 110 Hz away from both
   tones comes within ``min_guard_db`` of the weaker tone, and no *discrete* component
   (``discrete_peak_db`` above the lower quartile of those bins) within
   ``discrete_guard_db``. Voiced speech can put most of its power in two harmonics that sit
   on a DTMF pair, but another harmonic then stands out of an otherwise empty spectrum.
   Measured: on the talk-off corpus such a component was within 12.5 dB of the weaker tone
   and at least 28 dB above the quartile; white noise at 15 dB SNR is flat (17.5 dB at
   most) and stays at least 11.9 dB below the weaker tone. A transmitter within ITU-T Q.23
   (extraneous frequencies 20 dB below the tones) passes both clauses up to 4 dB of twist.

Tests 1-4 first run on the best grid bin of each group only, with some slack, so that a
window of speech or silence costs a handful of numpy operations; the rest runs only for the
few windows that get through.

Levels are in dBm0 on the 16-bit scale of ``media.g711``: 0 dBm0 is a sine of peak 22 657
(μ-law's full-scale sine is +3.17 dBm0, ITU-T G.711).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from voipalert.media.rfc4733 import DTMF_CHARS

SAMPLE_RATE_HZ: Final = 8000
ROW_HZ: Final = (697.0, 770.0, 852.0, 941.0)
COLUMN_HZ: Final = (1209.0, 1336.0, 1477.0, 1633.0)
KEYPAD: Final = ("123A", "456B", "789C", "*0#D")
ZERO_DBM0_PEAK: Final = 8159 * 4 * 10 ** (-3.17 / 20)  # ≈ 22 657
SUB_BLOCK: Final = 40  # samples: the 5 ms hop
WINDOW_SUB_BLOCKS: Final = 4
WINDOW: Final = SUB_BLOCK * WINDOW_SUB_BLOCKS  # 20 ms
GRID_STEP: Final = 0.0125
GRID_POINTS: Final = 9  # offsets -5 % … +5 %
_CENTRE: Final = GRID_POINTS // 2
_GROUP_BINS: Final = 4 * GRID_POINTS
# The cheap pre-test compares grid maxima, which miss a tone's power by up to the grid's
# scalloping loss (0.2 dB); the slack keeps it a necessary condition.
_PRETEST_SLACK: Final = 0.9


def dbm0_to_power(dbm0: float) -> float:
    """Mean-square value (16-bit scale) of a sine at ``dbm0``."""
    return float(ZERO_DBM0_PEAK**2 / 2 * 10 ** (dbm0 / 10))


def keypad_index(char: str) -> tuple[int, int]:
    """(row, column) of a key on the DTMF keypad."""
    for r, keys in enumerate(KEYPAD):
        c = keys.find(char.upper())
        if c >= 0:
            return r, c
    raise ValueError(f"{char!r} is not a DTMF key")


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    max_offset: float = 0.025
    min_tone_dbm0: float = -36.0
    min_twist_db: float = -10.0
    max_twist_db: float = 6.0
    min_purity: float = 0.8
    min_sub_block_ratio: float = 0.45
    min_guard_db: float = 9.0
    discrete_guard_db: float = 15.0
    discrete_peak_db: float = 23.0
    max_drift: float = 0.01
    confirm_windows: int = 3
    release_windows: int = 6


@dataclass(frozen=True, slots=True)
class WindowHits:
    """The windows of one chunk that hold a digit (indices ascending)."""

    window: tuple[int, ...]
    digit: tuple[int, ...]  # index into DTMF_CHARS
    row_offset: tuple[float, ...]
    col_offset: tuple[float, ...]


_NO_HITS: Final = WindowHits((), (), (), ())


def _grid_hz() -> NDArray[np.float64]:
    offsets = (np.arange(GRID_POINTS) - _CENTRE) * GRID_STEP
    return np.outer(np.array(ROW_HZ + COLUMN_HZ), 1.0 + offsets).ravel()


_FREQS: Final = _grid_hz()  # 72 bins: 8 tones, 9 offsets each
_N_BINS: Final = _FREQS.size
_HANN: Final = np.hanning(WINDOW)
_PHASE: Final = np.outer(np.arange(WINDOW), 2 * np.pi * _FREQS / SAMPLE_RATE_HZ)
# Hann-weighted cosine and sine of every grid bin: window @ _BASIS gives Re and -Im.
_BASIS: Final = np.ascontiguousarray(np.hstack((np.cos(_PHASE), np.sin(_PHASE))) * _HANN[:, None])
# |X|² of a Hann-windowed sine of amplitude A is (A·Σw/2)²: back to its power A²/2.
_POWER_SCALE: Final = 2.0 / float(_HANN.sum()) ** 2
_GUARD_FFT: Final = 512
_GUARD_HZ: Final = np.fft.rfftfreq(_GUARD_FFT, 1 / SAMPLE_RATE_HZ)
_GUARD_LOW_HZ: Final = 100.0  # below: DC offset and mains hum, not speech harmonics
_GUARD_EXCLUDE_HZ: Final = 110.0  # the Hann main lobe is ±100 Hz at this length
_TONE_SEARCH_HZ: Final = 20.0
_CODE_FROM_CELL: Final = np.array(
    [DTMF_CHARS.index(KEYPAD[r][c]) for r in range(4) for c in range(4)]
)


def _peak(
    energy: NDArray[np.float64],
) -> tuple[NDArray[np.intp], NDArray[np.float64], NDArray[np.float64]]:
    """Best tone of a group per window, its interpolated offset and power.

    ``energy`` is (windows, 4 tones, 9 offsets). Log-parabolic interpolation over the best
    bin and its two neighbours (near-exact on a Hann main lobe); a peak on the grid's edge
    is out of tolerance anyway.
    """
    n = energy.shape[0]
    best = np.argmax(energy.reshape(n, -1), axis=1)
    tone, j = np.divmod(best, GRID_POINTS)
    jc = np.clip(j, 1, GRID_POINTS - 2)
    rows = np.arange(n)
    logs = np.log(energy[rows, tone, :] + 1e-9)
    a, b, c = logs[rows, jc - 1], logs[rows, jc], logs[rows, jc + 1]
    curvature = a - 2 * b + c
    p = np.clip(0.5 * (a - c) / np.where(curvature < 0, curvature, -1.0), -0.5, 0.5)
    p = np.where(curvature < 0, p, 0.0)
    offset = np.where(jc == j, (jc - _CENTRE + p) * GRID_STEP, np.inf)
    power = np.exp(b - 0.25 * (a - c) * p) * _POWER_SCALE
    return tone, offset, power


def _guard(
    frames: NDArray[np.float64], row_hz: NDArray[np.float64], col_hz: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per window: dB from the weaker tone down to the strongest other component, and how
    far that component stands above the lower quartile of the other bins."""
    spectrum = np.abs(np.fft.rfft(frames * _HANN, _GUARD_FFT, axis=1)) ** 2 + 1e-9
    dist_row = np.abs(_GUARD_HZ[None, :] - row_hz[:, None])
    dist_col = np.abs(_GUARD_HZ[None, :] - col_hz[:, None])
    row_peak = np.where(dist_row < _TONE_SEARCH_HZ, spectrum, 0.0).max(axis=1)
    col_peak = np.where(dist_col < _TONE_SEARCH_HZ, spectrum, 0.0).max(axis=1)
    outside = (
        (_GUARD_HZ[None, :] >= _GUARD_LOW_HZ)
        & (dist_row >= _GUARD_EXCLUDE_HZ)
        & (dist_col >= _GUARD_EXCLUDE_HZ)
    )
    other = np.where(outside, spectrum, 0.0).max(axis=1)
    # Lower quartile of the bins outside: excluded bins sort last as +inf.
    ordered = np.sort(np.where(outside, spectrum, np.inf), axis=1)
    quartile = outside.sum(axis=1) // 4
    floor = ordered[np.arange(ordered.shape[0]), quartile]
    margin = 10 * np.log10(np.minimum(row_peak, col_peak) / other)
    peakiness = 10 * np.log10(other / floor)
    return np.asarray(margin, dtype=np.float64), np.asarray(peakiness, dtype=np.float64)


_FRAME_INDEX: Final = np.arange(8)[:, None] * SUB_BLOCK + np.arange(WINDOW)


def _frame_index(n: int) -> NDArray[np.intp]:
    """Indices that cut ``n`` overlapping windows out of the sample buffer."""
    if n <= _FRAME_INDEX.shape[0]:
        return _FRAME_INDEX[:n]
    return np.arange(n)[:, None] * SUB_BLOCK + np.arange(WINDOW)


class WindowAnalyser:
    """Applies tests 1-5 to every window of a chunk."""

    def __init__(self, config: DetectorConfig) -> None:
        self.config = config
        self._min_power = dbm0_to_power(config.min_tone_dbm0)
        self._min_bin = self._min_power / _POWER_SCALE * _PRETEST_SLACK
        self._purity_bins = config.min_purity * _PRETEST_SLACK / (_POWER_SCALE * WINDOW)
        self._min_total = 2 * self._min_power * WINDOW * _PRETEST_SLACK

    def analyse(
        self, samples: NDArray[np.float64], energy: NDArray[np.float64], sounding: int = -1
    ) -> WindowHits:
        """``samples`` holds the chunk preceded by the 3 sub-blocks before it; ``energy``
        the power of each of those sub-blocks. Window ``i`` starts at sample ``40 i``.

        ``sounding`` is the digit already reported and still heard: windows that continue
        it skip the talk-off guard, which only has to stop a key from being reported."""
        n = energy.size - WINDOW_SUB_BLOCKS + 1
        total = np.convolve(energy, np.ones(WINDOW_SUB_BLOCKS), "valid")
        if total.max() < self._min_total:
            return _NO_HITS  # silence or near-silence: no window can hold two tones
        # A contiguous copy: matmul hands it to BLAS (a strided view runs ten times slower).
        frames = samples[_frame_index(n)]
        prod = frames @ _BASIS
        bins = np.square(prod[:, :_N_BINS])
        bins += np.square(prod[:, _N_BINS:])
        best = bins.reshape(n, 2, _GROUP_BINS).max(axis=2)
        passed = (best.min(axis=1) >= self._min_bin) & (
            best.sum(axis=1) >= self._purity_bins * total
        )
        candidates = np.flatnonzero(passed)
        if candidates.size == 0:
            return _NO_HITS
        return self._examine(
            candidates, bins[candidates], total[candidates], energy, frames, sounding
        )

    def _examine(
        self,
        windows: NDArray[np.intp],
        bins: NDArray[np.float64],
        total: NDArray[np.float64],
        energy: NDArray[np.float64],
        frames: NDArray[np.float64],
        sounding: int,
    ) -> WindowHits:
        cfg = self.config
        k = windows.size
        # Both groups in one pass: rows of the stacked array are (row group, column group).
        tone, off, pow_ = _peak(bins.reshape(2 * k, 4, GRID_POINTS))
        row, col = tone[0::2], tone[1::2]
        row_off, col_off = off[0::2], off[1::2]
        row_pow, col_pow = pow_[0::2], pow_[1::2]
        twist = 10 * np.log10((col_pow + 1e-9) / (row_pow + 1e-9))
        sub = energy[windows[:, None] + np.arange(WINDOW_SUB_BLOCKS)]
        ok = (
            (np.minimum(row_pow, col_pow) >= self._min_power)
            & (np.abs(row_off) <= cfg.max_offset)
            & (np.abs(col_off) <= cfg.max_offset)
            & (twist >= cfg.min_twist_db)
            & (twist <= cfg.max_twist_db)
            & ((row_pow + col_pow) * WINDOW >= cfg.min_purity * total)
            & (sub.min(axis=1) >= cfg.min_sub_block_ratio * sub.max(axis=1))
        )
        digit = _CODE_FROM_CELL[row * 4 + col]
        guard = np.flatnonzero(ok & (digit != sounding))
        if guard.size:
            row_hz = np.array(ROW_HZ)[row[guard]] * (1 + row_off[guard])
            col_hz = np.array(COLUMN_HZ)[col[guard]] * (1 + col_off[guard])
            margin, peakiness = _guard(frames[windows[guard]], row_hz, col_hz)
            discrete = (margin < cfg.discrete_guard_db) & (peakiness >= cfg.discrete_peak_db)
            ok[guard[(margin < cfg.min_guard_db) | discrete]] = False
        keep = np.flatnonzero(ok)
        return WindowHits(
            window=tuple(windows[keep].tolist()),
            digit=tuple(digit[keep].tolist()),
            row_offset=tuple(row_off[keep].tolist()),
            col_offset=tuple(col_off[keep].tolist()),
        )
