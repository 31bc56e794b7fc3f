import asyncio
from datetime import UTC, datetime

import pytest

from voipalert.clock import FakeClock, LoopSlices, SystemClock


def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(datetime(2026, 3, 29, 0, 30, tzinfo=UTC), monotonic=5.0)
    assert clock.monotonic() == 5.0
    clock.advance(90)
    assert clock.monotonic() == 95.0
    assert clock.now_utc() == datetime(2026, 3, 29, 0, 31, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)


def test_fake_clock_refuses_naive_time() -> None:
    with pytest.raises(ValueError, match="aware"):
        FakeClock(datetime(2026, 1, 1))  # noqa: DTZ001


async def test_system_clock_uses_the_running_loop() -> None:
    import asyncio

    clock = SystemClock()
    loop_time = asyncio.get_running_loop().time()
    assert abs(clock.monotonic() - loop_time) < 1.0
    assert clock.now_utc().tzinfo is UTC


@pytest.mark.parametrize(("budget", "expected"), [(0.0, [1, 2, 3, 4, 5]), (3600.0, [0] * 5)])
async def test_loop_slices_yield_only_once_their_budget_is_spent(
    budget: float, expected: list[int]
) -> None:
    """Between pauses of a spent budget the loop runs what else is ready (a call's next
    packet); within the budget nothing else runs until the pass gives the loop back."""
    loop = asyncio.get_running_loop()
    ran: list[None] = []
    slices = LoopSlices(budget)
    seen = []
    for _ in range(5):
        loop.call_soon(ran.append, None)
        await slices.pause()
        seen.append(len(ran))
    assert seen == expected
    assert slices.yields == (5 if budget == 0 else 0)
