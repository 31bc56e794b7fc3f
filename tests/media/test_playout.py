from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from voipalert.codec import Codec
from voipalert.media import g711
from voipalert.media.errors import LocalProtocolError
from voipalert.media.playout import PlayEnd, PlayEnded, PlayQueue


def _ramp(frames: float) -> NDArray[np.int16]:
    return (np.arange(int(frames * 160)) % 2000 + 1000).astype(np.int16)


def _playing(q: PlayQueue) -> int | None:
    return q.playing  # through a call: mypy would keep the narrowing of the attribute


def test_silence_when_nothing_plays() -> None:
    assert PlayQueue(Codec.PCMU).next_frame() == (b"\xff" * 160, None)
    assert PlayQueue(Codec.PCMA).next_frame() == (b"\xd5" * 160, None)


def test_a_prompt_plays_frame_by_frame_then_silence() -> None:
    q = PlayQueue(Codec.PCMU)
    pcm = _ramp(2.5)  # the last frame is padded with silence
    item, replaced = q.play(pcm)
    assert replaced is None
    assert _playing(q) == item
    encoded = g711.encode(Codec.PCMU, pcm)
    f1, e1 = q.next_frame()
    f2, e2 = q.next_frame()
    f3, e3 = q.next_frame()
    assert (f1, f2) == (encoded[:160], encoded[160:320])
    assert f3 == encoded[320:] + b"\xff" * 80
    assert (e1, e2, e3) == (None, None, PlayEnded(item, PlayEnd.FINISHED))
    assert _playing(q) is None
    assert q.next_frame() == (b"\xff" * 160, None)


def test_repeat_with_a_gap() -> None:
    q = PlayQueue(Codec.PCMA)
    pcm = _ramp(1)
    item, _ = q.play(pcm, repeat=3, gap_frames=2)
    frames = []
    ended = None
    while ended is None:
        frame, ended = q.next_frame()
        frames.append(frame)
    one = g711.encode(Codec.PCMA, pcm)
    silence = b"\xd5" * 160
    assert frames == [one, silence, silence, one, silence, silence, one]
    assert ended == PlayEnded(item, PlayEnd.FINISHED)


def test_play_replaces_at_once_and_stop_cuts() -> None:
    q = PlayQueue(Codec.PCMU)
    first, _ = q.play(_ramp(10))
    q.next_frame()
    second, replaced = q.play(_ramp(10))
    assert replaced == PlayEnded(first, PlayEnd.REPLACED)
    assert q.stop(PlayEnd.INTERRUPTED) == PlayEnded(second, PlayEnd.INTERRUPTED)
    assert q.stop() is None
    assert q.next_frame() == (b"\xff" * 160, None)


def test_skipped_slots_drop_their_audio() -> None:
    q = PlayQueue(Codec.PCMU)
    pcm = _ramp(6)
    encoded = g711.encode(Codec.PCMU, pcm)
    item, _ = q.play(pcm)
    q.next_frame()
    frame, ended = q.next_frame(skipped=3)
    assert frame == encoded[4 * 160 : 5 * 160] and ended is None
    frame, ended = q.next_frame(skipped=5)
    assert frame == b"\xff" * 160
    assert ended == PlayEnded(item, PlayEnd.FINISHED)


@pytest.mark.parametrize(
    ("repeat", "gap", "pcm"),
    [(0, 0, _ramp(1)), (1001, 0, _ramp(1)), (1, -1, _ramp(1)), (1, 0, _ramp(0))],
)
def test_bad_requests_are_refused(repeat: int, gap: int, pcm: NDArray[np.int16]) -> None:
    with pytest.raises(LocalProtocolError):
        PlayQueue(Codec.PCMU).play(pcm, repeat=repeat, gap_frames=gap)
