"""In-band DTMF detector: accuracy on generated tones and the talk-off corpus, and CPU cost.

    python -m benchmarks.dtmf_detector [--trials 2000] [--skip-corpus]

Accuracy: the fraction of tones detected at the worst corner of the accept bar (many fresh
noise realisations), where the accept/reject lines really lie (frequency offset, duration),
and false keys per hour on the talk-off corpus of ``tests/media`` (Piper speech, formant
vowels, chords; the Piper renders are shared with the test suite's cache in
``.pytest_cache/``, rendered there on first use, about 80 s of CPU).

CPU: process time per second of audio when the detector is fed 20 ms frames, and 60 ms
chunks as the RTP session does, for silence, speech, tones and noise (100 % = one core).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from tests.media.dtmf_signals import add_noise, dtmf, silence, through_g711, tone_power
from tests.media.synth_corpus import chord_clips, vowel_clips
from tests.media.talkoff_corpus import Clip, cached_renders, speech_clips
from voipalert.codec import Codec
from voipalert.media.goertzel import DtmfDetector, ToneStarted

KEYS = "0123456789*#ABCD"
# The test suite's cache: the Piper renders are shared with the talk-off tests.
CACHE = Path(".pytest_cache/d/voipalert-talkoff")


def _keys(pcm: NDArray[np.int16]) -> str:
    detector = DtmfDetector()
    events = detector.feed(pcm) + detector.flush()
    return "".join(e.char for e in events if isinstance(e, ToneStarted))


def _tone(
    rng: np.random.Generator,
    key: str,
    seconds: float,
    *,
    weaker_dbm0: float = -10.0,
    twist: float = 0.0,
    offsets: tuple[float, float] = (0.0, 0.0),
    snr_db: float | None = None,
    codec: Codec = Codec.PCMU,
) -> NDArray[np.int16]:
    row = weaker_dbm0 if twist >= 0 else weaker_dbm0 - twist
    tone = dtmf(
        key, seconds, row_dbm0=row, twist_db=twist, row_offset=offsets[0],
        col_offset=offsets[1], rng=rng,
    )  # fmt: skip
    signal = np.concatenate((np.zeros(400 + int(rng.integers(0, 160))), tone, silence(0.06)))
    if snr_db is not None:
        signal = add_noise(signal, snr_db, tone_power(row, twist), rng)
    return through_g711(signal, codec)


def worst_corner(trials: int) -> None:
    rng = np.random.default_rng(2024)
    hits = 0
    for i in range(trials):
        key = KEYS[i % 16]
        pcm = _tone(
            rng, key, 0.040, weaker_dbm0=-30.0, twist=-8.0 if i % 2 else 4.0,
            offsets=(float(rng.choice((-0.015, 0.015))), float(rng.choice((-0.015, 0.015)))),
            snr_db=15.0, codec=Codec.PCMU if i % 4 < 2 else Codec.PCMA,
        )  # fmt: skip
        hits += _keys(pcm) == key
    print(
        f"worst corner (40 ms, weaker tone -30 dBm0, twist -8/+4 dB, ±1.5 %, SNR 15 dB, "
        f"G.711): {hits}/{trials} detected"
    )


def _rate(make: Callable[[np.random.Generator, str], NDArray[np.int16]], trials: int) -> float:
    rng = np.random.default_rng(7)
    return sum(_keys(make(rng, KEYS[i % 16])) == KEYS[i % 16] for i in range(trials)) / trials


def _offset_tone(off: float) -> Callable[[np.random.Generator, str], NDArray[np.int16]]:
    def make(rng: np.random.Generator, key: str) -> NDArray[np.int16]:
        return _tone(rng, key, 0.2, offsets=(off, off), snr_db=15)

    return make


def _short_tone(seconds: float) -> Callable[[np.random.Generator, str], NDArray[np.int16]]:
    def make(rng: np.random.Generator, key: str) -> NDArray[np.int16]:
        return _tone(rng, key, seconds)

    return make


def offset_line(trials: int) -> None:
    print("detection rate vs frequency offset (both tones, 200 ms, -10 dBm0, SNR 15 dB):")
    for pct in (1.5, 2.0, 2.25, 2.5, 2.75, 3.0, 3.5):
        rates = []
        for sign in (1, -1):
            off = sign * pct / 100
            rates.append(_rate(_offset_tone(off), trials))
        print(f"  ±{pct:4.2f} %: +{rates[0]:6.1%}  -{rates[1]:6.1%}")


def duration_line(trials: int) -> None:
    print("detection rate vs tone duration (-10 dBm0, no noise, random alignment):")
    for ms in (15, 19.9, 22, 25, 28, 30, 33, 35, 40):
        rate = _rate(_short_tone(ms / 1000), trials)
        print(f"  {ms:5.1f} ms: {rate:6.1%}")


def talk_off() -> None:
    start = time.process_time()
    renders = cached_renders(CACHE)
    print(f"Piper renders from {CACHE} ({time.process_time() - start:.0f} s CPU to load/render)")
    corpora: list[tuple[str, list[Clip]]] = [
        ("Piper speech (pitch/speed variants, phone band, G.711)", list(speech_clips(renders))),
        ("formant vowels", list(vowel_clips(seconds=30 * 60))),
        ("music-like chords", list(chord_clips(seconds=15 * 60))),
    ]
    for name, clips in corpora:
        minutes = sum(c.seconds for c in clips) / 60
        begin = time.process_time()
        false = sum(len(_keys(c.pcm)) for c in clips)
        cpu = time.process_time() - begin
        print(
            f"talk-off {name}: {minutes:.1f} min, {false} false keys "
            f"({false / minutes * 60:.2f}/hour); detector {minutes * 60 / cpu:.0f}x real time"
        )


def cpu_cost() -> None:
    rng = np.random.default_rng(3)
    clips = speech_clips(cached_renders(CACHE))
    speech = np.concatenate([next(clips).pcm for _ in range(40)])
    signals = {
        "silence": np.zeros(8000 * 30, dtype=np.int16),
        "speech (Piper)": speech[: 8000 * 60],
        "continuous tones": through_g711(
            np.concatenate([dtmf("5", 1.0, rng=rng)] * 20), Codec.PCMU
        ),
        "noise (-20 dBm0)": through_g711(rng.normal(0, 1600, 8000 * 30), Codec.PCMU),
    }
    print("CPU per second of audio (best of 3 runs), fed in 20 ms frames | in 60 ms chunks")
    print("(the RTP session feeds 3 packets at a time):")
    for name, pcm in signals.items():
        costs = [_cost(pcm, 160), _cost(pcm, 480)]
        print(
            f"  {name:18s}: "
            + " | ".join(f"{c * 1000:5.2f} ms/s = {c * 100:.3f} % of a core" for c in costs)
        )


def _cost(pcm: NDArray[np.int16], chunk: int) -> float:
    best = float("inf")
    for _ in range(3):
        detector = DtmfDetector()
        begin = time.process_time()
        for i in range(0, pcm.size - chunk + 1, chunk):
            detector.feed(pcm[i : i + chunk])
        best = min(best, (time.process_time() - begin) / (pcm.size / 8000))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000, help="worst-corner tones")
    parser.add_argument("--skip-corpus", action="store_true", help="no talk-off corpus")
    args = parser.parse_args()
    print(f"os.cpu_count() = {os.cpu_count()}; Python {sys.version.split()[0]}")
    worst_corner(args.trials)
    offset_line(max(32, args.trials // 50))
    duration_line(max(48, args.trials // 25))
    if not args.skip_corpus:
        talk_off()
    cpu_cost()


if __name__ == "__main__":
    main()
