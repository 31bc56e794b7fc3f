from datetime import UTC, datetime

import pytest

from voipalert.clock import FakeClock, SystemClock


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
