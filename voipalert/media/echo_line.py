"""One call's echo handling: find whether the line echoes our prompt, and how late, then
cancel it in front of the in-band detector (docs/dtmf.md §3).

The canceller (``media.echo``) needs what we sent aligned with what came back to within
its tail. Two clocks meet here:

* our timeline: the pacer's slots (slot ``n`` leaves at ``start + n·ptime``), so our sample
  ``n·160`` is known exactly, with the time it left;
* the far end's RTP timestamps, which count its own 8 kHz samples from a random origin.

When the first audio of a stream arrives, its timestamp is anchored to where our timeline
is at that moment; from then on a received sample's position on our timeline is its
timestamp plus that offset, whatever the network's jitter does to arrival times (RFC 3550
§5.1: the timestamp is the sampling instant). The echo of our sample ``s`` then sits at
position ``s + D``: ``D`` covers the round trip, the far end's jitter buffer and the
hybrid, unknown but steady. It is found by cross-correlating two seconds of what came back
with what we sent over the lags 0 to ``max_delay_s`` (once we have spoken enough): a clear
peak means the line echoes, and the canceller starts with the reference ``lead`` samples
ahead of the echo; no peak after ``attempts`` windows of our speech means it does not, and
the received audio goes to the detector untouched, at no cost, for the rest of the call.

Sans-IO: the session calls ``sent`` for every slot and ``received`` for every audio frame,
passing the time; no clock is read here.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Final

import numpy as np
from numpy.typing import NDArray

from voipalert.codec import Codec
from voipalert.media import g711
from voipalert.media.dtmf_spectrum import dbm0_to_power
from voipalert.media.echo import EchoCanceller, EchoConfig

FS: Final = 8000
TS_MOD: Final = 1 << 32


class EchoState(enum.Enum):
    SEARCHING = "searching"
    CANCELLING = "cancelling"
    NO_ECHO = "no-echo"


@dataclass(frozen=True, slots=True)
class EchoLineConfig:
    max_delay_s: float = 0.5
    """The longest round trip (network, jitter buffers, hybrid) looked for."""
    window_s: float = 2.0
    """How much returned audio one delay search correlates."""
    attempts: int = 3
    """Windows of our speech without an echo before the line is taken as echo-free."""
    min_correlation: float = 0.2
    """Normalised cross-correlation peak that counts as an echo (an ERL of 20 dB through
    a dispersive path still gives 0.4-0.7; unrelated speech stays under 0.1)."""
    lead: int = 80
    """Where the echo's strongest part lands in the canceller's tail (a tap index): the
    search finds that strongest part, and the tail must also hold what comes before it."""
    canceller: EchoConfig = field(default_factory=EchoConfig)


@dataclass(slots=True)
class EchoLineStats:
    delay_samples: int | None = None
    correlation: float = 0.0
    searches: int = 0
    frames_cancelled: int = 0
    re_anchored: int = 0


class EchoLine:
    """Aligns what we sent with what comes back and cancels the echo when there is one."""

    def __init__(
        self, codec: Codec, *, samples_per_slot: int = 160, config: EchoLineConfig | None = None
    ) -> None:
        self.config = cfg = config or EchoLineConfig()
        self._codec = codec
        self._slot_samples = samples_per_slot
        self._max_delay = int(cfg.max_delay_s * FS)
        self._window = int(cfg.window_s * FS)
        # Our audio by slot: enough for a search window plus the longest delay and the tail.
        keep = (self._window + self._max_delay + cfg.canceller.taps) // samples_per_slot + 4
        self._sent: dict[int, bytes] = {}
        self._order: deque[int] = deque()
        self._keep = keep
        self._last_slot: tuple[int, float] | None = None  # (slot, when it left)
        self._ptime = samples_per_slot / FS
        self._ssrc: int | None = None
        self._offset = 0  # our position = unwrapped far-end timestamp + offset
        self._last_ts = 0
        self._unwrapped = 0
        self._heard: list[tuple[int, NDArray[np.int16]]] = []
        self._heard_samples = 0
        self._canceller: EchoCanceller | None = None
        self._next_pos: int | None = None
        self._speech_power = self._slot_samples * dbm0_to_power(-40.0)
        self.state = EchoState.SEARCHING
        self.stats = EchoLineStats()

    # ------------------------------------------------------------------ our side

    def sent(self, slot: int, left_at: float, payload: bytes | None) -> None:
        """Slot ``slot`` left at ``left_at`` carrying ``payload`` (G.711), or no audio
        (None: silence, hold, an RFC 4733 event in its place)."""
        self._last_slot = (slot, left_at)
        if self.state is EchoState.NO_ECHO or payload is None:
            return
        self._sent[slot] = payload
        self._order.append(slot)
        while len(self._order) > self._keep:
            self._sent.pop(self._order.popleft(), None)

    def _ours(self, start: int, size: int) -> NDArray[np.int16]:
        """Our samples at positions ``start`` .. ``start + size`` (silence where none)."""
        out = np.zeros(size, dtype=np.int16)
        n = self._slot_samples
        first, last = start // n, (start + size - 1) // n
        for slot in range(first, last + 1):
            payload = self._sent.get(slot)
            if payload is None:
                continue
            pcm = g711.decode(self._codec, payload)
            lo, hi = max(start, slot * n), min(start + size, slot * n + pcm.size)
            if lo < hi:
                out[lo - start : hi - start] = pcm[lo - slot * n : hi - slot * n]
        return out

    # ------------------------------------------------------------------ their side

    def received(
        self, pcm: NDArray[np.int16], ssrc: int, timestamp: int, now: float
    ) -> NDArray[np.int16]:
        """One frame of the far end's audio; what the in-band detector should hear."""
        if self.state is EchoState.NO_ECHO or self._last_slot is None:
            return pcm
        position = self._position(ssrc, timestamp, now)
        if self.state is EchoState.SEARCHING:
            self._search(position, pcm)
            return pcm
        return self._cancel(position, pcm)

    def _position(self, ssrc: int, timestamp: int, now: float) -> int:
        """Where this frame's first sample lies on our timeline."""
        if ssrc != self._ssrc:
            # A new stream (first audio, a re-INVITE, a PBX bridging another leg): anchor
            # its clock again; an echo found on the old one is looked for anew.
            if self._ssrc is not None:
                self.stats.re_anchored += 1
                self._restart()
            assert self._last_slot is not None
            slot, left_at = self._last_slot
            ours_now = round((slot + (now - left_at) / self._ptime) * self._slot_samples)
            self._ssrc, self._last_ts, self._unwrapped = ssrc, timestamp, 0
            # The frame's last sample was taken about when it arrived.
            self._offset = ours_now - self._slot_samples
            return self._offset
        step = (timestamp - self._last_ts) % TS_MOD
        if step >= TS_MOD // 2:
            step -= TS_MOD  # a timestamp from before the last one (RFC 3550 A.1 style)
        self._unwrapped += step
        self._last_ts = timestamp
        return self._unwrapped + self._offset

    def _restart(self) -> None:
        self.state = EchoState.SEARCHING
        self._canceller, self._next_pos = None, None
        self._heard.clear()
        self._heard_samples = 0
        self.stats.delay_samples = None

    # ------------------------------------------------------------------ finding the echo

    def _search(self, position: int, pcm: NDArray[np.int16]) -> None:
        self._heard.append((position, pcm))
        self._heard_samples += pcm.size
        if self._heard_samples < self._window:
            return
        start = self._heard[0][0]
        end = max(p + f.size for p, f in self._heard)
        heard = np.zeros(end - start)
        for p, frame in self._heard:
            heard[p - start : p - start + frame.size] = frame
        self._heard.clear()
        self._heard_samples = 0
        ours = self._ours(start - self._max_delay, heard.size + self._max_delay).astype(float)
        if float(ours @ ours) < self._speech_power * (ours.size / self._slot_samples) * 0.25:
            return  # we were mostly silent: nothing to find an echo of, not an attempt
        self.stats.searches += 1
        delay, peak = _best_lag(heard, ours, self._max_delay)
        if peak >= self.config.min_correlation:
            self.stats.delay_samples, self.stats.correlation = delay, peak
            self._canceller = EchoCanceller(self.config.canceller)
            self.state = EchoState.CANCELLING
        elif self.stats.searches >= self.config.attempts:
            self.stats.correlation = max(self.stats.correlation, peak)
            self.state = EchoState.NO_ECHO
            self._sent.clear()
            self._order.clear()
        else:
            self.stats.correlation = max(self.stats.correlation, peak)

    # ------------------------------------------------------------------ cancelling

    def _cancel(self, position: int, pcm: NDArray[np.int16]) -> NDArray[np.int16]:
        canceller, delay = self._canceller, self.stats.delay_samples
        assert canceller is not None and delay is not None
        if self._next_pos is not None and position != self._next_pos:
            # Lost or reordered frames: the canceller's history is contiguous, so start
            # its input again from here (its filter, the learned echo path, stays).
            canceller.restart_stream()
        self._next_pos = position + pcm.size
        # The echo at position p comes from our sample p - delay (its strongest part); the
        # reference is taken ``lead`` samples later in our timeline, so that strongest
        # part lands on the canceller's tap ``lead`` and the taps before it fit too.
        reference = self._ours(position - delay + self.config.lead, pcm.size)
        self.stats.frames_cancelled += 1
        return canceller.process(reference, pcm)


def _best_lag(
    heard: NDArray[np.float64], ours: NDArray[np.float64], max_lag: int
) -> tuple[int, float]:
    """The lag (0..max_lag) at which ``heard`` best matches ``ours`` delayed, and the
    normalised correlation there. ``ours`` starts ``max_lag`` samples before ``heard``."""
    n = heard.size
    size = 1 << int(np.ceil(np.log2(ours.size + n)))
    # corr[k] = sum_i heard[i] * ours[i + k]; the echo of ours[j] is heard at j - max_lag
    # + lag, so lag = max_lag - k.
    corr = np.fft.irfft(np.fft.rfft(ours, size) * np.conj(np.fft.rfft(heard, size)), size)
    corr = corr[: max_lag + 1]
    # Energy of each candidate reference segment, for the normalisation.
    squares = np.concatenate(([0.0], np.cumsum(ours**2)))
    energy = squares[np.arange(max_lag + 1) + n] - squares[np.arange(max_lag + 1)]
    ncc = corr / np.sqrt(energy * float(heard @ heard) + 1e-9)
    k = int(np.argmax(np.abs(ncc)))
    return max_lag - k, float(abs(ncc[k]))
