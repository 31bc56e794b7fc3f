"""One pacing timer for every outgoing RTP stream on the event loop.

Each stream has its own schedule, ``start + n * ptime`` on ``loop.time()`` (never chained
sleeps, which drift: docs/architecture.md §7). Streams on the same grid of deadlines form a
group; the pacer keeps the groups' next deadlines in a heap and arms a single
``loop.call_at`` for the earliest; when it fires it sends every slot that is due, a group
at a time. One task or timer per stream would cost an event-loop wakeup per packet, and one
heap entry per stream a push and a pop per packet (docs/realtime.md §5).

Phases are balanced: a new stream's first slot goes into the least loaded millisecond of
the ptime cycle (its first packet waits at most one ptime). Otherwise calls answered in the
same millisecond would share every deadline, and with hundreds of calls each tick would send
hundreds of packets in a row, the last ones milliseconds late.

The timer is not the only way in: ``poll`` sends what is due from inside another callback.
One turn of the event loop runs every callback that became ready before it looks at its
timers again, and at hundreds of calls a turn runs hundreds of receive callbacks (15-20 ms
measured at 200 calls: ``python -m benchmarks.concurrent_calls --profile``); a slot due
early in that turn waited for all of them. The RTP sessions poll after each datagram they
handle, so a slot waits for one callback at most, not for the turn (docs/realtime.md §5).

After a stall (the loop was blocked) the slots still within ``catch_up`` of now are sent at
once, in order, each with its own timestamp: the callee's jitter buffer (40-60 ms in the
usual phones and PBXs) still plays a packet that late, so a stall shorter than that costs
no audio. Older slots are skipped: a packet the far end would only discard is not sent, and
a long stall never turns into a long burst. The stream is told how many slots it skipped,
so its RTP timestamp keeps counting sampling time (docs/realtime.md §1).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

log = logging.getLogger("voipalert.net.rtp")

PHASE_BUCKET_S: Final = 0.001
CATCH_UP_S: Final = 0.06
"""How late a slot may still be sent after a stall: the depth of a usual jitter buffer."""
_ON_GRID: Final = 0.5
"""A member's slot is this tick's when it lies within half a ptime of the deadline. The
members of a group are on one grid to the nanosecond, but the group's deadline is advanced
by ptime at every tick and the loop's clock counts seconds since boot: a float's last bit
is 7 ps at half a day of uptime and 2 ns after a hundred days, and the deadline drifts off
the grid a new stream's start is computed on. With a nanosecond's tolerance a stream that
joined a group a tenth of a microsecond after its drifted deadline was passed over at that
tick and lost its slot 0 at the next (seen at 150-200 calls: the first 20 ms of one call in
ten)."""


class PacedStream(Protocol):
    def on_slot(self, slot: int, skipped: int, deadline: float) -> None:
        """Send the packet of ``slot``, after ``skipped`` slots that were missed."""


@dataclass(slots=True)
class _Member:
    stream: PacedStream
    first: float  # the deadline of its slot 0
    bucket: tuple[float, int]
    slot: int = 0  # the next slot to send


@dataclass(slots=True)
class _Group:
    """Streams whose deadlines fall on one grid, ``next_at + k * ptime``: every stream the
    pacer places itself lands on one of the ptime/1 ms grids, so a tick of the group sends
    all of them with one heap operation between them, not one per packet."""

    ptime: float
    next_at: float
    members: dict[int, _Member] = field(default_factory=dict)
    snapshot: tuple[_Member, ...] | None = None  # members as of the last change
    active: bool = True


class RtpPacer:
    """Ticks every registered stream on its own deadline schedule, from one timer."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        on_lateness: Callable[[float], None] | None = None,
        catch_up: float = CATCH_UP_S,
    ) -> None:
        if catch_up < 0:
            raise ValueError("catch_up cannot be negative")
        self._loop = loop
        self._catch_up = catch_up
        self._epoch = loop.time()
        # (deadline, tie-breaker, group): tuples compare in C, dataclasses would not.
        self._heap: list[tuple[float, int, _Group]] = []
        self._groups: dict[tuple[float, int], _Group] = {}
        self._where: dict[int, tuple[tuple[float, int], _Group]] = {}
        self._order = itertools.count()
        self._load: dict[tuple[float, int], int] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._on_lateness = on_lateness
        self._ticking = False
        self.skipped_slots = 0
        self.polled_ticks = 0  # ticks run by ``poll`` ahead of the timer

    def __len__(self) -> int:
        return len(self._where)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def add(self, stream: PacedStream, *, ptime: float, start: float | None = None) -> float:
        """Start pacing ``stream``; returns when its slot 0 is due. Without ``start`` the
        pacer picks the least loaded phase within the next ``ptime``."""
        if id(stream) in self._where:
            raise ValueError("stream is already paced")
        begin = self._balanced_start(ptime) if start is None else start
        bucket = self._bucket(begin, ptime)
        self._load[bucket] = self._load.get(bucket, 0) + 1
        # The grid: the phase within the cycle, to the nanosecond (balanced starts are
        # bucket centres computed one way, so they share it exactly).
        key = (ptime, round(((begin - self._epoch) % ptime) * 1e9))
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(ptime, begin)
            heapq.heappush(self._heap, (begin, next(self._order), group))
        elif begin < group.next_at - ptime / 2:
            # A start before the group's next tick (an explicit start in the past): the
            # group ticks from the earlier point; members not yet due are passed over.
            # (Half a ptime, not equality: see _ON_GRID.)
            group.active = False
            group = self._groups[key] = _Group(ptime, begin, group.members)
            for other in group.members:
                self._where[other] = (key, group)
            heapq.heappush(self._heap, (begin, next(self._order), group))
        group.members[id(stream)] = _Member(stream, begin, bucket)
        group.snapshot = None
        self._where[id(stream)] = (key, group)
        self._arm()
        return begin

    def remove(self, stream: PacedStream) -> None:
        where = self._where.pop(id(stream), None)
        if where is None:
            return
        key, group = where
        member = group.members.pop(id(stream))
        group.snapshot = None
        self._load[member.bucket] -= 1
        if not group.members:
            group.active = False  # lazily dropped from the heap
            del self._groups[key]
        if not self._where and self._timer is not None:
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

    def poll(self) -> None:
        """Send what is due now, from inside another callback (the module's docstring says
        why). Costs one clock read when nothing is due."""
        if self._timer_at > self._loop.time() or self._ticking:
            return
        if self._timer is not None:
            self._timer.cancel()  # it would find nothing due; _tick arms the next
        self.polled_ticks += 1
        self._tick()

    def _tick(self) -> None:
        self._timer, self._timer_at = None, math.inf
        self._ticking = True
        try:
            self._send_due()
        finally:
            self._ticking = False
            self._arm()  # whatever happened, the next deadline keeps its timer

    def _send_due(self) -> None:
        # Handle everything due by now (timers fire late, and sometimes a little early:
        # docs/architecture.md §6), then re-arm for the earliest deadline left.
        now = self._loop.time()
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, order, group = heapq.heappop(heap)
            if group.active:
                self._run(group, now)
                heapq.heappush(heap, (group.next_at, order, group))

    def _run(self, group: _Group, now: float) -> None:
        ptime = group.ptime
        # The latest deadline of the grid that is due; after a stall, the ones before it
        # within catch_up are sent with it, older ones are skipped.
        behind = max(0, math.floor((now - group.next_at) / ptime + 1e-9))
        deadline = group.next_at + behind * ptime
        group.next_at = deadline + ptime
        recent = min(behind, math.floor((self._catch_up - (now - deadline)) / ptime + 1e-9))
        members = group.snapshot
        if members is None:
            members = group.snapshot = tuple(group.members.values())
        for member in members:
            if member.first > deadline + ptime * _ON_GRID or not group.active:
                continue  # joined for a later slot, or the group was replaced meanwhile
            due = round((deadline - member.first) / ptime)
            first = max(member.slot, due - max(recent, 0))
            skipped = first - member.slot
            member.slot = due + 1
            self.skipped_slots += skipped
            if first == due:
                self._send(member, due, skipped, deadline)
                continue
            for slot in range(first, due + 1):  # a catch-up burst, oldest first
                if group.members.get(id(member.stream)) is not member:
                    break  # removed by a callback meanwhile
                if not self._send(member, slot, skipped, member.first + slot * ptime):
                    break
                skipped = 0

    def _send(self, member: _Member, slot: int, skipped: int, deadline: float) -> bool:
        try:
            member.stream.on_slot(slot, skipped, deadline)
        except Exception:
            # A stream's failure must not stop every other call's audio.
            log.exception("RTP stream failed in its send slot; it is no longer paced")
            self.remove(member.stream)
            return False
        if self._on_lateness is not None:
            self._on_lateness(self._loop.time() - deadline)
        return True
