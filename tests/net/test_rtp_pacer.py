from __future__ import annotations

import asyncio
import heapq
import math
import time
from collections.abc import Callable
from typing import cast

import pytest

from voipalert.net.rtp_pacer import CATCH_UP_S, RtpPacer


class Recorder:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.slots: list[tuple[int, int, float, float]] = []

    def on_slot(self, slot: int, skipped: int, deadline: float) -> None:
        self.slots.append((slot, skipped, deadline, self.loop.time()))


class Broken:
    def __init__(self) -> None:
        self.calls = 0

    def on_slot(self, slot: int, skipped: int, deadline: float) -> None:
        self.calls += 1
        raise RuntimeError("boom")


async def test_each_stream_keeps_its_own_deadline_schedule() -> None:
    loop = asyncio.get_running_loop()
    pacer = RtpPacer(loop)
    start = loop.time() + 0.01
    streams = [Recorder(loop) for _ in range(3)]
    for i, stream in enumerate(streams):
        pacer.add(stream, ptime=0.02, start=start + i * 0.007)
    await asyncio.sleep(0.25)
    for i, stream in enumerate(streams):
        assert len(stream.slots) >= 3
        expected = 0
        for slot, skipped, deadline, sent in stream.slots:
            # Slots follow each other; a loaded machine may make the pacer skip some.
            assert slot == expected + skipped
            expected = slot + 1
            assert deadline == pytest.approx(start + i * 0.007 + slot * 0.02)
            assert sent >= deadline - 1e-3  # never early (beyond the timer's granularity)
        pacer.remove(stream)
    assert len(pacer) == 0


async def test_a_removed_stream_gets_no_more_slots() -> None:
    loop = asyncio.get_running_loop()
    pacer = RtpPacer(loop)
    stream = Recorder(loop)
    pacer.add(stream, ptime=0.01)
    await asyncio.sleep(0.05)
    pacer.remove(stream)
    count = len(stream.slots)
    await asyncio.sleep(0.05)
    assert len(stream.slots) == count
    pacer.remove(stream)  # idempotent
    with pytest.raises(ValueError, match="already paced"):
        pacer.add(stream, ptime=0.01)
        pacer.add(stream, ptime=0.01)
    pacer.remove(stream)


async def test_a_failing_stream_is_dropped_and_others_keep_going() -> None:
    loop = asyncio.get_running_loop()
    lateness: list[float] = []
    pacer = RtpPacer(loop, on_lateness=lateness.append)
    good, bad = Recorder(loop), Broken()
    pacer.add(bad, ptime=0.01)
    pacer.add(good, ptime=0.01)
    await asyncio.sleep(0.1)
    assert bad.calls == 1
    assert len(good.slots) >= 2
    assert len(pacer) == 1
    assert len(lateness) == len(good.slots)
    pacer.remove(good)


async def test_a_phones_calls_share_its_one_pacer_and_no_pacer_is_global() -> None:
    from voipalert.calls import MediaConfig, Phone
    from voipalert.net import rtp_pacer
    from voipalert.sip.config import UAConfig
    from voipalert.sip.uri import SipUri

    config = UAConfig(
        user="voipalert", domain="127.0.0.1", local_host="127.0.0.1", local_port=5999,
        password="x", registrar=SipUri(host="127.0.0.1", port=5060),
    )  # fmt: skip
    media = MediaConfig("127.0.0.1", "127.0.0.1", 42000, 42020)
    one = Phone(config, ("127.0.0.1", 5999), media)
    other = Phone(config, ("127.0.0.1", 5999), media)
    assert one.pacer() is one.pacer()
    assert one.pacer() is not other.pacer()
    given = RtpPacer(asyncio.get_running_loop())
    assert Phone(config, ("127.0.0.1", 5999), media, pacer=given).pacer() is given
    assert not hasattr(rtp_pacer, "shared_pacer")


