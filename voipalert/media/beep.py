"""A mailbox's beep in the far end's audio (sans-IO): one steady tone, alone, long enough.

A voicemail greeting ends with a beep, and what is said after it is recorded. To leave the
alert in the mailbox (docs/dtmf.md §4) the call must hear that beep. What makes a beep, and
tells it from what else comes back on a line:

* a single tone between 400 and 2,500 Hz (mailboxes use 440-1,400 Hz; the band leaves out
  the pitch of most voices, whose lone low harmonic can be steady for a while, and the
  top of the telephone channel);
* alone: the peak and its window's main lobe carry at least ``min_purity`` of the frame's
  power. Speech spreads its power over harmonics and formants, DTMF over two tones
  (each at most about half);
* steady: the same frequency (within ``max_drift``) for ``min_seconds`` (a sung vowel
  glides; a beep does not), at a level above ``min_dbm0``. A ring-back's two close tones
  (440 + 480 Hz, ITU-T E.180) fall in one 20 ms frame's main lobe, but they beat: the
  peak jumps between 422 and 461 Hz from frame to frame, never steady for long.

Frames of 20 ms (160 samples), Hann-windowed and zero-padded to 1,024 points (7.8 Hz per
bin, the peak interpolated between bins). The detector reports a beep once, when its
``min_seconds`` are reached, and again only after the tone has stopped. Time is counted in
samples fed; nothing here reads a clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from voipalert.media.dtmf_spectrum import dbm0_to_power

FS: Final = 8000
FRAME: Final = 160
FFT: Final = 1024
_HANN: Final = np.hanning(FRAME)
_FREQS: Final = np.fft.rfftfreq(FFT, 1 / FS)
# The Hann main lobe of a 160-sample frame is ±100 Hz (±2 bins of 50 Hz): ±13 bins here.
_LOBE_BINS: Final = 13


@dataclass(frozen=True, slots=True)
class BeepConfig:
    min_hz: float = 400.0
    max_hz: float = 2500.0
    min_seconds: float = 0.2
    min_purity: float = 0.9
    max_drift: float = 0.015
    min_dbm0: float = -40.0


@dataclass(frozen=True, slots=True)
class Beep:
    """A beep at ``hz``, sounding since sample ``start``."""

    hz: float
    start: int


class BeepDetector:
    """Streaming beep detector: feed 8 kHz audio in chunks of any size.

    Not every frame is analysed. A beep is at least ``frames_needed`` tonal frames in a
    row, so while nothing tonal is heard only every ``stride``-th frame (half that many)
    is looked at; a tonal one means the frames before it, kept aside, are analysed after
    all and every frame is until a frame is not tonal. Any run of tonal frames long enough
    to be a beep contains a sampled frame within its first ``stride``, so it is seen from
    its first frame, and the reports are those of analysing every frame (``exhaustive``,
    the reference the tests compare with) at a fraction of the cost: speech is rarely
    tonal (docs/capacity.md §4)."""

    def __init__(self, config: BeepConfig | None = None, *, exhaustive: bool = False) -> None:
        self.config = cfg = config or BeepConfig()
        self._frames_needed = max(1, round(cfg.min_seconds * FS / FRAME))
        self._stride = 1 if exhaustive else max(1, self._frames_needed // 2)
        self._min_power = dbm0_to_power(cfg.min_dbm0)
        self._pending: NDArray[np.float64] = np.zeros(0)
        self._frame_index = 0
        self._run_hz = 0.0
        self._run_frames = 0
        self._run_start = 0
        self._reported = False
        self._tracking = self._stride == 1  # analysing every frame
        # The frames since the last sampled one, for a tonal one to look back on.
        self._back: deque[NDArray[np.float64]] = deque(maxlen=max(1, self._stride - 1))

    def feed(self, pcm: NDArray[np.int16]) -> list[Beep]:
        x = np.concatenate((self._pending, pcm.astype(np.float64)))
        whole = x.size // FRAME
        self._pending = x[whole * FRAME :]
        if whole == 0:
            return []
        frames = x[: whole * FRAME].reshape(whole, FRAME)
        hz = np.full(whole, np.nan)  # analysed so far in this chunk
        found: list[Beep] = []
        for i in range(whole):
            if self._tracking or self._frame_index % self._stride == 0:
                if np.isnan(hz[i]):
                    # Tracking: the rest of the chunk in one call; sampling: this frame.
                    stop = whole if self._tracking else i + 1
                    hz[i:stop] = _tone_per_frame(frames[i:stop], self.config, self._min_power)
                if hz[i] > 0.0 and not self._tracking:
                    self._look_back()
                    self._tracking = True
                tone = float(hz[i])
            else:
                tone = 0.0  # not analysed: as if not tonal (see the class docstring)
            beep = self._step(tone)
            if beep is not None:
                found.append(beep)
            if tone <= 0.0 and self._stride > 1:
                self._tracking = False
            if self._stride > 1:
                self._back.append(frames[i])
        return found

    def _look_back(self) -> None:
        """A sampled frame is tonal: replay the frames since the previous sample with what
        they really hold. Those were stepped as silence, which left the state as the frame
        before them did (not tonal, or the run would have been sampled already)."""
        if not self._back:
            return
        back = np.stack(self._back)
        self._back.clear()
        self._frame_index -= back.shape[0]
        self._run_frames, self._reported = 0, False
        for tone in _tone_per_frame(back, self.config, self._min_power):
            self._step(float(tone))  # fewer than frames_needed: never a report

    def _step(self, hz: float) -> Beep | None:
        index = self._frame_index
        self._frame_index += 1
        if hz <= 0.0:
            self._run_frames, self._reported = 0, False
            return None
        # Compared with the run's first frame, not the previous one: a slow glide moves
        # little per frame but far over a beep's length.
        steady = self._run_frames > 0 and abs(hz - self._run_hz) <= self.config.max_drift * hz
        if not steady:
            self._run_frames, self._run_start, self._reported = 0, index, False
            self._run_hz = hz
        self._run_frames += 1
        if self._run_frames >= self._frames_needed and not self._reported:
            self._reported = True
            return Beep(hz=round(hz, 1), start=self._run_start * FRAME)
        return None


# The band and the "everything but hum" range as bin slices, computed once.
_ABOVE_HUM: Final = int(np.searchsorted(_FREQS, 100.0))


def _band(cfg: BeepConfig) -> tuple[int, int]:
    """First and last bin (inclusive) of ``min_hz``..``max_hz``."""
    lo = int(np.searchsorted(_FREQS, cfg.min_hz))
    hi = int(np.searchsorted(_FREQS, cfg.max_hz, side="right")) - 1
    return lo, hi


def _tone_per_frame(
    frames: NDArray[np.float64], cfg: BeepConfig, min_power: float
) -> NDArray[np.float64]:
    """Per frame: the frequency of a lone steady-state tone, or 0.

    Every step is one numpy operation over all the frames at once, on bin slices rather
    than masks over the whole spectrum: the detector runs on every call's audio, and at
    160 samples per frame numpy's per-call overhead, not the arithmetic, is the cost
    (docs/capacity.md §4)."""
    power = np.einsum("ij,ij->i", frames, frames) / FRAME
    out = np.zeros(frames.shape[0])
    loud = np.flatnonzero(power >= min_power)
    if loud.size == 0:
        return out
    coeffs = np.fft.rfft(frames[loud] * _HANN, FFT, axis=1)
    spectrum = np.square(coeffs.real)
    spectrum += np.square(coeffs.imag)
    lo, hi = _band(cfg)
    peak = lo + np.argmax(spectrum[:, lo : hi + 1], axis=1)
    # Power from 100 Hz up, and within the peak's main lobe (±_LOBE_BINS), from one
    # running sum per frame: cum[:, k] is the power of bins below k.
    cum = np.zeros((loud.size, FFT // 2 + 2))
    np.cumsum(spectrum, axis=1, out=cum[:, 1:])
    rows = np.arange(loud.size)
    total = cum[:, -1] - cum[:, _ABOVE_HUM] + 1e-9
    lobe_lo = np.maximum(peak - _LOBE_BINS, 0)
    lobe_hi = np.minimum(peak + _LOBE_BINS, FFT // 2) + 1
    purity = (cum[rows, lobe_hi] - cum[rows, lobe_lo]) / total
    neighbours = spectrum[rows[:, None], np.clip(peak[:, None] + (-1, 0, 1), 0, FFT // 2)]
    ok = (purity >= cfg.min_purity) & (peak < FFT // 2) & (neighbours[:, 1] > 0)
    a, b, c = np.log(neighbours + 1e-9).T
    curvature = a - 2 * b + c
    shift = np.where(curvature < 0, 0.5 * (a - c) / np.where(curvature < 0, curvature, -1), 0)
    hz = (peak + np.clip(shift, -0.5, 0.5)) * FS / FFT
    out[loud[ok]] = hz[ok]
    return out
