"""Test signals for the in-band detector: DTMF tones, noise, sequences (all generated).

Levels are per tone in dBm0 (``media.goertzel.ZERO_DBM0_PEAK``); twist is the column tone's
level minus the row tone's, in dB; SNR is the two tones' total power over the power of
white noise spread over the whole 0-4 kHz band.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from voipalert.codec import Codec
from voipalert.media import g711
from voipalert.media.dtmf_spectrum import (
    COLUMN_HZ,
    ROW_HZ,
    SAMPLE_RATE_HZ,
    ZERO_DBM0_PEAK,
    keypad_index,
)

FS = SAMPLE_RATE_HZ


def sine(freq_hz: float, samples: int, dbm0: float, phase: float = 0.0) -> NDArray[np.float64]:
    t = np.arange(samples) / FS
    return ZERO_DBM0_PEAK * 10 ** (dbm0 / 20) * np.sin(2 * np.pi * freq_hz * t + phase)


def dtmf(
    char: str,
    duration_s: float,
    *,
    row_dbm0: float = -10.0,
    twist_db: float = 0.0,
    row_offset: float = 0.0,
    col_offset: float = 0.0,
    rng: np.random.Generator | None = None,
) -> NDArray[np.float64]:
    """One key's two tones, random start phases, as float samples."""
    gen = rng or np.random.default_rng(0)
    r, c = keypad_index(char)
    n = round(duration_s * FS)
    row = sine(ROW_HZ[r] * (1 + row_offset), n, row_dbm0, gen.uniform(0, 2 * np.pi))
    col = sine(COLUMN_HZ[c] * (1 + col_offset), n, row_dbm0 + twist_db, gen.uniform(0, 2 * np.pi))
    return row + col


def silence(duration_s: float) -> NDArray[np.float64]:
    return np.zeros(round(duration_s * FS))


def add_noise(
    signal: NDArray[np.float64], snr_db: float, signal_power: float, rng: np.random.Generator
) -> NDArray[np.float64]:
    """White Gaussian noise at ``snr_db`` below ``signal_power`` (mean square)."""
    sigma = np.sqrt(signal_power / 10 ** (snr_db / 10))
    return signal + rng.normal(0.0, sigma, signal.size)


def to_pcm(signal: NDArray[np.float64]) -> NDArray[np.int16]:
    return np.clip(np.round(signal), -32768, 32767).astype(np.int16)


def through_g711(signal: NDArray[np.float64], codec: Codec) -> NDArray[np.int16]:
    return g711.round_trip(codec, to_pcm(signal))


def tone_power(row_dbm0: float, twist_db: float) -> float:
    """Mean-square power of a DTMF pair."""
    peak = ZERO_DBM0_PEAK * 10 ** (row_dbm0 / 20)
    return float(peak**2 / 2 * (1 + 10 ** (twist_db / 10)))
