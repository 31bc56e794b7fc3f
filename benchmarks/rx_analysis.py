"""What analysing the far end's audio costs, per call and per stage.

    python -m benchmarks.rx_analysis [--seconds 12] [--repeat 5] [--calls 50]

One call's received audio is fed the way ``net.rtp_socket`` feeds it: a 20 ms frame at a
time into the echo line (``media.echo_line``), then the in-band DTMF detector and the
mailbox-beep detector (``media.beep``), each three frames at a time. Each
stage runs on its own so its cost is its own:

* ``receive path``: what every packet costs before the analysis (``media.receiver``: parse,
  admission, sequence and jitter, G.711 decoding);
* ``dtmf``: the in-band detector on speech-like audio with a key every 2 s, split into
  the grid of single-bin DFTs and cheap pre-tests (``goertzel``) and the full checks on
  the windows that pass them (``spectrum checks``);
* ``beep``: the beep detector on the same audio;
* ``echo search``: the echo line while it looks for an echo of our prompt on a line that
  returns none (three windows of our speech, then it gives up);
* ``echo subtraction``: the echo line once it has found the echo and cancels it, while
  we speak, and while we are silent (the script listening for a key).

For each: CPU microseconds (the process's, helper threads included) per second of received
audio per call, that times ``--calls`` as a share of one core, and the longest single call
into the stage (what blocks the event loop: every other call's next packet waits behind
it) in this thread's CPU time, so that other processes preempting it do not count. Then
what one call runs at once, in each state of its echo line. Medians over ``--repeat``
runs; the core count and the load average are printed with them (the machine is shared).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from tests.media.dtmf_signals import dtmf, through_g711
from tests.media.echo_signals import echo_of, echo_path, speechlike
from voipalert.codec import Codec
from voipalert.media import g711
from voipalert.media.beep import BeepDetector
from voipalert.media.echo_line import EchoLine, EchoState
from voipalert.media.goertzel import DtmfDetector
from voipalert.media.receiver import ReceiverConfig, RtpReceiver
from voipalert.media.rtp import RtpPacket
from voipalert.media.rx_analysis import BEEP_FRAMES, DETECTOR_FRAMES

FS = 8000
RECEIVE = "receive path (parse, checks, decode)"
SLOT = 160
PTIME = 0.02


@dataclass
class Timing:
    """CPU time of each call into one stage: this thread's per call (a shared machine's
    preemptions are not counted, the stage's own work is), and the whole process's in
    total (numpy's BLAS may run helper threads, and their CPU is the stage's cost too)."""

    calls: list[float] = field(default_factory=list)
    process: float = 0.0  # the process's CPU over the same calls: helper threads too

    def timed(self, fn: Callable[[NDArray[np.int16]], object], pcm: NDArray[np.int16]) -> None:
        p0, t0 = time.process_time(), time.thread_time()
        fn(pcm)
        self.calls.append(time.thread_time() - t0)
        self.process += time.process_time() - p0

    @property
    def total(self) -> float:
        return self.process

    @property
    def longest(self) -> float:
        return max(self.calls, default=0.0)


def _far_end(rng: np.random.Generator, seconds: float) -> NDArray[np.int16]:
    """The far party talks, and presses a key every 2 s."""
    talk = speechlike(rng, seconds, -20.0, f0_hz=180.0)
    for at in np.arange(1.0, seconds - 0.2, 2.0):
        key = dtmf("0123456789*#"[int(at) % 12], 0.08, row_dbm0=-12.0)
        start = int(at * FS)
        talk[start : start + key.size] += key
    return through_g711(talk, Codec.PCMU)


def _frames(pcm: NDArray[np.int16]) -> list[NDArray[np.int16]]:
    return [pcm[i : i + SLOT] for i in range(0, pcm.size - SLOT + 1, SLOT)]


def run_dtmf(pcm: NDArray[np.int16]) -> tuple[Timing, Timing, Timing]:
    detector = DtmfDetector()
    analyser = detector._analyser
    examine = analyser._examine
    checks = Timing()

    def timed_examine(*args: object) -> object:
        p0, t0 = time.process_time(), time.thread_time()
        out = examine(*args)  # type: ignore[arg-type]
        checks.calls.append(time.thread_time() - t0)
        checks.process += time.process_time() - p0
        return out

    analyser._examine = timed_examine  # type: ignore[method-assign,assignment]
    goertzel, per_feed = Timing(), Timing()
    frames = _frames(pcm)
    for i in range(0, len(frames) - DETECTOR_FRAMES + 1, DETECTOR_FRAMES):
        chunk = np.concatenate(frames[i : i + DETECTOR_FRAMES])
        before = len(checks.calls)
        p0, t0 = time.process_time(), time.thread_time()
        detector.feed(chunk)
        spent, process = time.thread_time() - t0, time.process_time() - p0
        examined = sum(checks.calls[before:])
        per_feed.calls.append(spent)
        per_feed.process += process
        goertzel.calls.append(spent - examined)
        goertzel.process += process - examined
    return per_feed, goertzel, checks


def run_receive(pcm: NDArray[np.int16]) -> Timing:
    """The receive path before any analysis: parse, admission and sequence checks, jitter,
    G.711 decoding (``media.receiver``), one datagram per frame."""
    receiver = RtpReceiver(ReceiverConfig(Codec.PCMU, 0, 101, ("127.0.0.1", 40000)))
    timing = Timing()
    for n, frame in enumerate(_frames(pcm)):
        data = RtpPacket(0, n, n * SLOT, 0x1234, g711.encode(Codec.PCMU, frame)).serialize()
        now = n * PTIME
        p0, t0 = time.process_time(), time.thread_time()
        receiver.receive(data, ("127.0.0.1", 40000), now)
        timing.calls.append(time.thread_time() - t0)
        timing.process += time.process_time() - p0
    return timing


def run_beep(pcm: NDArray[np.int16]) -> Timing:
    detector = BeepDetector()
    timing = Timing()
    frames = _frames(pcm)
    for i in range(0, len(frames) - BEEP_FRAMES + 1, BEEP_FRAMES):
        timing.timed(detector.feed, np.concatenate(frames[i : i + BEEP_FRAMES]))
    return timing


def run_echo(
    rng: np.random.Generator, seconds: float, *, echoes: bool, pause_at: float | None = None
) -> Timing:
    """Our prompt goes out slot by slot; the far end returns its echo (or unrelated talk).
    Only the calls made in the state of interest are kept."""
    talk = speechlike(rng, seconds, -14.0)
    if pause_at is not None:
        talk[int(pause_at * FS) :] = 0.0  # the prompt ends: the script listens for a key
    ours = through_g711(talk, Codec.PCMU)
    if echoes:
        back = echo_of(ours, echo_path(rng, 40 * 8), 12.0)  # 40 ms round trip, ERL 12 dB
        back += speechlike(rng, seconds, -45.0, f0_hz=200.0)  # line noise and a murmur
    else:
        back = speechlike(rng, seconds, -20.0, f0_hz=200.0)
    theirs = through_g711(back, Codec.PCMU)
    line = EchoLine(Codec.PCMU)
    keep = EchoState.CANCELLING if echoes else EchoState.SEARCHING
    timing = Timing()
    origin = int(rng.integers(0, 1 << 32))
    for n in range(ours.size // SLOT):
        now = n * PTIME
        line.sent(n, now, g711.encode(Codec.PCMU, ours[n * SLOT : (n + 1) * SLOT]))
        frame = theirs[n * SLOT : (n + 1) * SLOT]
        ts = (origin + n * SLOT) % (1 << 32)
        state = line.state
        p0, t0 = time.process_time(), time.thread_time()
        line.received(frame, 0x1234, ts, now + 0.001)
        spent, process = time.thread_time() - t0, time.process_time() - p0
        if state is keep and (pause_at is None or now >= pause_at + 0.1):
            timing.calls.append(spent)
            timing.process += process
    return timing


@dataclass
class Row:
    per_second_us: list[float] = field(default_factory=list)
    longest_ms: list[float] = field(default_factory=list)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="audio per run")
    parser.add_argument("--repeat", type=int, default=5, help="runs; medians are printed")
    parser.add_argument("--calls", type=int, default=50, help="calls for the core share")
    args = parser.parse_args()
    print(
        f"os.cpu_count() = {os.cpu_count()}; Python {sys.version.split()[0]}; "
        f"numpy {np.__version__}; OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}; "
        f"load average {os.getloadavg()[0]:.2f} before"
    )
    rows: dict[str, Row] = {}

    def add(name: str, timing: Timing, audio_s: float) -> None:
        row = rows.setdefault(name, Row())
        row.per_second_us.append(timing.total / audio_s * 1e6)
        row.longest_ms.append(timing.longest * 1e3)

    searched = []
    for r in range(args.repeat):
        rng = np.random.default_rng(100 + r)
        pcm = _far_end(rng, args.seconds)
        audio_s = pcm.size / FS
        add(RECEIVE, run_receive(pcm), audio_s)
        whole, goertzel, checks = run_dtmf(pcm)
        add("dtmf: goertzel + pre-tests", goertzel, audio_s)
        add("dtmf: spectrum checks", checks, audio_s)
        add("dtmf: total", whole, audio_s)
        add("beep detector", run_beep(pcm), audio_s)
        search = run_echo(rng, args.seconds, echoes=False)
        searched.append(len(search.calls) * PTIME)
        add("echo search (while searching)", search, max(len(search.calls), 1) * PTIME)
        cancel = run_echo(rng, args.seconds, echoes=True)
        add("echo subtraction (cancelling)", cancel, max(len(cancel.calls), 1) * PTIME)
        idle = run_echo(rng, args.seconds, echoes=True, pause_at=args.seconds / 2)
        add("echo subtraction (we are silent)", idle, max(len(idle.calls), 1) * PTIME)
    print(
        f"{args.repeat} runs of {args.seconds:g} s of audio per stage, medians; "
        f"the echo search ran {statistics.median(searched):.1f} s before deciding"
    )
    print(
        f"{'stage':34} {'µs CPU / s audio':>17} {f'% core @ {args.calls}':>13} "
        f"{'longest call ms':>16}"
    )
    for name, row in rows.items():
        per_s = statistics.median(row.per_second_us)
        print(
            f"{name:34} {per_s:17.0f} {per_s * args.calls / 1e4:13.1f} "
            f"{statistics.median(row.longest_ms):16.2f}"
        )
    # What one call runs at once: the receive path, the key and beep detectors, and the
    # echo line in one of its states.
    for name, echo in (
        ("a call, line without echo, searching", "echo search (while searching)"),
        ("a call, echoing line, we speak", "echo subtraction (cancelling)"),
        ("a call, echoing line, we listen", "echo subtraction (we are silent)"),
    ):
        per_s = sum(
            statistics.median(rows[stage].per_second_us)
            for stage in (
                "receive path (parse, checks, decode)",
                "dtmf: total",
                "beep detector",
                echo,
            )
        )
        print(f"{name:34} {per_s:17.0f} {per_s * args.calls / 1e4:13.1f}")
    print(f"load average {os.getloadavg()[0]:.2f} after")


if __name__ == "__main__":
    main()
