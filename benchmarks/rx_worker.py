"""What the analysis in worker processes costs the event loop, and the workers (the real
``net.rx_pool``, docs/rx-workers.md).

    python -m benchmarks.rx_worker [--calls 50 200] [--seconds 10] [--workers 1]

For each number of calls: a pool of ``--workers`` processes and that many calls' handles
(in-band key detector and echo line on, as ``[media]`` defaults); every 20 ms, on the
loop's clock, each call hands its handle the slot it sent (our speech, G.711) and a frame it
received (speech-like audio of the far end, no echo: the echo search looks for three
windows of our speech, then gives up, as on most lines). Printed:

* the loop's CPU per second of audio per call (this process: handing over the records,
  the flushes, reading the events) and that as a share of a core; the longest 20 ms tick
  (its thread CPU, so that preemption does not count);
* the workers' CPU (``/proc``), per call and as a share of a core;
* frames dropped because the workers fell behind (none is the aim).

With ``--workers 0`` the same calls are analysed on the loop (``LocalAnalysis``), for
comparison. The machine is shared: the load average is printed with each row.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

from tests.media.dtmf_signals import through_g711
from tests.media.echo_signals import speechlike
from voipalert.codec import Codec
from voipalert.media import g711
from voipalert.media.rx_analysis import AnalysisSpec
from voipalert.net.rx_pool import Analysis, AnalysisPool, LocalAnalysis

SLOT = 160
PTIME = 0.02


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _workers_cpu(pool: AnalysisPool | None) -> float:
    if pool is None:
        return 0.0
    total = 0
    for pid in pool.pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


async def one(calls: int, seconds: float, workers: int) -> str:
    rng = np.random.default_rng(5)
    ours = g711.encode(Codec.PCMU, through_g711(speechlike(rng, seconds, -14.0), Codec.PCMU))
    theirs = g711.encode(
        Codec.PCMU, through_g711(speechlike(rng, seconds, -20.0, f0_hz=200.0), Codec.PCMU)
    )
    spec = AnalysisSpec(Codec.PCMU)
    pool = AnalysisPool(workers) if workers else None
    if pool is not None:
        await pool.start()
    handles: list[Analysis] = [
        pool.attach(spec, lambda _: None) if pool else LocalAnalysis(spec, lambda _: None)
        for _ in range(calls)
    ]
    loop = asyncio.get_running_loop()
    await asyncio.sleep(1.0)  # the workers import numpy: not part of the cost
    slots = int(seconds / PTIME)
    longest = 0.0
    cpu, wcpu, start = _cpu(), _workers_cpu(pool), loop.time()
    for slot in range(slots):
        t0 = time.thread_time()
        now = loop.time()
        lo = slot * SLOT
        payload, frame = ours[lo : lo + SLOT], theirs[lo : lo + SLOT]
        for c, handle in enumerate(handles):
            if handle.wants_sent:
                handle.sent(slot, now, payload)
            handle.received(frame, 0x1000 + c, slot * SLOT, now)
        longest = max(longest, time.thread_time() - t0)
        await asyncio.sleep(max(0.0, start + (slot + 1) * PTIME - loop.time()))
    await asyncio.sleep(0.2)  # the last flush and the events
    loop_cpu, workers_cpu = _cpu() - cpu, _workers_cpu(pool) - wcpu
    dropped = pool.stats.queue_dropped if pool else 0
    for handle in handles:
        handle.close()
    if pool is not None:
        await pool.close()
    audio = slots * PTIME
    per_call = loop_cpu / audio / calls * 1e6
    w_per_call = workers_cpu / audio / calls * 1e6
    return (
        f"{calls:>5} {workers:>7}  {per_call:>7.0f} µs/s {loop_cpu / audio:>6.1%}  "
        f"{longest * 1000:>6.2f} ms  {w_per_call:>7.0f} µs/s {workers_cpu / audio:>6.1%}  "
        f"{dropped:>7}  (load {os.getloadavg()[0]:.1f})"
    )


async def main_async(calls: list[int], seconds: float, workers: int) -> None:
    print(
        f"os.cpu_count() = {os.cpu_count()}; Python {sys.version.split()[0]}; "
        f"load average {os.getloadavg()[0]:.2f} before; {seconds:.0f} s of audio per row"
    )
    print("calls workers  loop per call / share  longest tick  workers per call / share  dropped")
    for n in calls:
        print(await one(n, seconds, workers), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(main_async(args.calls, args.seconds, args.workers))


if __name__ == "__main__":
    main()
