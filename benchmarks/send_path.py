"""What one RTP packet costs us, beside a plain asyncio sender, in one run.

    python -m benchmarks.send_path [--streams 1000] [--seconds 5] [--repeat 3] [--srtp]

Three senders of N streams of 20 ms packets each, to a sink in another process, taking
turns in the same run (so the machine's load is the same for each), sender only:

* ``plain``: the floor for Python on asyncio. A wheel of 20 one-millisecond buckets, one
  ``call_at`` per bucket, and per stream one ``sock.sendto`` of a packet built in advance.
* ``pacer``: our ``RtpPacer`` (deadline schedule, skips after a stall, balanced phases)
  driving streams whose slot is that same one ``sendto``: what the scheduling costs.
* ``session``: real ``RtpSession``s (play queue, packetizer, stats): what a call costs.
* ``srtp`` (with ``--srtp``): the same sessions with SDES-SRTP keys, so every packet is
  also protected by libsrtp (AES-128-CM + HMAC-SHA1-80): what encryption adds.

For each: CPU microseconds per packet (user + system of this process, over the packets
sent), the share of a core, send lateness p50/p99 (against each packet's deadline), and
the ratio of CPU per packet to ``plain``. Sockets are non-blocking, as in calls.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import secrets
import socket
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from benchmarks.rtp_pacing import HOST, PTIME, Sink
from voipalert.codec import Codec
from voipalert.net.ports import RtpPortAllocator
from voipalert.net.rtp_pacer import RtpPacer
from voipalert.net.rtp_socket import RtpSession, RtpSessionConfig
from voipalert.sip.sdes import SrtpKeys

PACKET = bytes(12) + b"\xff" * 160


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Figures:
    sender: str
    packets: int
    cpu_us_per_packet: float
    core_percent: float
    p50_ms: float
    p99_ms: float


class _PlainWheel:
    """The plain sender: 20 buckets of streams, bucket b due at start + k * 20 ms + b ms."""

    def __init__(
        self, socks: list[socket.socket], dest: tuple[str, int], late: Callable[[float], None]
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.buckets: list[list[socket.socket]] = [[] for _ in range(20)]
        for n, sock in enumerate(socks):
            self.buckets[n % 20].append(sock)
        self.dest = dest
        self.late = late
        self.sent = 0
        self.start = self.loop.time() + 0.01
        self.tick = 0
        self.running = True
        self.loop.call_at(self.start, self._run)

    def _run(self) -> None:
        if not self.running:
            return
        sendto, dest = socket.socket.sendto, self.dest
        now = self.loop.time()
        while self.start + self.tick * 0.001 <= now:  # every bucket due by now
            for sock in self.buckets[self.tick % 20]:
                try:
                    sendto(sock, PACKET, dest)
                except BlockingIOError:
                    continue
                self.sent += 1
            self.late(self.loop.time() - (self.start + self.tick * 0.001))
            self.tick += 1
        self.loop.call_at(self.start + self.tick * 0.001, self._run)


class _PlainStream:
    """One ``sendto`` per slot, paced by our RtpPacer."""

    def __init__(self, sock: socket.socket, dest: tuple[str, int]) -> None:
        self.sock, self.dest, self.sent = sock, dest, 0

    def on_slot(self, slot: int, skipped: int, deadline: float) -> None:
        try:
            self.sock.sendto(PACKET, self.dest)
        except BlockingIOError:
            return
        self.sent += 1


def _sockets(n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((HOST, 0))
        sock.setblocking(False)
        socks.append(sock)
    return socks


async def _measure(
    seconds: float, count: Callable[[], int], late: list[float]
) -> tuple[int, float, float]:
    await asyncio.sleep(0.5)  # warm-up
    late.clear()
    sent0, cpu0, wall0 = count(), _cpu(), time.perf_counter()
    await asyncio.sleep(seconds)
    sent, cpu, wall = count() - sent0, _cpu() - cpu0, time.perf_counter() - wall0
    return sent, cpu, wall


def _figures(name: str, sent: int, cpu: float, wall: float, late: list[float]) -> Figures:
    ms = np.array(late) * 1000
    return Figures(
        name, sent, 1e6 * cpu / max(sent, 1), 100 * cpu / wall,
        float(np.percentile(ms, 50)), float(np.percentile(ms, 99)),
    )  # fmt: skip


async def plain(n: int, seconds: float, port: int) -> Figures:
    socks = _sockets(n)
    late: list[float] = []
    try:
        wheel = _PlainWheel(socks, (HOST, port), late.append)
        sent, cpu, wall = await _measure(seconds, lambda: wheel.sent, late)
        wheel.running = False
    finally:
        for sock in socks:
            sock.close()
    return _figures("plain", sent, cpu, wall, late)


async def paced(n: int, seconds: float, port: int) -> Figures:
    socks = _sockets(n)
    late: list[float] = []
    pacer = RtpPacer(asyncio.get_running_loop(), on_lateness=late.append)
    streams = [_PlainStream(sock, (HOST, port)) for sock in socks]
    try:
        for stream in streams:
            pacer.add(stream, ptime=PTIME)
        sent, cpu, wall = await _measure(seconds, lambda: sum(s.sent for s in streams), late)
    finally:
        for stream in streams:
            pacer.remove(stream)
        for sock in socks:
            sock.close()
    return _figures("pacer", sent, cpu, wall, late)


async def sessions(n: int, seconds: float, port: int, srtp: bool = False) -> Figures:
    late: list[float] = []
    pacer = RtpPacer(asyncio.get_running_loop(), on_lateness=late.append)
    allocator = RtpPortAllocator(HOST, 40000, 40000 + 4 * n + 100)
    prompt = np.random.default_rng(1).normal(0, 3000, 8000 * 3).astype(np.int16)
    opened: list[RtpSession] = []
    try:
        for _ in range(n):
            ports = allocator.allocate()
            config = RtpSessionConfig(
                local_port=ports.port, remote_addr=(HOST, port), codec=Codec.PCMU, payload_type=0,
                telephone_event_pt=101, inband_dtmf=False,
                srtp=SrtpKeys(secrets.token_bytes(30), secrets.token_bytes(30)) if srtp else None,
            )  # fmt: skip
            session = await RtpSession.open(config, ports=ports, pacer=pacer, rng=random.Random())
            _ = session.play(prompt, repeat=1000)
            opened.append(session)
        sent, cpu, wall = await _measure(
            seconds, lambda: sum(s.stats.packets for s in opened), late
        )
    finally:
        for session in opened:
            await session.close()
    return _figures("srtp" if srtp else "session", sent, cpu, wall, late)


async def srtp_sessions(n: int, seconds: float, port: int) -> Figures:
    return await sessions(n, seconds, port, srtp=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--srtp", action="store_true", help="add the SRTP sessions' turn")
    args = parser.parse_args()
    print(f"os.cpu_count() = {os.cpu_count()}; Python {sys.version.split()[0]}; "
          f"{args.streams} streams, {args.seconds} s per turn, {args.repeat} turns each; "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    runs: dict[str, list[Figures]] = {}
    for _ in range(args.repeat):
        senders = (plain, paced, sessions, *((srtp_sessions,) if args.srtp else ()))
        for sender in senders:
            sink = Sink(echo=False)
            try:
                figures = asyncio.run(sender(args.streams, args.seconds, sink.port))
            finally:
                sink.stop()
            runs.setdefault(figures.sender, []).append(figures)
    floor = statistics.median(f.cpu_us_per_packet for f in runs["plain"])
    print(f"{'sender':>8} {'us/packet':>9} {'x plain':>7} {'core %':>6} {'p50 ms':>6} "
          f"{'p99 ms':>6}   (medians over the turns)")  # fmt: skip
    for name, turns in runs.items():
        cost = statistics.median(f.cpu_us_per_packet for f in turns)
        print(
            f"{name:>8} {cost:>9.2f} {cost / floor:>7.2f} "
            f"{statistics.median(f.core_percent for f in turns):>6.1f} "
            f"{statistics.median(f.p50_ms for f in turns):>6.2f} "
            f"{statistics.median(f.p99_ms for f in turns):>6.2f}"
        )


if __name__ == "__main__":
    main()
