"""What goes into each ptime slot of an outgoing stream: the prompt, then silence (sans-IO).

A call must send continuously from answer to BYE (docs/sip.md §4.7: PBX media timeouts
hang up silent calls, NAT bindings expire), so when nothing is playing each slot carries
G.711 silence (μ-law 0xFF, A-law 0xD5). ``play`` replaces whatever was playing at once;
``stop`` (a key was pressed) cuts it at the next slot. The prompt is encoded once when it
is queued, so a slot costs one slice.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from voipalert.codec import Codec
from voipalert.media import g711
from voipalert.media.errors import LocalProtocolError

MAX_REPEAT: Final = 1000


class PlayEnd(enum.Enum):
    FINISHED = "finished"  # played to the end (every repetition)
    INTERRUPTED = "interrupted"  # cut by a key press
    REPLACED = "replaced"  # another prompt took its place
    STOPPED = "stopped"  # stopped by the caller, or the session closed


@dataclass(frozen=True, slots=True)
class PlayEnded:
    item: int
    how: PlayEnd


class PlayQueue:
    """One prompt at a time, frame by frame, silence in between."""

    def __init__(self, codec: Codec, samples_per_frame: int = 160) -> None:
        self.codec = codec
        self.frame_bytes = samples_per_frame  # G.711: one byte per sample
        self.silence: Final = bytes([g711.SILENCE_BYTE[codec]]) * samples_per_frame
        # One repetition is prompt + gap; the last one has no gap. Repeats are not copied.
        self._unit = b""
        self._total = 0
        self._pos = 0
        self._item = 0
        self._current: int | None = None

    @property
    def playing(self) -> int | None:
        """The id of the prompt being played, if any."""
        return self._current

    def play(
        self, pcm: NDArray[np.int16], *, repeat: int = 1, gap_frames: int = 0
    ) -> tuple[int, PlayEnded | None]:
        """Queue ``pcm`` (8 kHz) to start at the next slot, ``repeat`` times with
        ``gap_frames`` of silence in between. Returns its id, and the end of the prompt it
        replaced."""
        if not 1 <= repeat <= MAX_REPEAT:
            raise LocalProtocolError(f"repeat must be 1-{MAX_REPEAT}, got {repeat}")
        if gap_frames < 0:
            raise LocalProtocolError("the gap cannot be negative")
        if pcm.size == 0:
            raise LocalProtocolError("nothing to play")
        encoded = g711.encode(self.codec, pcm)
        one = encoded + self.silence[: -len(encoded) % self.frame_bytes]
        replaced = self.stop(PlayEnd.REPLACED)
        self._item += 1
        self._unit = one + self.silence * gap_frames
        self._total = len(self._unit) * (repeat - 1) + len(one)
        self._pos = 0
        self._current = self._item
        return self._item, replaced

    def stop(self, how: PlayEnd = PlayEnd.STOPPED) -> PlayEnded | None:
        """Cut the current prompt; its end, or ``None`` when nothing was playing."""
        if self._current is None:
            return None
        ended = PlayEnded(self._current, how)
        self._current, self._unit, self._total, self._pos = None, b"", 0, 0
        return ended

    def next_frame(self, skipped: int = 0) -> tuple[bytes, PlayEnded | None]:
        """The payload for the next slot, after ``skipped`` slots that were never sent
        (their audio is dropped: the prompt keeps to real time, like the RTP clock)."""
        if self._current is None:
            return self.silence, None
        self._pos += skipped * self.frame_bytes
        if self._pos >= self._total:
            return self.silence, self.stop(PlayEnd.FINISHED)
        offset = self._pos % len(self._unit)
        frame = self._unit[offset : offset + self.frame_bytes]
        self._pos += self.frame_bytes
        ended = self.stop(PlayEnd.FINISHED) if self._pos >= self._total else None
        return frame, ended
