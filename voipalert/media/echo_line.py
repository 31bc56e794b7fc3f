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
§5.1: the timestamp is the sampling instant). A frame held up on its way (or by a stall of
our loop) would anchor late, so over the stream's first ``ANCHOR_FRAMES`` frames the
anchor moves to the least delayed of them (a minimum filter, as NTP's), and the search
starts after them. The echo of our sample ``s`` then sits at
position ``s + D``: ``D`` covers the round trip, the far end's jitter buffer and the
hybrid, unknown but steady. It is found by cross-correlating two seconds of what came back
with what we sent over the lags 0 to ``max_delay_s`` (once we have spoken enough): a clear
peak means the line echoes, and the canceller starts with the reference ``lead`` samples
ahead of the echo; no peak after ``attempts`` windows of our speech means it does not, and
the received audio goes to the detector untouched, at no cost, for the rest of the call.

The search is spread over the frames as they arrive, so that no single call blocks the
event loop (docs/capacity.md §4): each frame adds its share to a cross-correlation over the
lags at a quarter of the sample rate (sums of four samples, lags in steps of 4, one small
FFT per 200 ms block), and once the window is full only the 13 full-rate lags around the
best coarse one are computed.
What we sent is decoded once, into a ring of samples by position, when a frame needs it
(never in ``sent``, which runs in the sender's time slot).

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
DECIMATION: Final = 4  # the coarse search's step, in samples
COARSE_BLOCK: Final = 1600  # samples of what came back per coarse step (200 ms)
_REFINE: Final = 6  # full-rate lags either side of the best coarse lag
ANCHOR_FRAMES: Final = 25  # a new stream's first 0.5 s: its anchor is the least delayed


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
    window_restarts: int = 0  # search windows dropped for a frame far outside them


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
        if self._max_delay % DECIMATION:
            raise ValueError(f"max_delay_s must be a whole number of {DECIMATION} samples")
        # Our audio by position, a ring long enough for a search window plus the longest
        # delay, the refinement's margin and a few slots of reordering.
        need = self._window + self._max_delay + cfg.canceller.taps + 8 * samples_per_slot
        self._ring_size = 1 << int(np.ceil(np.log2(need)))
        self._ring: NDArray[np.int16] | None = None
        self._filled = 0  # positions below this are in the ring (or were, once)
        self._unsent: deque[tuple[int, bytes | None]] = deque()  # (slot, payload) to decode
        self._last_slot: tuple[int, float] | None = None  # (slot, when it left)
        self._ptime = samples_per_slot / FS
        self._ssrc: int | None = None
        self._offset = 0  # our position = unwrapped far-end timestamp + offset
        self._anchoring = 0  # frames left in which the offset may still move earlier
        self._last_ts = 0
        self._unwrapped = 0
        self._heard: list[tuple[int, NDArray[np.int16]]] = []
        self._heard_samples = 0
        lags = self._max_delay // DECIMATION + 1
        self._corr = np.zeros(lags)  # coarse lag m: our audio max_delay - 4 m earlier
        self._ours_energy = np.zeros(lags)
        self._block = np.zeros(COARSE_BLOCK)  # what came back, by position from _block_at
        self._block_at: int | None = None
        self._block_used = False
        self._fft_size = 1 << int(np.ceil(np.log2((self._max_delay + 2 * COARSE_BLOCK) // 4)))
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
        if self.state is EchoState.NO_ECHO:
            return
        self._unsent.append((slot, payload))
        if len(self._unsent) > self._ring_size // self._slot_samples:
            self._unsent.popleft()  # nothing received for seconds: the oldest is out of reach

    def _decode_sent(self) -> None:
        """Move what was sent since the last frame into the ring (silence where nothing
        was: a skipped slot, hold, an RFC 4733 event)."""
        if not self._unsent:
            return
        if self._ring is None:
            self._ring = np.zeros(self._ring_size, dtype=np.int16)
        ring, size, n = self._ring, self._ring_size, self._slot_samples
        for slot, payload in self._unsent:
            start = slot * n
            if start < self._filled:
                continue  # not after the last one: cannot happen with one pacer
            self._clear(self._filled, start)
            pcm = g711.decode(self._codec, payload) if payload else np.zeros(n, np.int16)
            at = start % size
            if at + pcm.size <= size:
                ring[at : at + pcm.size] = pcm
            else:
                ring[np.arange(start, start + pcm.size) % size] = pcm
            self._filled = max(self._filled, start + pcm.size)
        self._unsent.clear()

    def _clear(self, lo: int, hi: int) -> None:
        """Silence in the ring from position ``lo`` to ``hi`` (slots never sent)."""
        assert self._ring is not None
        if hi <= lo:
            return
        if hi - lo >= self._ring_size:
            self._ring[:] = 0
        else:
            self._ring[np.arange(lo, hi) % self._ring_size] = 0

    def _ours(self, start: int, size: int) -> NDArray[np.int16]:
        """Our samples at positions ``start`` .. ``start + size`` (silence where none)."""
        ring, filled, ring_size = self._ring, self._filled, self._ring_size
        if ring is None:
            return np.zeros(size, dtype=np.int16)
        lo, hi = max(start, filled - ring_size), min(start + size, filled)
        if lo <= start and hi >= start + size and start % ring_size + size <= ring_size:
            at = start % ring_size
            return ring[at : at + size].copy()  # the usual case: one slice
        out = np.zeros(size, dtype=np.int16)
        if lo < hi:
            out[lo - start : hi - start] = ring[np.arange(lo, hi) % ring_size]
        return out

    # ------------------------------------------------------------------ their side

    def received(
        self, pcm: NDArray[np.int16], ssrc: int, timestamp: int, now: float
    ) -> NDArray[np.int16]:
        """One frame of the far end's audio; what the in-band detector should hear."""
        if self.state is EchoState.NO_ECHO or self._last_slot is None:
            return pcm
        position = self._position(ssrc, timestamp, now)
        if self._anchoring:
            return pcm  # the anchor is not settled: nothing to search with yet
        self._decode_sent()
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
            self._ssrc, self._last_ts, self._unwrapped = ssrc, timestamp, 0
            # The frame's last sample was taken about when it arrived.
            self._offset = self._arrived_at(now)
            self._anchoring = ANCHOR_FRAMES
            return self._offset
        step = (timestamp - self._last_ts) % TS_MOD
        if step >= TS_MOD // 2:
            step -= TS_MOD  # a timestamp from before the last one (RFC 3550 A.1 style)
        self._unwrapped += step
        self._last_ts = timestamp
        if self._anchoring:
            self._anchoring -= 1
            # A frame that arrived earlier than the anchor says it could: the anchor's
            # frame was held up; the least delayed frame is the better anchor.
            self._offset = min(self._offset, self._arrived_at(now) - self._unwrapped)
        return self._unwrapped + self._offset

    def _arrived_at(self, now: float) -> int:
        """Our timeline's position one slot before ``now``: where a frame arriving now
        began, had it taken no time to reach us."""
        assert self._last_slot is not None
        slot, left_at = self._last_slot
        ours_now = round((slot + (now - left_at) / self._ptime) * self._slot_samples)
        return ours_now - self._slot_samples

    def _restart(self) -> None:
        self.state = EchoState.SEARCHING
        self._canceller, self._next_pos = None, None
        self._new_window()
        self.stats.delay_samples = None

    def _new_window(self) -> None:
        self._heard.clear()
        self._heard_samples = 0
        self._corr[:] = 0.0
        self._ours_energy[:] = 0.0
        self._block[:] = 0.0
        self._block_at, self._block_used = None, False

    # ------------------------------------------------------------------ finding the echo

    def _search(self, position: int, pcm: NDArray[np.int16]) -> None:
        if self._heard:
            # The window's frames must lie together, after its first: a timestamp that
            # jumps (a hostile or broken far end) would otherwise make the window, and
            # what the search allocates for it, as long as the jump, or fall before the
            # window's start. Such a frame starts a new window.
            first = self._heard[0][0]
            if not first <= position <= first + 2 * self._window:
                self.stats.window_restarts += 1
                self._new_window()
        self._heard.append((position, pcm))
        self._heard_samples += pcm.size
        self._accumulate(position, pcm)
        if self._heard_samples < self._window:
            return
        self._coarse_step()
        start = self._heard[0][0]
        end = max(p + f.size for p, f in self._heard)
        ours = self._ours(start - self._max_delay, end - start + self._max_delay).astype(float)
        spoken = float(np.square(ours).sum())
        if spoken < self._speech_power * (ours.size / self._slot_samples) * 0.25:
            self._new_window()
            return  # we were mostly silent: nothing to find an echo of, not an attempt
        self.stats.searches += 1
        delay, peak = self._refine(start, end)
        self._new_window()
        if peak >= self.config.min_correlation:
            self.stats.delay_samples, self.stats.correlation = delay, peak
            self._canceller = EchoCanceller(self.config.canceller)
            self.state = EchoState.CANCELLING
        elif self.stats.searches >= self.config.attempts:
            self.stats.correlation = max(self.stats.correlation, peak)
            self.state = EchoState.NO_ECHO
            self._unsent.clear()
            self._ring = None  # the memory goes: the line is echo-free for the call
        else:
            self.stats.correlation = max(self.stats.correlation, peak)

    def _accumulate(self, position: int, pcm: NDArray[np.int16]) -> None:
        """Put one frame into the current 200 ms block of what came back; a full block
        adds its share to the coarse correlation (``_coarse_step``). Positions, not
        arrival order, place the samples: a frame after a gap leaves silence, a frame
        from a block already done only counts in the full-rate refinement."""
        if self._block_at is None:
            self._block_at = position - position % DECIMATION
        if position >= self._block_at + 2 * COARSE_BLOCK:
            self._coarse_step()  # a gap of a block or more: start afresh at this frame
            self._block_at = position - position % DECIMATION
        while True:
            at = self._block_at
            lo, hi = max(position, at), min(position + pcm.size, at + COARSE_BLOCK)
            if lo < hi:
                self._block[lo - at : hi - at] = pcm[lo - position : hi - position]
                self._block_used = True
            if position + pcm.size < at + COARSE_BLOCK:
                return
            self._coarse_step()
            self._block_at = at + COARSE_BLOCK

    def _coarse_step(self) -> None:
        """One block's share of the coarse correlation, at a quarter of the rate: the
        block and our audio from ``max_delay`` before it, summed over runs of four samples
        (a crude low-pass; speech and its echo carry most of their power below 1 kHz),
        correlated through one FFT of a few thousand points."""
        if not self._block_used or self._block_at is None:
            return
        heard = self._block.reshape(-1, DECIMATION).sum(axis=1)
        ours = self._ours(self._block_at - self._max_delay, self._max_delay + COARSE_BLOCK)
        coarse = ours.reshape(-1, DECIMATION).sum(axis=1, dtype=np.float64)
        size = self._fft_size
        # corr[m] += sum_j heard[j] * coarse[j + m]: our audio max_delay - 4 m earlier.
        spectrum = np.fft.rfft(coarse, size) * np.conj(np.fft.rfft(heard, size))
        self._corr += np.fft.irfft(spectrum, size)[: self._corr.size]
        squares = np.concatenate(([0.0], np.cumsum(np.square(coarse))))
        self._ours_energy += squares[heard.size :] - squares[: -heard.size]
        self._block[:] = 0.0
        self._block_used = False

    def _refine(self, start: int, end: int) -> tuple[int, float]:
        """The full-rate lag and normalised correlation around the best coarse lag."""
        ncc = np.abs(self._corr) / np.sqrt(self._ours_energy + 1e-9)
        best = self._max_delay - DECIMATION * int(np.argmax(ncc))
        lags = np.arange(
            max(0, best - _REFINE), min(self._max_delay, best + _REFINE) + 1, dtype=np.intp
        )
        heard = np.zeros(end - start)
        for p, frame in self._heard:
            heard[p - start : p - start + frame.size] = frame
        # ours[i] is our sample at start - lags[-1] + i; the echo heard at start + i of
        # our sample start + i - lag.
        ours = self._ours(start - int(lags[-1]), heard.size + int(lags[-1] - lags[0]))
        ours_f = ours.astype(np.float64)
        squares = np.concatenate(([0.0], np.cumsum(np.square(ours_f))))
        offsets = lags[-1] - lags  # where our audio ``lags[k]`` earlier starts in ours_f
        # Products summed by numpy's own loops, not a dot product (nor np.correlate, which
        # calls one): BLAS runs a dot this long on its helper threads, and waits for them
        # spinning; on a busy machine that cost 10-50 ms of the loop (docs/capacity.md §4).
        corr = np.array([(ours_f[o : o + heard.size] * heard).sum() for o in offsets.tolist()])
        energy = squares[offsets + heard.size] - squares[offsets]
        full = np.abs(corr) / np.sqrt(energy * float(np.square(heard).sum()) + 1e-9)
        k = int(np.argmax(full))
        return int(lags[k]), float(full[k])

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
