"""The mailbox beep detector (media.beep): a lone steady tone is a beep; speech, DTMF,
ring-back and short blips are not (docs/dtmf.md §4)."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from tests.media.dtmf_signals import add_noise, dtmf, silence, sine, through_g711
from tests.media.echo_signals import speechlike
from tests.media.talkoff_corpus import cached_renders, speech_clips
from voipalert.codec import Codec
from voipalert.media.beep import Beep, BeepDetector

FS = 8000


def _beeps(pcm: NDArray[np.int16], chunk: int = 480) -> list[Beep]:
    detector = BeepDetector()
    found: list[Beep] = []
    for i in range(0, pcm.size, chunk):
        found += detector.feed(pcm[i : i + chunk])
    return found


def _with_silence(x: NDArray[np.float64]) -> NDArray[np.int16]:
    return through_g711(np.concatenate((silence(0.5), x, silence(0.5))), Codec.PCMU)


@pytest.mark.parametrize("hz", [440.0, 850.0, 1000.0, 1400.0, 2100.0])
@pytest.mark.parametrize("dbm0", [-10.0, -25.0, -35.0])
def test_a_beep_is_heard_once_near_its_start(hz: float, dbm0: float) -> None:
    found = _beeps(_with_silence(sine(hz, int(0.5 * FS), dbm0)))
    assert len(found) == 1
    assert abs(found[0].hz - hz) < 0.01 * hz
    assert abs(found[0].start - 0.5 * FS) <= 160


def test_a_beep_in_noise_is_heard() -> None:
    rng = np.random.default_rng(1)
    beep = np.concatenate((silence(0.3), sine(1000.0, int(0.4 * FS), -20.0), silence(0.3)))
    noisy = add_noise(beep, 20.0, float(np.mean(sine(1000.0, FS, -20.0) ** 2)), rng)
    assert len(_beeps(through_g711(noisy, Codec.PCMA))) == 1


def test_two_beeps_are_two() -> None:
    tone = sine(1000.0, int(0.3 * FS), -15.0)
    assert len(_beeps(_with_silence(np.concatenate((tone, silence(0.3), tone))))) == 2


@pytest.mark.parametrize("seconds", [0.06, 0.1, 0.15])
def test_a_blip_is_not_a_beep(seconds: float) -> None:
    assert _beeps(_with_silence(sine(1000.0, int(seconds * FS), -15.0))) == []


def test_quiet_tones_and_low_hum_are_not_beeps() -> None:
    assert _beeps(_with_silence(sine(1000.0, FS, -50.0))) == []
    assert _beeps(_with_silence(sine(150.0, FS, -10.0))) == []


def test_dtmf_is_not_a_beep() -> None:
    rng = np.random.default_rng(2)
    for key in "0123456789*#ABCD":
        assert _beeps(_with_silence(dtmf(key, 0.5, row_dbm0=-10.0, rng=rng))) == [], key


def test_ring_back_is_not_a_beep() -> None:
    """North American ring-back: 440 + 480 Hz, 2 s on (ITU-T E.180)."""
    n = 2 * FS
    ring = sine(440.0, n, -19.0) + sine(480.0, n, -19.0)
    assert _beeps(_with_silence(ring)) == []


def test_a_gliding_tone_is_not_a_beep() -> None:
    t = np.arange(FS) / FS
    glide = 3000 * np.sin(2 * np.pi * (600 * t + 300 * t**2))  # 600 -> 1200 Hz in 1 s
    assert _beeps(_with_silence(glide)) == []


def test_speech_is_never_a_beep() -> None:
    """Our own voice (Piper, at several pitches, through G.711) and its echo: no beep."""
    renders = cached_renders()
    seconds, found = 0.0, []
    for clip in speech_clips(renders):
        seconds += clip.seconds
        found += [(clip.name, b) for b in _beeps(clip.pcm)]
    assert seconds > 1800
    assert found == []


@pytest.mark.parametrize("seed", range(6))
def test_sampling_frames_reports_what_analysing_every_frame_does(seed: int) -> None:
    """The detector looks at every fifth frame until one is tonal (docs/capacity.md §4):
    on tone bursts of every length from 1 to 14 frames, at every phase against the
    sampling, with speech-like audio and silence between and chunks of any size, it reports
    the beeps, at the same frequency and start, that analysing every frame reports."""
    rng = np.random.default_rng(seed)
    parts: list[NDArray[np.float64]] = []
    for _ in range(40):
        frames = int(rng.integers(1, 15))
        offset = int(rng.integers(0, 160))
        hz = float(rng.uniform(420.0, 2400.0))
        tone = sine(hz, frames * 160 + offset, float(rng.uniform(-35.0, -10.0)))
        if rng.random() < 0.3:  # 100 ms later, and 3 % higher
            tone = tone * 0 + sine(hz * 1.03, tone.size, -15.0) * (np.arange(tone.size) > 800)
        parts += [tone, silence(float(rng.uniform(0.0, 0.12)))]
        if rng.random() < 0.4:
            parts.append(speechlike(rng, float(rng.uniform(0.1, 0.6)), -20.0))
    pcm = through_g711(np.concatenate(parts), Codec.PCMU)

    def run(detector: BeepDetector) -> list[Beep]:
        found: list[Beep] = []
        chunk_rng = np.random.default_rng(seed + 100)
        i = 0
        while i < pcm.size:
            n = int(chunk_rng.integers(1, 700))
            found += detector.feed(pcm[i : i + n])
            i += n
        return found

    reference = run(BeepDetector(exhaustive=True))
    assert len(reference) >= 10
    assert run(BeepDetector()) == reference