async def test_streams_on_one_grid_share_a_group_and_keep_their_own_slots() -> None:
    """Balanced starts put many streams on one grid: they tick together (one heap entry),
    yet each counts its own slots from when it joined; one joining with an explicit start
    before the group's next tick, and one leaving mid-way, disturb nobody."""
    loop = asyncio.get_running_loop()
    pacer = RtpPacer(loop)
    seen: dict[str, list[tuple[int, int]]] = {}

    reached = {5: asyncio.Event(), 8: asyncio.Event()}

    class Stream:
        def __init__(self, name: str) -> None:
            self.name = name
            seen[name] = []

        def on_slot(self, slot: int, skipped: int, deadline: float) -> None:
            seen[self.name].append((slot, skipped))
            if self.name == "b" and len(seen["b"]) in reached:
                reached[len(seen["b"])].set()

    start = loop.time() + 0.05
    a, b, c = Stream("a"), Stream("b"), Stream("c")
    pacer.add(a, ptime=0.01, start=start)
    pacer.add(b, ptime=0.01, start=start + 0.03)  # same grid, three slots later
    await asyncio.sleep(0.015)
    pacer.add(c, ptime=0.01, start=start - 0.02)  # same grid, earlier than its next tick
    assert len(pacer._heap) <= 3  # groups, not streams
    await asyncio.wait_for(reached[5].wait(), 5)
    pacer.remove(a)
    count_a = len(seen["a"])
    await asyncio.wait_for(reached[8].wait(), 5)
    pacer.remove(b)
    pacer.remove(c)
    assert len(seen["a"]) == count_a  # nothing after removal
    for name in "abc":
        slots = [slot for slot, _ in seen[name]]
        skipped = sum(s for _, s in seen[name])
        assert slots == sorted(set(slots)), (name, seen[name])
        # Every slot accounted for: sent, or counted as skipped (a loaded machine stalls).
        assert slots[-1] + 1 == len(slots) + skipped + (slots[0] if name == "c" else 0)
    assert seen["b"][0][0] == 0 and seen["a"][0][0] == 0
    assert len(pacer) == 0


class _Timer:
    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualLoop:
    """Just what the pacer uses of a loop (time, call_at), with time moved by the test:
    a stall is the clock jumping while no timer ran."""

    def __init__(self) -> None:
        self.now = 100.0
        self._timers: list[tuple[float, int, _Timer]] = []
        self._order = 0

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> _Timer:
        handle = _Timer(callback)
        self._order += 1
        heapq.heappush(self._timers, (when, self._order, handle))
        return handle

    def run_until(self, until: float) -> None:
        """Run every timer due by ``until``, each at its own time; then stand at ``until``."""
        while self._timers and self._timers[0][0] <= until:
            when, _, handle = heapq.heappop(self._timers)
            if not handle.cancelled:
                self.now = max(self.now, when)
                handle.callback()
        self.now = until

    def stall(self, seconds: float) -> None:
        """The loop was held: time passes, nothing runs; then the due timers run late."""
        self.now += seconds
        self.run_until(self.now)


def _pacer(loop: ManualLoop, catch_up: float = CATCH_UP_S) -> RtpPacer:
    return RtpPacer(cast(asyncio.AbstractEventLoop, loop), catch_up=catch_up)


