"""The call rate limit's turns (voipalert/sip/call_rate.py), without a clock."""

from __future__ import annotations

import itertools
import math

import pytest

from voipalert.sip.call_rate import CallRate


def test_turns_are_spaced_and_first_come_first_served() -> None:
    rate = CallRate(20)
    # Five calls asked for in one instant start 50 ms apart, in the order they asked.
    turns = [rate.reserve(100.0) for _ in range(5)]
    assert turns == pytest.approx([100.0, 100.05, 100.10, 100.15, 100.20])


def test_a_call_after_a_quiet_spell_starts_at_once() -> None:
    rate = CallRate(2)
    assert rate.reserve(10.0) == 10.0
    assert rate.reserve(10.1) == pytest.approx(10.5)  # too soon: waits for its turn
    assert rate.reserve(30.0) == 30.0  # long after the last turn: no wait, no credit saved
    assert rate.reserve(30.0) == pytest.approx(30.5)


def test_no_burst_credit_is_saved_up() -> None:
    # A limit of N a second never lets N calls out at once after a quiet minute: a carrier
    # counting per second would refuse the burst.
    rate = CallRate(10)
    rate.reserve(0.0)
    turns = [rate.reserve(60.0) for _ in range(10)]
    assert all(b - a == pytest.approx(0.1) for a, b in itertools.pairwise(turns))


def test_zero_means_no_limit() -> None:
    rate = CallRate(0)
    assert [rate.reserve(5.0) for _ in range(100)] == [5.0] * 100


@pytest.mark.parametrize("bad", [-1.0, math.nan])
def test_a_negative_or_nan_rate_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="calls per second"):
        CallRate(bad)
