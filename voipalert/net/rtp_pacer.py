"""One pacing timer for every outgoing RTP stream on the event loop.

Each stream has its own schedule, ``start + n * ptime`` on ``loop.time()`` (never chained
sleeps, which drift: STYLE.md pitfall 3). The pacer keeps all streams' next deadlines in a
heap and arms a single ``loop.call_at`` for the earliest; when it fires it sends every slot
that is due. One task or timer per stream would cost an event-loop wakeup per packet; with
hundreds of calls that alone exceeds the 20 ms budget, and the wakeups crowd each other.

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
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger("voipalert.net.rtp")


class PacedStream(Protocol):
    def on_slot(self, slot: int, skipped: int, deadline: float) -> None:
        """Send the packet of ``slot``, after ``skipped`` slots that were missed."""


@dataclass(order=True, slots=True)
class _Entry:
    deadline: float
    order: int
    stream: PacedStream = field(compare=False)
    start: float = field(compare=False)
    ptime: float = field(compare=False)
    slot: int = field(compare=False)
    active: bool = field(default=True, compare=False)


class RtpPacer:
    """Ticks every registered stream on its own deadline schedule, from one timer."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        on_lateness: Callable[[float], None] | None = None,
    ) -> None:
        self._loop = loop
        self._heap: list[_Entry] = []
        self._entries: dict[int, _Entry] = {}
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._on_lateness = on_lateness
        self.skipped_slots = 0

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, stream: PacedStream, *, ptime: float, start: float | None = None) -> None:
        """Start pacing ``stream``: slot 0 is due at ``start`` (default: now)."""
        if id(stream) in self._entries:
            raise ValueError("stream is already paced")
        begin = self._loop.time() if start is None else start
        entry = _Entry(begin, next(self._order), stream, begin, ptime, 0)
        self._entries[id(stream)] = entry
        heapq.heappush(self._heap, entry)
        self._arm()

    def remove(self, stream: PacedStream) -> None:
        entry = self._entries.pop(id(stream), None)
        if entry is not None:
            entry.active = False  # lazily dropped from the heap
        if not self._entries and self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, math.inf
            self._heap.clear()

    def _arm(self) -> None:
        while self._heap and not self._heap[0].active:
            heapq.heappop(self._heap)
        if not self._heap:
            return
        when = self._heap[0].deadline
        if when < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(when, self._tick)
            self._timer_at = when

    def _tick(self) -> None:
        self._timer, self._timer_at = None, math.inf
        # Handle everything due by now (timers fire late, and sometimes a little early:
        # STYLE.md pitfall 1), then re-arm for the earliest deadline left.
        now = self._loop.time()
        heap = self._heap
        while heap and heap[0].deadline <= now:
            entry = heapq.heappop(heap)
            if entry.active:
                self._run(entry, now)
                heapq.heappush(heap, entry)
        self._arm()

    def _run(self, entry: _Entry, now: float) -> None:
        due = max(entry.slot, math.floor((now - entry.start) / entry.ptime + 1e-9))
        skipped = due - entry.slot
        deadline = entry.start + due * entry.ptime
        entry.slot = due + 1
        entry.deadline = entry.start + entry.slot * entry.ptime
        self.skipped_slots += skipped
        try:
            entry.stream.on_slot(due, skipped, deadline)
        except Exception:
            # A stream's failure must not stop every other call's audio.
            log.exception("RTP stream failed in its send slot; it is no longer paced")
            self._entries.pop(id(entry.stream), None)
            entry.active = False
            return
        if self._on_lateness is not None:
            self._on_lateness(self._loop.time() - deadline)


_SHARED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RtpPacer] = (
    weakref.WeakKeyDictionary()
)


def shared_pacer() -> RtpPacer:
    """The running loop's pacer, created on first use."""
    loop = asyncio.get_running_loop()
    pacer = _SHARED.get(loop)
    if pacer is None:
        pacer = _SHARED[loop] = RtpPacer(loop)
    return pacer