@pytest.mark.parametrize(
    ("stall", "sent_late", "skipped"),
    [
        # Stalled 45 ms after slot 3's tick: slots 4 and 5 (due 20 and 40 ms into it) leave
        # together at its end, nothing is lost.
        (0.045, [4, 5], 0),
        # 250 ms: slots 4-15 were due; 13, 14, 15 are within 60 ms of the end and leave in
        # order; 4-12 are skipped and counted.
        (0.25, [13, 14, 15], 9),
    ],
)
def test_after_a_stall_recent_slots_go_out_in_order_and_older_ones_are_skipped(
    stall: float, sent_late: list[int], skipped: int
) -> None:
    """A jitter buffer still plays a packet up to CATCH_UP_S late, so after a stall the slots
    due within it are sent at once, in order, each on its own deadline (its timestamp);
    older ones are skipped and counted, so a long stall never becomes a long burst."""
    loop = ManualLoop()
    pacer = _pacer(loop)
    stream = Recorder(cast(asyncio.AbstractEventLoop, loop))
    start = loop.now + 0.01
    pacer.add(stream, ptime=0.02, start=start)
    loop.run_until(start + 3 * 0.02 + 0.001)  # slots 0-3 on time
    loop.stall(stall)
    burst = [slot for slot, _, _, sent in stream.slots if sent == loop.now]
    assert burst == sent_late
    assert [s for slot, s, _, _ in stream.slots if slot == sent_late[0]] == [skipped]
    assert pacer.skipped_slots == skipped
    for slot, _, deadline, sent in stream.slots:
        assert deadline == pytest.approx(start + slot * 0.02)
        assert sent - deadline <= CATCH_UP_S + 1e-9  # nothing later than a jitter buffer
    loop.run_until(loop.now + 0.1)  # then back on the grid
    slots = [slot for slot, _, _, _ in stream.slots]
    assert slots == sorted(set(slots))
    assert slots[-1] + 1 == len(slots) + skipped  # every slot sent once or counted
    pacer.remove(stream)


def test_catch_up_zero_sends_only_the_current_slot() -> None:
    loop = ManualLoop()
    pacer = _pacer(loop, catch_up=0.0)
    stream = Recorder(cast(asyncio.AbstractEventLoop, loop))
    start = loop.now + 0.01
    pacer.add(stream, ptime=0.02, start=start)
    loop.run_until(start + 0.061)
    loop.stall(0.045)
    assert [(slot, skipped) for slot, skipped, _, sent in stream.slots if sent == loop.now] == [
        (5, 1)
    ]
    with pytest.raises(ValueError, match="negative"):
        _pacer(loop, catch_up=-1.0)


def test_a_stream_removed_by_its_own_slot_gets_no_more_of_the_burst() -> None:
    loop = ManualLoop()
    pacer = _pacer(loop)
    start = loop.now + 0.01
    calls: list[int] = []

    class HangsUp:
        def on_slot(self, slot: int, skipped: int, deadline: float) -> None:
            calls.append(slot)
            if slot == 4:
                pacer.remove(self)  # e.g. the call ended with this slot's prompt

    pacer.add(HangsUp(), ptime=0.02, start=start)
    loop.run_until(start + 0.061)
    loop.stall(0.045)
    assert calls == [0, 1, 2, 3, 4]
    assert len(pacer) == 0


def _spin(seconds: float) -> None:
    """Hold the loop for ``seconds`` of wall time, as a busy receive callback does."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def _turn_of_busy_callbacks(pacer: RtpPacer, *, poll: bool) -> Recorder:
    """Ten callbacks of 6 ms ready in one turn of the loop (as hundreds of calls' receive
    callbacks are), a stream's slot due 5 ms into the turn: when is it sent?"""
    loop = pacer.loop
    stream = Recorder(loop)
    pacer.add(stream, ptime=0.02, start=loop.time() + 0.005)

    def busy() -> None:
        _spin(0.006)
        if poll:
            pacer.poll()

    for _ in range(10):
        loop.call_soon(busy)
    await asyncio.sleep(0.03)
    pacer.remove(stream)
    return stream


async def test_poll_sends_a_slot_due_inside_a_long_turn_of_the_loop() -> None:
    """Without polling the slot waits for the whole 60 ms turn; polled after each callback
    it waits for one callback (6 ms) at most. Two runs side by side, so the machine's load
    weighs on both alike."""
    loop = asyncio.get_running_loop()
    plain = await _turn_of_busy_callbacks(RtpPacer(loop), poll=False)
    polled_pacer = RtpPacer(loop)
    polled = await _turn_of_busy_callbacks(polled_pacer, poll=True)
    late_plain = plain.slots[0][3] - plain.slots[0][2]
    late_polled = polled.slots[0][3] - polled.slots[0][2]
    assert polled.slots[0][0] == 0 and polled.slots[0][1] == 0
    assert late_plain > 0.04, "the control: unpolled, the slot waits for the turn"
    assert late_polled < late_plain / 2, (late_polled, late_plain)
    assert polled_pacer.polled_ticks >= 1


