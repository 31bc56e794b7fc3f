"""Fixtures of the RTP tests: where a call's received audio is analysed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from voipalert.net.rx_pool import AnalysisPool


@pytest.fixture
async def analysis_pool(request: pytest.FixtureRequest) -> AsyncIterator[AnalysisPool | None]:
    """None (on the event loop) unless a test is parametrized with ``"worker"``
    (``indirect=True``): then a started pool of one worker process, closed afterwards."""
    if getattr(request, "param", "loop") == "loop":
        yield None
        return
    pool = AnalysisPool(1)
    await pool.start()
    try:
        yield pool
    finally:
        await pool.close()


# Both places the analysis runs: the tests of in-band keys, beeps and echo use it.
BOTH_PLACES = pytest.mark.parametrize("analysis_pool", ["loop", "worker"], indirect=True)
