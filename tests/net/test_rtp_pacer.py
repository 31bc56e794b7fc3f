from __future__ import annotations

import asyncio

import pytest

from voipalert.net.rtp_pacer import RtpPacer


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
