"""What a trunk failover may retry, and in which order trunks are tried (sip/failover.py)."""

from __future__ import annotations

import pytest

from voipalert.sip.failover import TrunkBoard, may_fail_over


def _may(
    status: int | None,
    by: str | None = "status",
    *,
    progressed: bool = False,
    answered: bool = False,
    stopped: bool = False,
) -> bool:
    return may_fail_over(
        status=status, classified_by=by, progressed=progressed, answered=answered, stopped=stopped
    )


@pytest.mark.parametrize("status", [408, 500, 502, 503, 504])
def test_server_failures_before_any_provisional_fail_over(status: int) -> None:
    # RFC 3263 §4.3 (503, timeout) and RFC 3261 §21.5: the server failed, not the callee.
    assert _may(status)


@pytest.mark.parametrize(
    ("status", "by"),
    [(None, "no response"), (408, "no response"), (503, "no response"), (None, "setup timeout")],
)
def test_transport_errors_and_timeouts_fail_over(status: int | None, by: str) -> None:
    assert _may(status, by)


@pytest.mark.parametrize("status", [486, 600, 603, 404, 410, 480, 484, 403, 401, 407, 301, 501])
def test_answers_about_the_callee_are_final(status: int) -> None:
    # A 486 from trunk 1 must never ring the person again through trunk 2.
    assert not _may(status)


def test_anything_after_ringing_is_final() -> None:
    assert not _may(503, progressed=True)
    assert not _may(None, "no response", progressed=True)
    assert not _may(408, "ring timeout")


def test_answered_stopped_or_cause_decided_calls_are_final() -> None:
    assert not _may(503, answered=True)
    assert not _may(None, "no response", stopped=True)
    assert not _may(503, "cause")  # a Q.850 cause names the callee's fate
    assert not _may(None, "local")
    assert not _may(None, None)


def test_order_is_configured_until_a_trunk_fails() -> None:
    board = TrunkBoard(["a", "b", "c"], cooldown_seconds=60.0)
    assert board.order(0.0) == ["a", "b", "c"]
    board.call_failed("a", "503 Service Unavailable", now=10.0)
    assert board.order(10.0) == ["b", "c", "a"]  # deprioritised, still tried last
    assert board.cooling_down("a", 69.9)
    assert board.order(70.0) == ["a", "b", "c"]  # the cool-down is over
    assert board.failures("a") == 1
    assert board.last_error("a") == "503 Service Unavailable"


def test_cooling_trunks_come_back_soonest_first() -> None:
    board = TrunkBoard(["a", "b", "c"], cooldown_seconds=60.0)
    board.call_failed("b", "x", now=0.0)
    board.call_failed("a", "y", now=5.0)
    assert board.order(6.0) == ["c", "b", "a"]


def test_retry_after_lengthens_the_cooldown_within_a_cap() -> None:
    board = TrunkBoard(["a", "b"], cooldown_seconds=30.0)
    board.call_failed("a", "503", now=0.0, retry_after=120.0)
    assert board.cooling_down("a", 119.0)
    assert not board.cooling_down("a", 120.0)
    board.call_failed("b", "503", now=0.0, retry_after=10**9)
    assert not board.cooling_down("b", 3601.0)  # a hostile Retry-After is capped at an hour
    board.call_failed("b", "503", now=0.0, retry_after=-5.0)
    assert not board.cooling_down("b", 30.0)


def test_a_carried_call_ends_the_cooldown() -> None:
    board = TrunkBoard(["a", "b"], cooldown_seconds=60.0)
    board.call_failed("a", "503", now=0.0)
    board.call_carried("a")
    assert board.order(1.0) == ["a", "b"]
    assert board.failed_at("a") is None


def test_names_must_be_unique_and_given() -> None:
    with pytest.raises(ValueError, match="unique"):
        TrunkBoard(["a", "a"])
    with pytest.raises(ValueError, match="unique"):
        TrunkBoard([])