async def test_a_polled_tick_leaves_one_timer_and_the_schedule_intact() -> None:
    """Polling cancels the timer it ran ahead of: the stream keeps one packet per slot,
    none twice, none skipped, whether a slot went by poll or by timer."""
    loop = asyncio.get_running_loop()
    pacer = RtpPacer(loop)
    stream = Recorder(loop)
    pacer.add(stream, ptime=0.02, start=loop.time() + 0.01)
    end = loop.time() + 0.3

    def busy_then_poll() -> None:
        _spin(0.004)  # time passes inside the turn: a slot may fall due before its timer
        pacer.poll()  # often early (nothing due), sometimes ahead of the timer

    while loop.time() < end:
        loop.call_soon(busy_then_poll)
        await asyncio.sleep(0.002)
        # One live timer for the next slot, waiting or already due (a poll cancels the
        # timer it ran ahead of, wherever that is).
        queued = [*loop._scheduled, *loop._ready]  # type: ignore[attr-defined]
        armed = [h for h in queued if not h.cancelled()]
        ours = [h for h in armed if getattr(h, "_callback", None) == pacer._tick]
        assert len(ours) == 1, ours
    pacer.remove(stream)
    slots = [slot for slot, _, _, _ in stream.slots]
    assert slots == list(range(len(slots))) and len(slots) >= 12
    assert all(skipped == 0 for _, skipped, _, _ in stream.slots)
    assert pacer.polled_ticks >= 1


async def test_poll_inside_the_pacers_own_tick_does_nothing() -> None:
    loop = asyncio.get_running_loop()
    pacer = RtpPacer(loop)
    sent: list[int] = []

    class Reentrant:
        def on_slot(self, slot: int, skipped: int, deadline: float) -> None:
            sent.append(slot)
            pacer.poll()  # e.g. a send that ends in a receive: no tick inside a tick

    pacer.add(Reentrant(), ptime=0.02, start=loop.time() + 0.005)
    await asyncio.sleep(0.1)
    assert sent == list(range(len(sent))) and len(sent) >= 3
    assert pacer.polled_ticks == 0


async def test_a_stream_joining_a_drifted_group_keeps_its_first_slot() -> None:
    """loop.time() counts seconds since boot, and a group's next deadline, advanced by ptime
    at every tick, drifts off the grid a new stream's start is computed on (2e-7 s here; a
    float's last bit is 2 ns after a hundred days of uptime). A stream that joins a hair
    after that deadline is the group's at its next tick, slot 0 first, nothing skipped."""
    loop = asyncio.get_running_loop()
    pacer = RtpPacer(loop)
    first = Recorder(loop)
    # A phase of 10.5 ms: its nanosecond key is the same for every start on this grid.
    start = pacer._epoch + math.ceil((loop.time() + 0.01 - pacer._epoch) / 0.02) * 0.02 + 0.0105
    pacer.add(first, ptime=0.02, start=start)
    await asyncio.sleep(0.07)
    _, group = pacer._where[id(first)]
    group.next_at -= 2e-7  # the drift
    k = round((group.next_at - start) / 0.02)
    joining = Recorder(loop)
    pacer.add(joining, ptime=0.02, start=start + k * 0.02)
    assert pacer._where[id(joining)][1] is group, "it joined the group, not a new one"
    await asyncio.sleep(0.1)
    pacer.remove(first)
    pacer.remove(joining)
    assert [slot for slot, _, _, _ in joining.slots[:3]] == [0, 1, 2]
    assert all(skipped == 0 for _, skipped, _, _ in joining.slots)
    assert pacer.skipped_slots == 0
