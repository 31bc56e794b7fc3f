"""What moving the received-audio analysis to a worker process would cost the event loop.

    python -m benchmarks.rx_worker [--calls 50] [--seconds 10] [--batch-frames 3]

A measurement for the sketch in docs/capacity.md §4, not the feature: one worker process
(``spawn``) runs, per call, the echo line, the in-band key detector and the beep detector
(``media.echo_line``, ``media.goertzel``, ``media.beep``) on what it is sent through a
pipe. This process plays the event loop's part: every ``--batch-frames`` packets' time it
ships the decoded frames of every call, and the slots each call sent, as one message
(one pipe write for all the calls, as a loop would at the end of an iteration), and reads
back the events found. Not paced: the audio goes as fast as the worker takes it, with at
most two batches in flight.

Printed: this process's CPU per second of audio per call (packing and sending: what the
loop would keep), the longest single send, and the worker's CPU per second of audio per
call (what leaves the loop), each with the share of one core at ``--calls``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from multiprocessing.connection import Connection

import numpy as np

from tests.media.dtmf_signals import through_g711
from tests.media.echo_signals import speechlike
from voipalert.codec import Codec
from voipalert.media import g711
from voipalert.media.beep import BeepDetector
from voipalert.media.echo_line import EchoLine
from voipalert.media.goertzel import DtmfDetector, ToneStarted

FS = 8000
SLOT = 160
PTIME = 0.02


def worker(conn: Connection, calls: int) -> None:
    """The worker: per call an echo line and both detectors; events back per batch."""
    lines = [EchoLine(Codec.PCMU) for _ in range(calls)]
    keys = [DtmfDetector() for _ in range(calls)]
    beeps = [BeepDetector() for _ in range(calls)]
    start = time.process_time()  # after start-up and imports: only the analysis counts
    while True:
        message = conn.recv_bytes()
        if not message:
            break
        header = np.frombuffer(message[:16], dtype=np.int64)
        first_slot, frames = int(header[0]), int(header[1])
        body = np.frombuffer(message[16:], dtype=np.uint8)
        # Per call: ``frames`` slots we sent (G.711) then ``frames`` frames heard (PCM).
        sent = body[: calls * frames * SLOT].reshape(calls, frames, SLOT)
        heard = np.frombuffer(body[calls * frames * SLOT :].tobytes(), dtype=np.int16)
        heard = heard.reshape(calls, frames, SLOT)
        found = 0
        for c in range(calls):
            chunk = []
            for f in range(frames):
                slot = first_slot + f
                lines[c].sent(slot, slot * PTIME, sent[c, f].tobytes())
                pcm = lines[c].received(heard[c, f], 0x1000 + c, slot * SLOT, slot * PTIME)
                chunk.append(pcm)
            pcm = np.concatenate(chunk)
            found += sum(isinstance(e, ToneStarted) for e in keys[c].feed(pcm))
            found += len(beeps[c].feed(pcm))
        conn.send_bytes(np.array([found, 0]).tobytes())
    conn.send_bytes(np.array([0, int((time.process_time() - start) * 1e6)]).tobytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch-frames", type=int, default=3)
    args = parser.parse_args()
    calls, frames = args.calls, args.batch_frames
    print(
        f"os.cpu_count() = {os.cpu_count()}; Python {sys.version.split()[0]}; "
        f"load average {os.getloadavg()[0]:.2f} before; {calls} calls, "
        f"{frames} frames per message"
    )
    rng = np.random.default_rng(5)
    ours = through_g711(speechlike(rng, args.seconds, -14.0), Codec.PCMU)
    theirs = through_g711(speechlike(rng, args.seconds, -20.0, f0_hz=200.0), Codec.PCMU)
    ours_wire = np.frombuffer(g711.encode(Codec.PCMU, ours), dtype=np.uint8)
    batches = ours.size // (SLOT * frames)
    parent, child = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=worker, args=(child, calls), daemon=True
    )
    process.start()
    sends: list[float] = []
    spent = 0.0
    in_flight = 0
    found = 0
    for b in range(batches):
        lo, hi = b * frames * SLOT, (b + 1) * frames * SLOT
        p0, t0 = time.process_time(), time.thread_time()
        # Every call's slots and frames (the same audio for each: the cost is the same).
        sent = np.broadcast_to(ours_wire[lo:hi], (calls, hi - lo))
        heard = np.broadcast_to(theirs[lo:hi], (calls, hi - lo))
        header = np.array([b * frames, frames], dtype=np.int64)
        parent.send_bytes(header.tobytes() + sent.tobytes() + heard.tobytes())
        sends.append(time.thread_time() - t0)
        spent += time.process_time() - p0
        in_flight += 1
        while in_flight >= 2 or (b == batches - 1 and in_flight):
            found += int(np.frombuffer(parent.recv_bytes(), dtype=np.int64)[0])
            in_flight -= 1
    parent.send_bytes(b"")
    worker_cpu = int(np.frombuffer(parent.recv_bytes(), dtype=np.int64)[1]) / 1e6
    process.join(5)
    audio_s = batches * frames * PTIME
    loop_us = spent / audio_s / calls * 1e6
    worker_us = worker_cpu / audio_s / calls * 1e6
    print(
        f"loop side (pack + one pipe write per batch): {loop_us:.0f} µs/s per call, "
        f"{loop_us * calls / 1e4:.1f} % of a core at {calls} calls; "
        f"longest send {max(sends) * 1e3:.2f} ms"
    )
    print(
        f"worker (echo search, key and beep detectors): {worker_us:.0f} µs/s per call, "
        f"{worker_us * calls / 1e4:.1f} % of a core at {calls} calls (events found: {found})"
    )
    print(f"load average {os.getloadavg()[0]:.2f} after")


if __name__ == "__main__":
    main()
