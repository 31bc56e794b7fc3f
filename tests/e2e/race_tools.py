"""Instruments for the call-lifecycle race tests: what a test must see from outside the
process to say that a call ended cleanly.

* ``RtpSniffer``: every UDP packet on the loopback interface, kernel-timestamped, kept as
  (time, source port, destination port), so a test can tell when our RTP to a phone really
  stopped (an AF_PACKET socket: needs root, which CI has).
* ``HttpProbe``: asks ``/healthz`` and the alert list every 100 ms on new connections and
  keeps the slowest answer: the API must answer within a second during and after any race.
* ``open_fds``: the descriptors a process holds, to compare with its baseline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import aiohttp

ETH_P_IP: Final = 0x0800
SO_TIMESTAMPNS: Final = 35  # Linux <asm-generic/socket.h>; not exported by the socket module
UDP: Final = 17


@dataclass(frozen=True, slots=True)
class Packet:
    at: float  # seconds since the epoch, from the kernel
    sport: int
    dport: int


class RtpSniffer:
    """Captures the UDP packets whose source port lies in ``ports`` (our RTP range)."""

    def __init__(self, ports: range) -> None:
        self._ports = ports
        self._packets: list[Packet] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
        self._sock.bind(("lo", ETH_P_IP))
        self._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, name="rtp-sniffer", daemon=True)

    def __enter__(self) -> RtpSniffer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, ancillary, _, address = self._sock.recvmsg(128, 64)
            except TimeoutError:
                continue
            except OSError:
                return
            if address[2] == socket.PACKET_OUTGOING:
                continue  # loopback shows each packet twice: keep the delivery
            packet = self._parse(data, ancillary)
            if packet is not None:
                with self._lock:
                    self._packets.append(packet)

    def _parse(self, data: bytes, ancillary: list[tuple[int, int, bytes]]) -> Packet | None:
        if len(data) < 28 or data[0] >> 4 != 4 or data[9] != UDP:
            return None
        header = (data[0] & 0x0F) * 4
        sport, dport = struct.unpack_from("!HH", data, header)
        if sport not in self._ports:
            return None
        at = time.time()  # noqa: TID251  # wall clock, to compare with stored UTC times
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                seconds, nanos = struct.unpack_from("qq", value)
                at = seconds + nanos / 1e9
        return Packet(at, sport, dport)

    def last_to(self, dports: range, since: float) -> float | None:
        """When the last packet from our range to ``dports`` left, after ``since``."""
        with self._lock:
            times = [p.at for p in self._packets if p.dport in dports and p.at >= since]
        return max(times) if times else None

    def flows(self, since: float) -> dict[tuple[int, int], int]:
        """Packets per (our port, their port) since ``since``: for failure messages."""
        counts: dict[tuple[int, int], int] = {}
        with self._lock:
            for p in self._packets:
                if p.at >= since:
                    counts[(p.sport, p.dport)] = counts.get((p.sport, p.dport), 0) + 1
        return counts

    def count_to(self, dports: range, since: float, until: float) -> int:
        with self._lock:
            return sum(1 for p in self._packets if p.dport in dports and since <= p.at <= until)


@dataclass
class HttpProbe:
    base: str
    token: str
    interval: float = 0.1
    slowest: float = 0.0
    slowest_path: str = ""
    failures: list[str] = field(default_factory=list)
    answered: int = 0
    running: asyncio.Event = field(default_factory=asyncio.Event)
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    async def pause(self) -> None:
        """Stop asking (after the request in flight), e.g. to count descriptors."""
        self.running.clear()
        await self.idle.wait()

    def resume(self) -> None:
        self.running.set()

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(force_close=True)  # a new connection each time
        timeout = aiohttp.ClientTimeout(total=5)
        headers = {"Authorization": f"Bearer {self.token}"}
        self.running.set()
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            while True:
                if not self.running.is_set():
                    self.idle.set()
                    await self.running.wait()
                    self.idle.clear()
                for path in ("/healthz", "/api/v1/alerts?limit=1"):
                    started = time.monotonic()
                    try:
                        async with http.get(self.base + path, headers=headers) as response:
                            await response.read()
                            if response.status != 200:
                                self.failures.append(f"{path}: {response.status}")
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        self.failures.append(f"{path}: {exc!r}")
                    took = time.monotonic() - started
                    if took > self.slowest:
                        self.slowest, self.slowest_path = took, path
                    self.answered += 1
                await asyncio.sleep(self.interval)


@contextlib.asynccontextmanager
async def probing(base: str, token: str) -> AsyncIterator[HttpProbe]:
    probe = HttpProbe(base, token)
    task = asyncio.create_task(probe.run())
    try:
        yield probe
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def open_fds(pid: int) -> list[str]:
    """What process ``pid`` has open (the targets of /proc/PID/fd)."""
    fds = []
    for name in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            fds.append(os.readlink(f"/proc/{pid}/fd/{name}"))
    return sorted(fds)


def parse_time(text: str | None) -> float | None:
    """An API timestamp as seconds since the epoch."""
    if text is None:
        return None
    return datetime.fromisoformat(text).astimezone(UTC).timestamp()
