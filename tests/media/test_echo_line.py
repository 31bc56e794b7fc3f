"""One call's echo handling (media.echo_line), driven the way an RTP session drives it: our
slots leave every 20 ms, the far end's frames arrive with its own timestamps (from a random
origin, across the 32-bit wrap), a network delay and jitter, carrying the echo of what we
sent through a hybrid and, sometimes, a key pressed under it (docs/dtmf.md §3)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from numpy.typing import NDArray

from tests.media.dtmf_signals import dtmf, through_g711
from tests.media.echo_signals import FS, echo_of, echo_path, speechlike
from voipalert.codec import Codec
from voipalert.media import g711
from voipalert.media.dtmf_spectrum import dbm0_to_power
from voipalert.media.echo_line import EchoLine, EchoState
from voipalert.media.goertzel import DtmfDetector, ToneStarted

SLOT = 160
PTIME = 0.02


def _keys(pcm: NDArray[np.int16]) -> str:
    detector = DtmfDetector()
    return "".join(
        e.char for e in detector.feed(pcm) + detector.flush() if isinstance(e, ToneStarted)
    )


@dataclass
class Call:
    """What one call's line carries: our prompt, and what the far end sends back."""

    ours: NDArray[np.int16]
    theirs: NDArray[np.int16]
    network_s: float = 0.03
    jitter_s: float = 0.015
    origin: int = (1 << 32) - 3 * FS  # the far end's timestamps wrap 3 s in
    ssrc: int = 0x1234
    drop: set[int] = field(default_factory=set)
    late: dict[int, float] = field(default_factory=dict)  # frame -> extra delay, seconds

    def play(
        self, line: EchoLine, rng: np.random.Generator
    ) -> tuple[NDArray[np.int16], NDArray[np.int16]]:
        """Run the call through ``line``: (what it heard raw, what it gave the detector)."""
        events: list[tuple[float, int, int]] = []
        for n in range(self.ours.size // SLOT):
            events.append((n * PTIME, 0, n))  # our slot n leaves
            arrival = (n + 1) * PTIME + self.network_s + rng.uniform(0, self.jitter_s)
            arrival += self.late.get(n, 0.0)
            if n not in self.drop:
                events.append((arrival, 1, n))  # their frame n arrives
        raw, heard = [], []
        for at, kind, n in sorted(events):
            if kind == 0:
                payload = g711.encode(Codec.PCMU, self.ours[n * SLOT : (n + 1) * SLOT])
                line.sent(n, at, payload)
            else:
                frame = self.theirs[n * SLOT : (n + 1) * SLOT]
                timestamp = (self.origin + n * SLOT) % (1 << 32)
                raw.append(frame)
                heard.append(line.received(frame, self.ssrc, timestamp, at))
        return np.concatenate(raw), np.concatenate(heard)


def _echoing_call(
    rng: np.random.Generator, *, erl_db: float, bulk: int, key_at: float | None
) -> Call:
    ours = through_g711(speechlike(rng, 6.0), Codec.PCMU)
    echo = echo_of(ours, echo_path(rng, bulk), erl_db)
    if key_at is not None:
        start = int(key_at * FS)
        tone = dtmf("7", 0.08, row_dbm0=-25.0, rng=rng)
        span = slice(start, start + tone.size)
        # The echo over the key is 3 dB weaker than the key: lost without the canceller.
        echo *= np.sqrt(2 * dbm0_to_power(-25.0) / 2 / np.mean(echo[span] ** 2))
        echo[span] += tone
    return Call(ours, through_g711(echo, Codec.PCMU))


@pytest.mark.parametrize("bulk", [40, 900, 2400])
def test_the_echo_is_found_and_a_key_under_it_heard(bulk: int) -> None:
    rng = np.random.default_rng(bulk)
    line = EchoLine(Codec.PCMU)
    raw, heard = _echoing_call(rng, erl_db=6.0, bulk=bulk, key_at=4.5).play(line, rng)
    assert line.state is EchoState.CANCELLING
    assert line.stats.delay_samples is not None
    # Found at the echo path's delay plus what the first frame's network delay and jitter
    # added to the anchor: 30-45 ms, 240-360 samples, and the path's strongest tap.
    assert bulk + 240 <= line.stats.delay_samples <= bulk + 360 + 64
    assert _keys(raw) == ""
    assert _keys(heard) == "7"


@pytest.mark.parametrize("bulk", [37, 1001, 3333])
def test_a_faint_echo_at_any_delay_is_found_by_the_coarse_search(bulk: int) -> None:
    """The search runs at a quarter of the rate, then refines (docs/capacity.md §4): a
    faint echo (ERL 20 dB) at a delay that is no multiple of 4 is found, to the sample
    an exhaustive full-rate search finds, with frames lost and reordered on the way."""
    rng = np.random.default_rng(bulk)
    call = _echoing_call(rng, erl_db=20.0, bulk=bulk, key_at=None)
    call.drop = {30, 31, 77}
    line = EchoLine(Codec.PCMU)
    call.play(line, rng)
    assert line.state is EchoState.CANCELLING
    delay = line.stats.delay_samples
    assert delay is not None
    assert bulk + 240 - 8 <= delay <= bulk + 360 + 64
    # The full-rate correlation over every lag, on the whole call: the same best lag
    # (up to the anchoring of the first frame, which moves every lag alike).
    ours = call.ours.astype(np.float64)
    theirs = call.theirs.astype(np.float64)
    lags = np.arange(0, 4001)
    n = theirs.size - 4000
    corr = [float(theirs[4000 : 4000 + n] @ ours[4000 - k : 4000 - k + n]) for k in lags]
    best = int(lags[int(np.argmax(np.abs(corr)))])
    anchor = delay - best
    # The least delayed of the first frames' network delay and jitter: 30-45 ms (to within
    # a millisecond of rounding where the slots and the arrivals meet).
    assert 240 - 8 <= anchor <= 360
    assert line.stats.correlation >= 0.2


def test_timestamps_that_jump_cannot_make_the_search_allocate_the_jump() -> None:
    """A hostile far end's RTP timestamps leap by a quarter of the 32-bit range every few
    frames, forwards and back: the search window never spans a leap nor takes a frame from
    before its start (it starts again), so what it allocates stays the size of a window,
    and nothing raises."""
    rng = np.random.default_rng(6)
    ours = through_g711(speechlike(rng, 6.0), Codec.PCMU)
    theirs = through_g711(speechlike(rng, 6.0, dbm0=-20.0, f0_hz=210.0), Codec.PCMU)
    line = EchoLine(Codec.PCMU)
    for n in range(ours.size // SLOT):
        line.sent(n, n * PTIME, g711.encode(Codec.PCMU, ours[n * SLOT : (n + 1) * SLOT]))
        leap = (n // 7) % 2 * (1 << 30) - (n % 11 == 0) * 320  # and now and then 40 ms back
        timestamp = (n * SLOT + leap) % (1 << 32)
        frame = theirs[n * SLOT : (n + 1) * SLOT]
        np.testing.assert_array_equal(line.received(frame, 0x77, timestamp, n * PTIME), frame)
    assert line.state is EchoState.SEARCHING
    assert line.stats.searches == 0
    assert line.stats.window_restarts >= 40


def test_a_line_without_echo_is_left_alone_after_three_searches() -> None:
    rng = np.random.default_rng(1)
    ours = through_g711(speechlike(rng, 9.0), Codec.PCMU)
    # The person talking back (another voice, not our echo).
    theirs = through_g711(speechlike(rng, 9.0, dbm0=-30.0, f0_hz=210.0), Codec.PCMU)
    line = EchoLine(Codec.PCMU)
    raw, heard = Call(ours, theirs).play(line, rng)
    assert line.state is EchoState.NO_ECHO
    assert line.stats.searches == 3
    assert line.stats.correlation < 0.2
    np.testing.assert_array_equal(raw, heard)


def test_silence_from_us_is_not_an_attempt() -> None:
    """Before our prompt starts nothing can echo: the search waits instead of giving up."""
    rng = np.random.default_rng(2)
    ours = np.zeros(8 * FS, dtype=np.int16)
    theirs = through_g711(speechlike(rng, 8.0, dbm0=-30.0, f0_hz=210.0), Codec.PCMU)
    line = EchoLine(Codec.PCMU)
    Call(ours, theirs).play(line, rng)
    assert line.state is EchoState.SEARCHING
    assert line.stats.searches == 0


def test_lost_frames_do_not_derail_the_canceller() -> None:
    rng = np.random.default_rng(3)
    call = _echoing_call(rng, erl_db=6.0, bulk=300, key_at=5.0)
    call.drop = {150, 151, 190, 230}  # after the echo is found, before the key
    line = EchoLine(Codec.PCMU)
    _, heard = call.play(line, rng)
    assert line.state is EchoState.CANCELLING
    assert _keys(heard) == "7"


def test_a_new_stream_is_anchored_again() -> None:
    rng = np.random.default_rng(4)
    line = EchoLine(Codec.PCMU)
    _echoing_call(rng, erl_db=12.0, bulk=200, key_at=None).play(line, rng)
    assert line.state is EchoState.CANCELLING
    # A re-INVITE: the far end's stream changes SSRC and timestamp origin.
    frame = np.zeros(SLOT, dtype=np.int16)
    line.sent(400, 8.0, g711.encode(Codec.PCMU, frame))
    line.received(frame, 0x9999, 77, 8.05)
    assert line.stats.re_anchored == 1
    assert _state(line) is EchoState.SEARCHING


def _state(line: EchoLine) -> EchoState:
    return line.state  # read afresh: the line changes state under mypy's narrowing


def test_nothing_heard_before_we_sent_passes_through() -> None:
    line = EchoLine(Codec.PCMU)
    frame = np.arange(SLOT, dtype=np.int16)
    assert line.received(frame, 1, 0, 0.0) is frame


def test_a_first_frame_held_up_does_not_shift_the_anchor() -> None:
    """The stream's first frames are handled 60 ms late (a loaded machine stalled our loop
    when they arrived, or the network held them up): the anchor moves to the least delayed
    of the first frames, so the echo's delay is found where it is, not later."""
    found = []
    for late_first in (0.0, 0.06):
        rng = np.random.default_rng(11)
        line = EchoLine(Codec.PCMU)
        call = _echoing_call(rng, erl_db=6.0, bulk=600, key_at=None)
        # A stall of our loop: frames 0-2 are handled together, when it ends.
        call.jitter_s = 0.0
        call.late = {n: max(0.0, late_first - n * PTIME) for n in range(3)}
        call.play(line, rng)
        assert line.state is EchoState.CANCELLING
        found.append(line.stats.delay_samples)
    assert found[0] is not None and found[1] is not None
    assert abs(found[1] - found[0]) <= 16, found
