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
        assert len(stream.slots) >= 3
        expected = 0
        for slot, skipped, deadline, sent in stream.slots:
            # Slots follow each other; a loaded machine may make the pacer skip some.
            assert slot == expected + skipped
            expected = slot + 1
            assert deadline == pytest.approx(start + i * 0.007 + slot * 0.02)
            assert sent >= deadline - 1e-3  # never early (beyond the timer's granularity)
            assert sent < deadline + 0.02  # always the current slot, never an old one
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


async def test_shared_pacer_is_one_per_loop() -> None:
    assert shared_pacer() is shared_pacer()


def test_shared_pacers_of_closed_loops_are_let_go() -> None:
    from voipalert.net import rtp_pacer

    async def get() -> RtpPacer:
        return shared_pacer()

    first = asyncio.run(get())
    second = asyncio.run(get())
    assert first is not second
    assert (
        all(not p.loop.is_closed() for p in rtp_pacer._SHARED.values())
        or len(rtp_pacer._SHARED) <= 1
    )
