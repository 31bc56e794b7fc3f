"""The telephone DSP on synthetic signals whose right answer is known."""

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from voipalert.tts.audio import (
    active_level_dbfs,
    limit_peaks,
    normalise,
    resample,
    telephone_prompt,
    trim_silence,
)
from voipalert.tts.config import RenderConfig

RATE = 22050


def tone(freq: float, seconds: float, rms_dbfs: float, rate: int = RATE) -> npt.NDArray[np.float64]:
    t = np.arange(int(seconds * rate)) / rate
    amplitude = np.sqrt(2) * 10 ** (rms_dbfs / 20)
    signal: npt.NDArray[np.float64] = amplitude * np.sin(2 * np.pi * freq * t)
    return signal


def rms_dbfs(x: npt.NDArray[np.float64]) -> float:
    return float(10 * np.log10(np.mean(x**2)))


def test_resampling_to_8khz_does_not_alias() -> None:
    # 6 kHz is above the 4 kHz Nyquist limit of 8 kHz audio: without an anti-alias filter it
    # would fold back to 2 kHz, right in the telephone band.
    inband = resample(tone(1000, 1.0, -20), RATE, 8000)
    folded = resample(tone(6000, 1.0, -20), RATE, 8000)
    assert abs(rms_dbfs(inband[800:-800]) + 20) < 0.1
    assert rms_dbfs(folded[800:-800]) < -20 - 90


def test_active_level_ignores_pauses() -> None:
    speechlike = np.concatenate([tone(440, 0.5, -26), np.zeros(RATE), tone(440, 0.5, -26)])
    assert abs(active_level_dbfs(speechlike, RATE) + 26) < 0.5
    assert rms_dbfs(speechlike) < -28.5  # the plain RMS would be 3 dB too low
    assert active_level_dbfs(np.zeros(100), RATE) == float("-inf")


def test_normalise_reaches_the_target_without_exceeding_the_ceiling() -> None:
    signal = np.concatenate([tone(300, 0.4, -35), np.zeros(4000), tone(700, 0.4, -30)])
    signal[5000] = 0.9  # a click that must be limited, not let through
    out = normalise(signal, RATE, -20.0, -3.0)
    assert abs(active_level_dbfs(out, RATE) + 20) < 1.0
    assert np.abs(out).max() <= 10 ** (-3 / 20) + 1e-12


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float64, st.integers(1, 3000), elements=st.floats(-4, 4, width=64)),
    st.floats(0.05, 1.0),
    st.integers(0, 60),
)
def test_the_limiter_never_exceeds_the_ceiling_and_never_amplifies(
    x: npt.NDArray[np.float64], ceiling: float, window: int
) -> None:
    y = limit_peaks(x, ceiling, window)
    assert np.abs(y).max() <= ceiling + 1e-12
    assert (np.abs(y) <= np.abs(x) + 1e-12).all()
    assert (np.sign(y) * np.sign(x) >= 0).all()


def test_the_limiter_leaves_quiet_signals_alone() -> None:
    x = tone(1000, 0.1, -20)
    assert np.array_equal(limit_peaks(x, 0.9, 40), x)


def test_silence_is_trimmed_to_the_margin() -> None:
    padded = np.concatenate([np.zeros(RATE), tone(500, 0.5, -20), np.zeros(RATE)])
    trimmed = trim_silence(padded, RATE, -40.0, margin_ms=40)
    speech_samples = int(0.5 * RATE)
    assert speech_samples <= len(trimmed) <= speech_samples + 2 * int(0.05 * RATE)
    assert len(trim_silence(np.zeros(500), RATE, -40.0, 40)) == 0


def test_prompt_joins_sentences_with_a_pause_at_8khz() -> None:
    config = RenderConfig(sentence_pause_ms=300, edge_margin_ms=0)
    pcm = telephone_prompt([tone(500, 0.5, -20), tone(500, 0.5, -20)], RATE, config)
    assert pcm.dtype == np.int16
    assert abs(len(pcm) / 8000 - 1.3) < 0.03
    middle = pcm[int(0.52 * 8000) : int(0.78 * 8000)]
    assert np.abs(middle).max() < 50
    assert telephone_prompt([np.zeros(1000)], RATE, config).size == 0
