"""In-band DTMF detector for 8 kHz audio: the far end's decoded stream, or a recording.

``dtmf_spectrum`` decides which 20 ms windows (5 ms apart) hold which digit; this module
turns those verdicts into key presses:

* a digit starts after ``confirm_windows`` consecutive windows agree on it with stable
  frequencies (within ``max_drift``): about 30 ms of steady tone, so 40 ms tones pass and
  tones under 20 ms cannot (measured: none under 22 ms, all from 33 ms);
* it ends after ``release_windows`` windows without it, so the 40 ms pause between two
  presses of the same key (at least 10 windows that cannot hold a whole tone) separates
  them, while a lost 20 ms packet inside a tone (at most 3 disturbed windows once the
  receiver splices the audio) does not split it.

Positions are sample indices counted from the first sample fed; the caller maps them to
times. Nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from voipalert.media.dtmf_spectrum import (
    SUB_BLOCK,
    WINDOW,
    WINDOW_SUB_BLOCKS,
    DetectorConfig,
    WindowAnalyser,
)
from voipalert.media.rfc4733 import DTMF_CHARS

__all__ = ["DetectorConfig", "DtmfDetector", "ToneEnded", "ToneEvent", "ToneStarted"]


@dataclass(frozen=True, slots=True)
class ToneStarted:
    """A key press was recognised; its tone began near sample ``start``."""

    char: str
    start: int


@dataclass(frozen=True, slots=True)
class ToneEnded:
    """The tone of a key press ended near sample ``end``."""

    char: str
    start: int
    end: int


ToneEvent = ToneStarted | ToneEnded


class DtmfDetector:
    """Streaming in-band DTMF detector. Feed it 8 kHz int16 audio in chunks of any size."""

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = config or DetectorConfig()
        self._analyser = WindowAnalyser(self.config)
        self._pending: NDArray[np.float64] = np.zeros(0)
        self._sub_index = 0  # absolute index of the next sub-block
        self._tail_energy = np.zeros(WINDOW_SUB_BLOCKS - 1)
        self._tail_samples = np.zeros(WINDOW - SUB_BLOCK)
        self._run_digit = -1
        self._run_count = 0
        self._run_start = 0
        self._run_offsets = (0.0, 0.0)
        self._active = -1
        self._active_start = 0
        self._active_end = 0
        self._misses = 0

    @property
    def samples_seen(self) -> int:
        return self._sub_index * SUB_BLOCK + self._pending.size

    def feed(self, pcm: NDArray[np.int16]) -> list[ToneEvent]:
        """Process more audio; returns the key presses that started or ended in it."""
        x = pcm.astype(np.float64)
        if self._pending.size:
            x = np.concatenate((self._pending, x))
        blocks = x.size // SUB_BLOCK
        self._pending = x[blocks * SUB_BLOCK :]
        if blocks == 0:
            return []
        chunk = x[: blocks * SUB_BLOCK]
        block_view = chunk.reshape(blocks, SUB_BLOCK)
        energy = np.concatenate((self._tail_energy, np.einsum("ij,ij->i", block_view, block_view)))
        samples = np.concatenate((self._tail_samples, chunk))
        self._tail_energy = energy[blocks:]
        self._tail_samples = samples[blocks * SUB_BLOCK :]
        first = self._sub_index - WINDOW_SUB_BLOCKS + 1  # sub-block where window 0 starts
        self._sub_index += blocks
        hits = self._analyser.analyse(samples, energy, self._active)
        events: list[ToneEvent] = []
        if not hits.window:
            self._misses_only(blocks, events)
            return events
        hit_at = {w: k for k, w in enumerate(hits.window)}
        for i in range(blocks):
            k = hit_at.get(i)
            if k is None:
                self._miss(events)
                continue
            start = max(0, (first + i) * SUB_BLOCK)
            offsets = (hits.row_offset[k], hits.col_offset[k])
            self._hit(hits.digit[k], offsets, start, events)
        return events

    def flush(self) -> list[ToneEvent]:
        """End of the audio: close a key press still sounding."""
        if self._active < 0:
            return []
        event = ToneEnded(DTMF_CHARS[self._active], self._active_start, self._active_end)
        self._active = -1
        return [event]

    def _hit(
        self, code: int, offsets: tuple[float, float], start: int, out: list[ToneEvent]
    ) -> None:
        cfg = self.config
        stable = (
            code == self._run_digit
            and self._run_count > 0
            and abs(offsets[0] - self._run_offsets[0]) <= cfg.max_drift
            and abs(offsets[1] - self._run_offsets[1]) <= cfg.max_drift
        )
        if stable:
            self._run_count += 1
        else:
            self._run_digit, self._run_count, self._run_start = code, 1, start
        self._run_offsets = offsets
        if code == self._active:
            self._misses = 0
            self._active_end = start + WINDOW
            return
        if self._run_count >= cfg.confirm_windows:
            self._end_active(out)
            self._active, self._active_start = code, self._run_start
            self._active_end, self._misses = start + WINDOW, 0
            out.append(ToneStarted(DTMF_CHARS[code], self._run_start))

    def _miss(self, out: list[ToneEvent]) -> None:
        self._misses_only(1, out)

    def _misses_only(self, windows: int, out: list[ToneEvent]) -> None:
        self._run_count = 0
        if self._active < 0:
            return
        self._misses += windows
        if self._misses >= self.config.release_windows:
            self._end_active(out)

    def _end_active(self, out: list[ToneEvent]) -> None:
        if self._active >= 0:
            out.append(ToneEnded(DTMF_CHARS[self._active], self._active_start, self._active_end))
            self._active = -1
