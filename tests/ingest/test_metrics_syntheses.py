"""The speech renderer's synthesis count on /metrics (docs/capacity.md): one render per
language and message, however many people a mass alert calls."""

from __future__ import annotations

from voipalert.clock import SystemClock
from voipalert.ingest.metrics import IngestMetrics


def _line(text: bytes, name: str) -> str | None:
    return next((ln for ln in text.decode().splitlines() if ln.startswith(name + " ")), None)


def test_syntheses_are_absent_until_a_renderer_reports_and_then_read_at_each_scrape() -> None:
    metrics = IngestMetrics(SystemClock())
    assert _line(metrics.render(), "voipalert_tts_syntheses_total") is None
    count = [3]
    metrics.count_syntheses(lambda: count[0])
    assert _line(metrics.render(), "voipalert_tts_syntheses_total") == (
        "voipalert_tts_syntheses_total 3.0"
    )
    count[0] = 4
    assert _line(metrics.render(), "voipalert_tts_syntheses_total") == (
        "voipalert_tts_syntheses_total 4.0"
    )
