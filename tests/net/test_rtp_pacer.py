from __future__ import annotations

import asyncio

import pytest

from voipalert.net.rtp_pacer import RtpPacer, shared_pacer


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
        slots = [s for s, _, _, _ in stream.slots]
        assert slots == list(range(len(slots))) and len(slots) >= 10
        for slot, skipped, deadline, sent in stream.slots:
            assert deadline == pytest.approx(start + i * 0.007 + slot * 0.02)
            assert sent >= deadline - 1e-3  # never early (beyond the timer's granularity)
            assert skipped == 0
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
    assert len(good.slots) >= 5
    assert len(pacer) == 1
    assert len(lateness) == len(good.slots)
    pacer.remove(good)


async def test_shared_pacer_is_one_per_loop() -> None:
    assert shared_pacer() is shared_pacer()
