"""The call progress reaches the attempt's detail (docs/sip.md §4.5.1) and the CLI."""

from __future__ import annotations

import pytest

from voipalert.calls import CallReport
from voipalert.cli.call_cmd import _print
from voipalert.domain.alert import AttemptOutcome
from voipalert.notify.voice import notify_result


def test_unanswered_call_detail_names_the_progress_and_what_classified_it() -> None:
    report = CallReport(
        AttemptOutcome.UNREACHABLE, 487, "ring timeout",
        progress="183 Session Progress (early media only, no ringing, Q.850 cause 20)",
        early_media=True, q850_cause=20, classified_by="cause",
    )  # fmt: skip
    result = notify_result(report)
    assert result.detail == (
        "ring timeout; progress: 183 Session Progress (early media only, no ringing, "
        "Q.850 cause 20); classified by cause"
    )


def test_answered_call_detail_leaves_the_progress_out() -> None:
    report = CallReport(
        AttemptOutcome.ANSWERED_NO_ACK, 200, "we hung up", ring_seconds=2.0, talk_seconds=9.0,
        progress="180 Ringing (ringing)", classified_by="status",
    )  # fmt: skip
    assert notify_result(report).detail == "we hung up"


def test_cli_prints_the_progress(capsys: pytest.CaptureFixture[str]) -> None:
    _print({"outcome": "busy", "sip_status": 486, "sip_reason": "Busy Here",
            "progress": "183 Session Progress (early media only, no ringing)",
            "classified_by": "status"})  # fmt: skip
    out = capsys.readouterr().out
    assert (
        "progress: 183 Session Progress (early media only, no ringing); classified by status" in out
    )
