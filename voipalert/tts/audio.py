"""Telephone DSP for synthesized speech: trim, join, resample, level, limit (pure numpy).

The chain for one prompt (``telephone_prompt``):

1. each sentence Piper produced is trimmed to its speech plus a short margin, with 5 ms
   raised-cosine fades so the cut never clicks;
2. sentences are joined with a fixed pause;
3. the result is resampled to 8 kHz by soxr (its "VHQ" filter is the anti-alias: nothing
   above 4 kHz folds back into the telephone band);
4. the active speech level (ITU-T P.56 idea: energy of the frames above a threshold 15.9 dB
   below the level) is brought to the target;
5. peaks above the ceiling are pulled down by a smooth, look-ahead gain that is provably at
   or under the gain each sample needs, so nothing clips — including after G.711, whose top
   segment rounds by up to 1/32 of full scale.

Levels are dBFS of RMS relative to full scale 1.0 (so a full-scale sine is -3 dBFS).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt
import soxr

from voipalert.tts.config import TELEPHONE_RATE_HZ, RenderConfig

FloatArray = npt.NDArray[np.float32] | npt.NDArray[np.float64]
Int16Array = npt.NDArray[np.int16]

FRAME_MS: Final = 10
FADE_MS: Final = 5
LIMITER_WINDOW_MS: Final = 5
P56_MARGIN_DB: Final = 15.9
INT16_FULL_SCALE: Final = 32767
_POWER_FLOOR: Final = 1e-12


def frame_power(x: FloatArray, rate: int, frame_ms: int = FRAME_MS) -> npt.NDArray[np.float64]:
    """Mean square of each frame (the last, partial frame is padded with silence)."""
    frame = max(1, rate * frame_ms // 1000)
    count = -(-len(x) // frame)
    padded = np.zeros(count * frame, dtype=np.float64)
    padded[: len(x)] = x
    result: npt.NDArray[np.float64] = np.mean(padded.reshape(count, frame) ** 2, axis=1)
    return result


def dbfs(power: float) -> float:
    return float(10 * np.log10(max(power, _POWER_FLOOR)))


def trim_silence(x: FloatArray, rate: int, threshold_db: float, margin_ms: int) -> FloatArray:
    """Drop leading and trailing frames quieter than ``threshold_db`` below the loudest one,
    keeping ``margin_ms`` around the speech. All-silent input gives an empty array."""
    power = frame_power(x, rate)
    if power.size == 0 or power.max() <= _POWER_FLOOR:
        return x[:0]
    loud = np.flatnonzero(power >= power.max() * 10 ** (threshold_db / 10))
    frame = rate * FRAME_MS // 1000
    margin = rate * margin_ms // 1000
    start = max(0, int(loud[0]) * frame - margin)
    end = min(len(x), (int(loud[-1]) + 1) * frame + margin)
    return x[start:end]


def fade_edges(x: FloatArray, rate: int, fade_ms: int = FADE_MS) -> npt.NDArray[np.float64]:
    y = np.asarray(x, dtype=np.float64).copy()
    n = min(len(y) // 2, rate * fade_ms // 1000)
    if n > 0:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n, endpoint=False))
        y[:n] *= ramp
        y[-n:] *= ramp[::-1]
    return y


def join_sentences(
    parts: Sequence[FloatArray], rate: int, pause_ms: int
) -> npt.NDArray[np.float64]:
    if not parts:
        return np.zeros(0, dtype=np.float64)
    pause = np.zeros(rate * pause_ms // 1000, dtype=np.float64)
    pieces: list[FloatArray] = []
    for index, part in enumerate(parts):
        if index:
            pieces.append(pause)
        pieces.append(part)
    return np.concatenate(pieces).astype(np.float64)


def resample(x: FloatArray, from_rate: int, to_rate: int) -> npt.NDArray[np.float64]:
    if from_rate == to_rate or len(x) == 0:
        return np.asarray(x, dtype=np.float64)
    y: npt.NDArray[np.float64] = soxr.resample(
        np.asarray(x, dtype=np.float64), from_rate, to_rate, quality="VHQ"
    )
    return y


def active_level_dbfs(x: FloatArray, rate: int) -> float:
    """Active speech level: the level L of the frames louder than L - 15.9 dB (P.56 style,
    on 10 ms frames, without P.56's hangover). ``-inf`` for silence."""
    power = frame_power(x, rate)
    power = power[power > _POWER_FLOOR]
    if power.size == 0:
        return float("-inf")
    levels = 10 * np.log10(power)
    # Raising the threshold shrinks the active set, so (level - threshold) falls: the
    # first threshold where it drops to the margin gives the active level.
    for threshold in np.arange(np.floor(levels.min()), levels.max() + 0.25, 0.25):
        active = power[levels >= threshold]
        level = dbfs(float(active.mean()))
        if level - threshold <= P56_MARGIN_DB:
            return level
    return dbfs(float(power.max()))


def limit_peaks(x: FloatArray, ceiling: float, window: int) -> npt.NDArray[np.float64]:
    """Scale ``x`` so that ``|y| <= ceiling`` everywhere, with a gain that changes smoothly
    over ``2 * window + 1`` samples.

    The gain is a moving average (radius ``window``) of a moving minimum (same radius) of
    the gain each sample needs; every value averaged for sample n is a minimum over a range
    that contains n, so the smoothed gain never exceeds what n needs.
    """
    y = np.asarray(x, dtype=np.float64)
    magnitude = np.abs(y)
    if len(y) == 0 or magnitude.max() <= ceiling:
        return y.copy()
    needed = np.minimum(1.0, ceiling / np.maximum(magnitude, _POWER_FLOOR))
    width = 2 * window + 1
    padded = np.pad(needed, 2 * window, constant_values=1.0)
    minimum = np.lib.stride_tricks.sliding_window_view(padded, width).min(axis=1)
    gain = np.convolve(minimum, np.full(width, 1.0 / width), mode="valid")
    # The average may exceed its inputs' minimum by a rounding error: clip is the backstop.
    result: npt.NDArray[np.float64] = np.clip(y * gain, -ceiling, ceiling)
    return result


def normalise(
    x: FloatArray, rate: int, target_dbfs: float, ceiling_dbfs: float
) -> npt.NDArray[np.float64]:
    level = active_level_dbfs(x, rate)
    if not np.isfinite(level):
        return np.asarray(x, dtype=np.float64)
    gained = np.asarray(x, dtype=np.float64) * 10 ** ((target_dbfs - level) / 20)
    return limit_peaks(gained, 10 ** (ceiling_dbfs / 20), rate * LIMITER_WINDOW_MS // 1000)


def to_int16(x: FloatArray) -> Int16Array:
    scaled = np.clip(np.round(np.asarray(x, dtype=np.float64) * INT16_FULL_SCALE), -32768, 32767)
    return scaled.astype(np.int16)


def telephone_prompt(
    sentences: Sequence[FloatArray], source_rate: int, config: RenderConfig
) -> Int16Array:
    """Piper's per-sentence float audio → one 8 kHz int16 prompt, ready for G.711."""
    trimmed = []
    for sentence in sentences:
        centred = np.asarray(sentence, dtype=np.float64)
        if len(centred):
            centred = centred - centred.mean()
        part = trim_silence(
            centred, source_rate, config.silence_threshold_db, config.edge_margin_ms
        )
        if len(part):
            trimmed.append(fade_edges(part, source_rate))
    if not trimmed:
        return np.zeros(0, dtype=np.int16)
    joined = join_sentences(trimmed, source_rate, config.sentence_pause_ms)
    narrow = resample(joined, source_rate, TELEPHONE_RATE_HZ)
    level = normalise(narrow, TELEPHONE_RATE_HZ, config.target_level_dbfs, config.peak_ceiling_dbfs)
    return to_int16(level)
