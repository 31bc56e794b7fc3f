"""RTP pacing: send lateness and CPU for N concurrent streams on loopback.

    python -m benchmarks.rtp_pacing [--streams 10 100 500] [--seconds 10] [--echo]

Each stream is a real ``RtpSession`` (own socket pair from the allocator, G.711 prompt on
repeat) paced by the loop's shared ``RtpPacer``. A separate sink process drains the
packets (with ``--echo`` it sends each one back, so every session also receives, decodes
and runs the in-band detector: a full-duplex call). Lateness is ``send time - deadline``
per packet; CPU is this process's user+system time over wall time (100 % = one core).

Three schedules: "balanced" (what the pacer does: each new stream's phase goes into the
least loaded millisecond of the 20 ms cycle), "random" (phases uniformly random, as if the
pacer did not balance and calls started at random times) and "aligned" (every stream's slot
on the same instant: the worst case, forced; each tick then sends all N packets in a row).

A baseline row first: the lateness of an empty 1 ms asyncio timer, i.e. what the machine's
scheduler gives any process right now. ``--rt`` runs the sender with SCHED_RR, as Asterisk
does with ``-p`` for its media (needs CAP_SYS_NICE; systemd: ``CPUSchedulingPolicy=rr``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import os
import random
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from voipalert.codec import Codec
from voipalert.net.ports import RtpPortAllocator
from voipalert.net.rtp_pacer import PacedStream, RtpPacer
from voipalert.net.rtp_socket import RtpSession, RtpSessionConfig

HOST = "127.0.0.1"
PTIME = 0.020

SINK = r"""
import socket, sys, select, time
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
sock.bind(("127.0.0.1", 0))
sock.setblocking(False)
print(sock.getsockname()[1], flush=True)
echo = sys.argv[1] == "echo"
count = 0
while not select.select([sys.stdin], [], [], 0)[0]:
    # Drain every 2 ms instead of sleeping in select() on the socket: a process blocked on
    # the socket would be woken by every packet, and that wakeup would be charged to the
    # sender's sendto(). A NIC does not need waking; this keeps loopback closer to it.
    time.sleep(0.002)
    while True:
        try:
            data, addr = sock.recvfrom(2048)
        except BlockingIOError:
            break
        count += 1
        if echo:
            sock.sendto(data, addr)
print(count, flush=True)
"""


@dataclass(frozen=True, slots=True)
class Result:
    streams: int
    schedule: str
    echo: bool
    packets: int
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    skipped: int
    cpu_percent: float
    preempted: int  # involuntary context switches: other processes took the CPU
    sink_packets: int


def _cpu() -> tuple[float, int]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_nivcsw


class TaskPerStreamPacer(RtpPacer):
    """The alternative design, for comparison: one asyncio task per stream, each sleeping
    until its own next deadline (still deadline-based, still skipping after a stall)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, *, on_lateness: Callable[[float], None]
    ) -> None:
        super().__init__(loop, on_lateness=on_lateness)
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._late = on_lateness

    def add(self, stream: PacedStream, *, ptime: float, start: float | None = None) -> float:
        loop = asyncio.get_running_loop()
        begin = loop.time() if start is None else start
        self._tasks[id(stream)] = loop.create_task(self._pace(stream, ptime, begin))
        return begin

    def remove(self, stream: PacedStream) -> None:
        task = self._tasks.pop(id(stream), None)
        if task is not None:
            task.cancel()

    async def _pace(self, stream: PacedStream, ptime: float, start: float) -> None:
        loop = asyncio.get_running_loop()
        slot = 0
        while True:
            await asyncio.sleep(max(0.0, start + slot * ptime - loop.time()))
            due = max(slot, math.floor((loop.time() - start) / ptime + 1e-9))
            self.skipped_slots += due - slot
            deadline = start + due * ptime
            stream.on_slot(due, due - slot, deadline)
            self._late(loop.time() - deadline)
            slot = due + 1


