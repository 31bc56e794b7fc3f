"""Synthetic talk-off material: formant vowels and music-like chords (additive synthesis).

Vowels: a harmonic source (spectral tilt 1/k^a) whose F0 moves (steady, glide, vibrato, a
little jitter), shaped by three formant resonances from Peterson & Barney (1952) for men,
women and children, sometimes gliding to a second vowel (a diphthong). Chords: 3-4 notes of
major, minor, suspended, diminished, augmented and seventh chords in equal temperament,
as pure sines or with harmonic partials, started together.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray

from tests.media.talkoff_corpus import FS, Clip
from voipalert.codec import Codec
from voipalert.media import g711

# (F1, F2, F3) in Hz, Peterson & Barney (1952) averages, for the vowels of
# heed, hid, head, had, hod, hawed, hood, who'd, hud, heard.
FORMANTS = {
    "man": (
        (270, 2290, 3010),
        (390, 1990, 2550),
        (530, 1840, 2480),
        (660, 1720, 2410),
        (730, 1090, 2440),
        (570, 840, 2410),
        (440, 1020, 2240),
        (300, 870, 2240),
        (640, 1190, 2390),
        (490, 1350, 1690),
    ),
    "woman": (
        (310, 2790, 3310),
        (430, 2480, 3070),
        (610, 2330, 2990),
        (860, 2050, 2850),
        (850, 1220, 2810),
        (590, 920, 2710),
        (470, 1160, 2680),
        (370, 950, 2670),
        (760, 1400, 2780),
        (500, 1640, 1960),
    ),
    "child": (
        (370, 3200, 3730),
        (530, 2730, 3600),
        (690, 2610, 3570),
        (1010, 2320, 3320),
        (1030, 1370, 3170),
        (680, 1060, 3180),
        (560, 1410, 3310),
        (430, 1170, 3260),
        (850, 1590, 3360),
        (560, 1820, 2160),
    ),
}
F0_RANGE = {"man": (80.0, 170.0), "woman": (150.0, 300.0), "child": (220.0, 400.0)}
CHORDS = {
    "major": (0, 4, 7),
    "minor": (0, 3, 7),
    "sus4": (0, 5, 7),
    "dim": (0, 3, 6),
    "aug": (0, 4, 8),
    "dom7": (0, 4, 7, 10),
    "min7": (0, 3, 7, 10),
    "maj7": (0, 4, 7, 11),
    "power": (0, 7, 12),
}
TIMBRES = {
    "sine": (1.0,),
    "organ": (1.0, 0.5, 0.3, 0.2),
    "string": tuple(1.0 / k for k in range(1, 11)),
    "clarinet": (1.0, 0.05, 0.5, 0.05, 0.3, 0.05, 0.15),
}


def _resonance(
    f: NDArray[np.float64], centre: NDArray[np.float64], bandwidth: float
) -> NDArray[np.float64]:
    """Magnitude of a two-pole resonance, unity gain at DC."""
    half = bandwidth / 2
    num = centre**2 + half**2
    den = np.sqrt(((f - centre) ** 2 + half**2) * ((f + centre) ** 2 + half**2))
    return np.asarray(num / den, dtype=np.float64)


def _f0_contour(rng: np.random.Generator, n: int, low: float, high: float) -> NDArray[np.float64]:
    t = np.arange(n) / FS
    start = rng.uniform(low, high)
    shape = rng.integers(0, 3)
    if shape == 0:  # steady: the hardest case
        f0 = np.full(n, start)
    elif shape == 1:  # glide up or down by up to 25 %
        f0 = start * (1 + rng.uniform(-0.25, 0.25) * t / max(t[-1], 1e-3))
    else:  # vibrato
        f0 = start * (1 + rng.uniform(0.005, 0.03) * np.sin(2 * np.pi * rng.uniform(4, 7) * t))
    jitter = np.cumsum(rng.normal(0, 0.0004, n))
    return np.asarray(f0 * (1 + jitter - jitter.mean()), dtype=np.float64)


def vowel(rng: np.random.Generator, seconds: float) -> NDArray[np.float64]:
    """One vowel or diphthong, as float samples with peak ~0.5 of full scale."""
    speaker = str(rng.choice(list(FORMANTS)))
    n = round(seconds * FS)
    f0 = _f0_contour(rng, n, *F0_RANGE[speaker])
    table = FORMANTS[speaker]
    scale = rng.uniform(0.92, 1.08, 3)
    a = np.array(table[rng.integers(len(table))]) * scale
    b = np.array(table[rng.integers(len(table))]) * scale if rng.random() < 0.4 else a
    mix = np.linspace(0, 1, n)[None, :]
    formants = a[:, None] * (1 - mix) + b[:, None] * mix  # (3, n)
    bandwidths = (rng.uniform(50, 90), rng.uniform(70, 120), rng.uniform(100, 200))
    tilt = rng.uniform(0.7, 1.5)
    phase = 2 * np.pi * np.cumsum(f0) / FS
    # Harmonic gains change slowly: compute them every 5 ms and interpolate.
    control = np.arange(0, n, 40)
    f0_c, formants_c = f0[control], formants[:, control]
    out = np.zeros(n)
    for k in range(1, int(3900 / f0.min()) + 1):
        fk = k * f0_c
        gain = k**-tilt * np.ones(control.size)
        for i in range(3):
            gain *= _resonance(fk, formants_c[i], bandwidths[i])
        gain[fk > 3900] = 0.0
        out += np.interp(np.arange(n), control, gain) * np.sin(k * phase)
    out *= 1 + 0.03 * rng.standard_normal(n).cumsum() / np.sqrt(n)  # shimmer
    out += rng.normal(0, 0.01 * np.std(out), n)  # breath
    return _envelope(out, 0.5, rng)


def chord(rng: np.random.Generator, seconds: float) -> NDArray[np.float64]:
    n = round(seconds * FS)
    t = np.arange(n) / FS
    intervals = CHORDS[str(rng.choice(list(CHORDS)))]
    partials = TIMBRES[str(rng.choice(list(TIMBRES)))]
    root = int(rng.integers(55, 85))  # G3 … C#6
    a4 = 440.0 * 2 ** (rng.uniform(-15, 15) / 1200)
    out = np.zeros(n)
    for interval in intervals:
        freq = a4 * 2 ** ((root + interval - 69) / 12)
        level = 10 ** (rng.uniform(-3, 3) / 20)
        for k, amp in enumerate(partials, start=1):
            if k * freq < 3900:
                out += level * amp * np.sin(2 * np.pi * k * freq * t + rng.uniform(0, 2 * np.pi))
    return _envelope(out, 0.6, rng)


def _envelope(x: NDArray[np.float64], peak: float, rng: np.random.Generator) -> NDArray[np.float64]:
    ramp = min(160, x.size // 4)
    env = np.ones(x.size)
    env[:ramp] = np.linspace(0, 1, ramp)
    env[-ramp:] = np.linspace(1, 0, ramp)
    level = peak * 32767 * 10 ** (-rng.uniform(0, 20) / 20)
    return np.asarray(x * env / (np.abs(x).max() + 1e-9) * level, dtype=np.float64)


def _clips(name: str, make: object, seconds: float, seed: int) -> Iterator[Clip]:
    rng = np.random.default_rng(seed)
    total = 0.0
    i = 0
    while total < seconds:
        length = float(rng.uniform(0.25, 1.5))
        assert callable(make)
        signal = np.concatenate((make(rng, length), np.zeros(int(rng.integers(0, 800)))))
        codec: Codec = Codec.PCMU if i % 2 == 0 else Codec.PCMA
        pcm = g711.round_trip(codec, np.clip(np.round(signal), -32768, 32767).astype(np.int16))
        yield Clip(f"{name}-{i}", pcm)
        total += pcm.size / FS
        i += 1


def vowel_clips(seconds: float, seed: int = 1) -> Iterator[Clip]:
    return _clips("vowel", vowel, seconds, seed)


def chord_clips(seconds: float, seed: int = 2) -> Iterator[Clip]:
    return _clips("chord", chord, seconds, seed)
