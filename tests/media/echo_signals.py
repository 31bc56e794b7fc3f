"""Signals for the echo tests: a speech-like prompt and a hybrid's echo path."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from voipalert.media.dtmf_spectrum import dbm0_to_power

FS = 8000


def speechlike(
    rng: np.random.Generator, seconds: float, dbm0: float = -14.0, *, f0_hz: float = 120.0
) -> NDArray[np.float64]:
    """Voiced, syllable-paced harmonics with a gliding pitch: enough like our prompts to
    exercise the canceller without loading a voice (the benchmark uses Piper)."""
    n = int(seconds * FS)
    t = np.arange(n) / FS
    f0 = f0_hz * (1 + 0.25 * np.sin(2 * np.pi * rng.uniform(0.5, 0.9) * t + rng.uniform(0, 6)))
    phase = 2 * np.pi * np.cumsum(f0) / FS
    voice = sum(np.sin(k * phase) / k for k in range(1, 25))
    syllables = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6)) ** 2
    x = voice * syllables + 0.05 * rng.standard_normal(n)
    return np.asarray(x * np.sqrt(dbm0_to_power(dbm0) / np.mean(x**2)))


def echo_path(rng: np.random.Generator, delay: int) -> NDArray[np.float64]:
    """``delay`` samples of nothing, then 8 ms of decaying dispersive response."""
    taps = np.arange(64)
    response = rng.standard_normal(64) * np.exp(-taps / 8.0)
    return np.concatenate((np.zeros(delay), response))


def echo_of(
    sent: NDArray[np.int16] | NDArray[np.float64], path: NDArray[np.float64], erl_db: float
) -> NDArray[np.float64]:
    """``sent`` through ``path``, ``erl_db`` quieter than ``sent``."""
    x = np.asarray(sent, dtype=np.float64)
    echo = np.convolve(x, path)[: x.size]
    return np.asarray(echo * np.sqrt(np.mean(x**2) / np.mean(echo**2) / 10 ** (erl_db / 10)))