class Sink:
    """The far ends: a separate process that drains (or echoes) every packet."""

    def __init__(self, echo: bool) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", SINK, "echo" if echo else "drain"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())

    def stop(self) -> int:
        """Packets it received."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("stop\n")
        self.process.stdin.flush()
        count = int(self.process.stdout.readline() or 0)
        self.process.wait(timeout=5)
        return count


async def _open_sessions(
    streams: int, sink_port: int, pacer: RtpPacer, allocator: RtpPortAllocator, inband: bool
) -> list[RtpSession]:
    prompt = np.random.default_rng(1).normal(0, 3000, 8000 * 3).astype(np.int16)
    sessions = []
    for _ in range(streams):
        ports = allocator.allocate()
        config = RtpSessionConfig(
            local_port=ports.port,
            remote_addr=(HOST, sink_port),
            codec=Codec.PCMU,
            payload_type=0,
            telephone_event_pt=101,
            inband_dtmf=inband,
        )
        session = await RtpSession.open(config, ports=ports, pacer=pacer, rng=random.Random())
        _ = session.play(prompt, repeat=1000)
        sessions.append(session)
    return sessions


def _reseat(sessions: list[RtpSession], pacer: RtpPacer, schedule: str, start: float) -> None:
    """Put every stream on the schedule under test ("balanced" keeps the pacer's phases)."""
    if schedule == "balanced":
        return
    spread = random.Random(2)
    for session in sessions:
        pacer.remove(session)
        offset = 0.0 if schedule == "aligned" else spread.uniform(0, PTIME)
        pacer.add(session, ptime=PTIME, start=start + offset)


async def _run(
    streams: int,
    seconds: float,
    schedule: str,
    echo: bool,
    sink_port: int,
    inband: bool = True,
    pacing: str = "shared",
) -> Result:
    loop = asyncio.get_running_loop()
    lateness: list[float] = []
    pacer = (
        TaskPerStreamPacer(loop, on_lateness=lateness.append)
        if pacing == "task"
        else RtpPacer(loop, on_lateness=lateness.append)
    )
    allocator = RtpPortAllocator(HOST, 30000, 30000 + 4 * streams + 100)
    sessions = await _open_sessions(streams, sink_port, pacer, allocator, inband)
    try:
        _reseat(sessions, pacer, schedule, loop.time() + 0.1)
        await asyncio.sleep(1.0)  # warm-up
        lateness.clear()
        skipped_before = pacer.skipped_slots
        (cpu0, switches0), wall0 = _cpu(), time.perf_counter()
        await asyncio.sleep(seconds)
        cpu1, switches1 = _cpu()
        cpu = (cpu1 - cpu0) / (time.perf_counter() - wall0) * 100
        late = np.array(lateness) * 1000
        skipped = pacer.skipped_slots - skipped_before
    finally:
        for session in sessions:
            await session.close()
    return Result(
        streams=streams,
        schedule=schedule,
        echo=echo,
        packets=late.size,
        p50_ms=float(np.percentile(late, 50)),
        p99_ms=float(np.percentile(late, 99)),
        p999_ms=float(np.percentile(late, 99.9)),
        max_ms=float(late.max()),
        skipped=skipped,
        cpu_percent=cpu,
        preempted=switches1 - switches0,
        sink_packets=0,
    )


_HEADER = (
    f"{'streams':>7} {'schedule':>9} {'duplex':>6} {'packets':>8} {'p50 ms':>7} {'p99 ms':>7} "
    f"{'p99.9 ms':>8} {'max ms':>7} {'skipped':>7} {'CPU %':>6} {'preempt':>7} {'sink':>8}"
)


def _row(r: Result, label: str = "") -> str:
    return (
        f"{r.streams:>7} {r.schedule:>9} {'yes' if r.echo else 'no':>6} {r.packets:>8} "
        f"{r.p50_ms:>7.3f} {r.p99_ms:>7.3f} {r.p999_ms:>8.3f} {r.max_ms:>7.2f} "
        f"{r.skipped:>7} {r.cpu_percent:>6.1f} {r.preempted:>7} {r.sink_packets:>8}{label}"
    )


def _median(results: list[Result]) -> Result:
    def med(name: str) -> float:
        return float(np.median([getattr(r, name) for r in results]))

    first = results[0]
    return Result(
        streams=first.streams,
        schedule=first.schedule,
        echo=first.echo,
        packets=int(med("packets")),
        p50_ms=med("p50_ms"),
        p99_ms=med("p99_ms"),
        p999_ms=med("p999_ms"),
        max_ms=med("max_ms"),
        skipped=int(med("skipped")),
        cpu_percent=med("cpu_percent"),
        preempted=int(med("preempted")),
        sink_packets=int(med("sink_packets")),
    )


async def _baseline(seconds: float) -> tuple[float, float, float]:
    """Lateness of an empty 1 ms timer: what this machine's scheduler alone gives."""
    loop = asyncio.get_running_loop()
    late: list[float] = []
    start = loop.time() + 0.05
    ticks = int(seconds * 1000)
    done = loop.create_future()

    def tick() -> None:
        late.append(loop.time() - (start + len(late) * 0.001))
        if len(late) < ticks:
            loop.call_at(start + len(late) * 0.001, tick)
        elif not done.done():
            done.set_result(None)

    loop.call_at(start, tick)
    await done
    ms = np.array(late) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), float(ms.max())


