"""Talk-off: the detector must never hear a key in speech or music.

The far end often echoes our own Piper message back, so the main corpus is Piper's voice
(see ``talkoff_corpus``): at least 60 minutes after pitch/speed variants, telephone-band
filtering and G.711. The Piper renders are generated on the first run and cached in the
repository's ``.cache/talkoff/``, in a file named by the hash of the generating code (about
80 s of CPU; later runs take seconds). It works the same with ``-p no:cacheprovider``.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from tests.media.synth_corpus import chord_clips, vowel_clips
from tests.media.talkoff_corpus import Clip, cached_renders, speech_clips
from voipalert.media.goertzel import DtmfDetector, ToneStarted


@pytest.fixture(scope="session")
def piper_renders() -> list[NDArray[np.int16]]:
    return cached_renders()


def _false_keys(clips: list[Clip]) -> list[tuple[str, str]]:
    found = []
    for clip in clips:
        detector = DtmfDetector()
        events = detector.feed(clip.pcm) + detector.flush()
        keys = "".join(e.char for e in events if isinstance(e, ToneStarted))
        if keys:
            found.append((clip.name, keys))
    return found


@pytest.mark.slow
def test_no_key_in_an_hour_of_piper_speech(piper_renders: list[NDArray[np.int16]]) -> None:
    clips = list(speech_clips(piper_renders))
    minutes = sum(c.seconds for c in clips) / 60
    assert minutes >= 60, f"the corpus holds only {minutes:.1f} minutes"
    assert _false_keys(clips) == []


@pytest.mark.slow
def test_no_key_in_formant_vowels() -> None:
    clips = list(vowel_clips(seconds=20 * 60))
    assert _false_keys(clips) == []


@pytest.mark.slow
def test_no_key_in_music_like_chords() -> None:
    clips = list(chord_clips(seconds=10 * 60))
    assert _false_keys(clips) == []
