"""Does a recording contain a reference sound? Normalised cross-correlation, per window.

Used by the end-to-end tests and benchmarks/concurrent_calls.py to check that a phone bot's
recording holds our prompt: each voiced 200 ms window of the reference is searched for in
the recording, so a slot skipped under load (which shifts everything after it) costs one
window, not the whole comparison.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

WINDOW = 1600  # 200 ms at 8 kHz


def peak_correlation(signal: NDArray[np.generic], reference: NDArray[np.generic]) -> float:
    """Normalised cross-correlation peak of ``reference`` inside ``signal`` (1.0 = exact)."""
    x = np.asarray(signal, dtype=np.float64)
    y = np.asarray(reference, dtype=np.float64)
    size = 1 << (len(x) + len(y) - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(x, size) * np.conj(np.fft.rfft(y, size)), size)[: len(x)]
    energy = np.convolve(x**2, np.ones(len(y)), mode="full")[len(y) - 1 : len(y) - 1 + len(x)]
    best = int(np.argmax(corr))
    return float(corr[best] / np.sqrt(energy[best] * np.sum(y**2) + 1e-9))


def window_correlations(
    heard: NDArray[np.generic], reference: NDArray[np.generic], window: int = WINDOW
) -> list[float]:
    """The best match of each voiced window of ``reference`` inside ``heard``."""
    ref = np.asarray(reference, dtype=np.float64)
    level = np.sqrt(np.mean(ref**2))
    scores = []
    for start in range(0, len(ref) - window + 1, window):
        piece = ref[start : start + window]
        if np.sqrt(np.mean(piece**2)) > 0.3 * level:
            scores.append(peak_correlation(heard, piece))
    return scores