def _realtime() -> str:
    """Run as a real-time process (what Asterisk's -p does for its media threads)."""
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(10))
    except (OSError, AttributeError) as exc:
        return f"real-time scheduling refused ({exc}); running as a normal process"
    return "SCHED_RR priority 10 (real-time)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[10, 100, 500])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=1, help="runs per row; prints the median")
    parser.add_argument("--echo", action="store_true", help="also receive (full duplex)")
    parser.add_argument(
        "--rt", action="store_true", help="run the sender with SCHED_RR (like Asterisk -p)"
    )
    parser.add_argument(
        "--no-inband", action="store_true", help="with --echo: no in-band DTMF detector"
    )
    parser.add_argument(
        "--pacing",
        choices=("shared", "task"),
        default="shared",
        help="the shared RtpPacer (default) or, for comparison, one asyncio task per stream",
    )
    parser.add_argument(
        "--schedule", choices=("balanced", "random", "aligned", "all"), default="all"
    )
    args = parser.parse_args()
    every = ("balanced", "random", "aligned")
    schedules = every if args.schedule == "all" else (args.schedule,)
    print(f"os.cpu_count() = {os.cpu_count()}; Python {sys.version.split()[0]}; {args.seconds} s")
    print(f"load average {os.getloadavg()[0]:.2f}; scheduling: ", end="")
    print(_realtime() if args.rt else "normal (SCHED_OTHER)", end="")
    print(f"; pacing: {'one task per stream' if args.pacing == 'task' else 'shared RtpPacer'}")
    p50, p99, worst = asyncio.run(_baseline(min(args.seconds, 5.0)))
    print(f"baseline, empty 1 ms asyncio timer: p50 {p50:.3f} ms, p99 {p99:.3f} ms, ", end="")
    print(f"max {worst:.2f} ms")
    if args.echo:
        detector = "off" if args.no_inband else "on"
        print(f"duplex: each packet comes back; in-band DTMF detector on received audio {detector}")
    print("preempt = involuntary context switches (other processes wanted the CPU)")
    print(_HEADER)
    for streams in args.streams:
        for schedule in schedules:
            results = []
            for _ in range(args.repeat):
                sink = Sink(args.echo)
                try:
                    r = asyncio.run(
                        _run(
                            streams,
                            args.seconds,
                            schedule,
                            args.echo,
                            sink.port,
                            inband=not args.no_inband,
                            pacing=args.pacing,
                        )
                    )
                finally:
                    received = sink.stop()
                results.append(dataclasses.replace(r, sink_packets=received))
                if args.repeat > 1:
                    print(_row(results[-1], "  (run)"), flush=True)
            print(_row(_median(results), "  median" if args.repeat > 1 else ""), flush=True)


if __name__ == "__main__":
    main()
