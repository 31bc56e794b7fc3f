"""One pacing timer for every outgoing RTP stream on the event loop.

Each stream has its own schedule, ``start + n * ptime`` on ``loop.time()`` (never chained
sleeps, which drift: docs/architecture.md §7). The pacer keeps all streams' next deadlines in a
heap and arms a single ``loop.call_at`` for the earliest; when it fires it sends every slot
that is due. One task or timer per stream would cost an event-loop wakeup per packet.

Phases are balanced: a new stream's first slot goes into the least loaded millisecond of
the ptime cycle (its first packet waits at most one ptime). Otherwise calls answered in the
same millisecond would share every deadline, and with hundreds of calls each tick would send
hundreds of packets in a row, the last ones milliseconds late.

After a stall (the loop was blocked) a stream skips the slots it missed and sends only the
current one: it never bursts. The stream is told how many slots it skipped, so its RTP
timestamp keeps counting sampling time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

log = logging.getLogger("voipalert.net.rtp")

PHASE_BUCKET_S: Final = 0.001


class PacedStream(Protocol):
    def on_slot(self, slot: int, skipped: int, deadline: float) -> None:
        """Send the packet of ``slot``, after ``skipped`` slots that were missed."""


@dataclass(slots=True)
class _Entry:
    stream: PacedStream
    start: float
    ptime: float
    bucket: tuple[float, int]
    slot: int = 0
    active: bool = True


class RtpPacer:
    """Ticks every registered stream on its own deadline schedule, from one timer."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        on_lateness: Callable[[float], None] | None = None,
    ) -> None:
        self._loop = loop
        self._epoch = loop.time()
        # (deadline, tie-breaker, entry): tuples compare in C, dataclasses would not.
        self._heap: list[tuple[float, int, _Entry]] = []
        self._entries: dict[int, _Entry] = {}
        self._order = itertools.count()
        self._load: dict[tuple[float, int], int] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._on_lateness = on_lateness
        self.skipped_slots = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def add(self, stream: PacedStream, *, ptime: float, start: float | None = None) -> float:
        """Start pacing ``stream``; returns when its slot 0 is due. Without ``start`` the
        pacer picks the least loaded phase within the next ``ptime``."""
        if id(stream) in self._entries:
            raise ValueError("stream is already paced")
        begin = self._balanced_start(ptime) if start is None else start
        bucket = self._bucket(begin, ptime)
        self._load[bucket] = self._load.get(bucket, 0) + 1
        entry = _Entry(stream, begin, ptime, bucket)
        self._entries[id(stream)] = entry
        heapq.heappush(self._heap, (begin, next(self._order), entry))
        self._arm()
        return begin

    def remove(self, stream: PacedStream) -> None:
        entry = self._entries.pop(id(stream), None)
        if entry is None:
            return
        entry.active = False  # lazily dropped from the heap
        self._load[entry.bucket] -= 1
        if not self._entries and self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, math.inf
            self._heap.clear()

    def _bucket(self, start: float, ptime: float) -> tuple[float, int]:
        phase = (start - self._epoch) % ptime
        return ptime, int(phase / PHASE_BUCKET_S)

    def _balanced_start(self, ptime: float) -> float:
        now = self._loop.time()
        buckets = max(1, round(ptime / PHASE_BUCKET_S))
        here = self._bucket(now, ptime)[1]
        # Least loaded bucket; among equals the one coming soonest.
        best = min(
            range(buckets),
            key=lambda b: (self._load.get((ptime, b), 0), (b - here) % buckets),
        )
        cycle = math.floor((now - self._epoch) / ptime)
        start = self._epoch + cycle * ptime + (best + 0.5) * PHASE_BUCKET_S
        while start < now:
            start += ptime
        return start

    def _arm(self) -> None:
        heap = self._heap
        while heap and not heap[0][2].active:
            heapq.heappop(heap)
        if not heap:
            return
        when = heap[0][0]
        if when < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(when, self._tick)
            self._timer_at = when

    def _tick(self) -> None:
        self._timer, self._timer_at = None, math.inf
        # Handle everything due by now (timers fire late, and sometimes a little early:
        # docs/architecture.md §6), then re-arm for the earliest deadline left.
        now = self._loop.time()
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, order, entry = heapq.heappop(heap)
            if entry.active and self._run(entry, now):
                heapq.heappush(heap, (entry.start + entry.slot * entry.ptime, order, entry))
        self._arm()

    def _run(self, entry: _Entry, now: float) -> bool:
        due = max(entry.slot, math.floor((now - entry.start) / entry.ptime + 1e-9))
        skipped = due - entry.slot
        deadline = entry.start + due * entry.ptime
        entry.slot = due + 1
        self.skipped_slots += skipped
        try:
            entry.stream.on_slot(due, skipped, deadline)
        except Exception:
            # A stream's failure must not stop every other call's audio.
            log.exception("RTP stream failed in its send slot; it is no longer paced")
            self.remove(entry.stream)
            return False
        if self._on_lateness is not None:
            self._on_lateness(self._loop.time() - deadline)
        return True


# Keyed by id(loop). A pacer refers to its loop, so a WeakKeyDictionary would never let go;
# closed loops are pruned instead (a loop's id can only be reused after it is freed).
_SHARED: dict[int, RtpPacer] = {}


def shared_pacer() -> RtpPacer:
    """The running loop's pacer, created on first use."""
    loop = asyncio.get_running_loop()
    for key in [k for k, p in _SHARED.items() if p.loop.is_closed()]:
        del _SHARED[key]
    pacer = _SHARED.get(id(loop))
    if pacer is None:
        pacer = _SHARED[id(loop)] = RtpPacer(loop)
    return pacer
