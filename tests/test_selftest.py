"""The self-test's bookkeeping: test call results and registration losses make the phone
path degraded with a reason, listeners hear each change once, the alert it opens (and
resolves) goes through the real intake and store, and /readyz and /metrics show it. The
real phone is in tests/e2e/test_selftest.py (a bot, and a stopped Kamailio)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import suppress
from pathlib import Path

import aiohttp
import pytest

from tests.ingest.conftest import sample_rota
from voipalert.app.selftest import (
    DEDUP_KEY,
    SOURCE,
    AlertOnFailure,
    CallSkipped,
    SelfTest,
    SelfTestConfig,
    check_number,
)
from voipalert.calls import CallReport
from voipalert.callscript import StopReason
from voipalert.clock import SystemClock
from voipalert.domain.alert import AlertStatus, AttemptOutcome
from voipalert.errors import ConfigError
from voipalert.ingest.app_keys import INTAKE, PHONE_PATH
from voipalert.ingest.config import IngestConfig
from voipalert.ingest.health import PhonePath, SipState
from voipalert.ingest.intake import Intake
from voipalert.ingest.webhook import build_app, start_http
from voipalert.store import Store

CONFIG = SelfTestConfig(number="sip:echo@127.0.0.1", registration_grace_seconds=0.1,
                        check_seconds=0.02)  # fmt: skip


class Script:
    """The phone, as far as the self-test sees it: scripted reports and SIP states."""

    def __init__(self) -> None:
        self.reports: list[CallReport | Exception] = []
        self.sip = SipState.REGISTERED
        self.changes: list[PhonePath] = []

    async def place(self, config: SelfTestConfig) -> CallReport:
        result = self.reports.pop(0)
        if isinstance(result, Exception):
            raise result
        return result

    async def phone_path_changed(self, path: PhonePath) -> None:
        self.changes.append(path)


def _report(outcome: AttemptOutcome, status: int | None = None, reason: str = "") -> CallReport:
    return CallReport(outcome, status, reason)


def _selftest(script: Script, config: SelfTestConfig = CONFIG) -> SelfTest:
    return SelfTest(config, SystemClock(), lambda: script.sip, script.place, [script])


async def test_a_failed_test_call_degrades_until_one_is_answered() -> None:
    script = Script()
    selftest = _selftest(script)
    script.reports = [
        _report(AttemptOutcome.ANSWERED_NO_ACK, 200, "OK"),
        _report(AttemptOutcome.NO_ANSWER, 480, "Temporarily Unavailable"),
        _report(AttemptOutcome.UNREACHABLE),
        CallSkipped("a test call is already in progress"),
        _stopped(),
        _report(AttemptOutcome.ACKNOWLEDGED, 200, "OK"),
    ]
    await selftest.test_once()
    first = selftest.status()
    assert first.degraded == () and first.last_success_at is not None
    await selftest.test_once()
    assert selftest.status().degraded == (
        "test call to sip:echo@127.0.0.1 failed: no_answer, SIP 480 Temporarily Unavailable",
    )
    await selftest.test_once()
    assert selftest.status().degraded == ("test call to sip:echo@127.0.0.1 failed: unreachable",), (
        "the reason follows the last call"
    )
    assert await selftest.test_once() is None, "skipped: the lender is busy"
    assert await selftest.test_once() is None, "stopped by a shutdown: not a failure"
    await selftest.test_once()
    path = selftest.status()
    assert path.degraded == () and path.test_calls == 4 and path.failures == 2
    assert path.last_success_at is not None and path.last_success_at > first.last_success_at
    assert [bool(change.degraded) for change in script.changes] == [True, False], (
        "listeners hear each change of the failing parts once"
    )


def _stopped() -> CallReport:
    return CallReport(AttemptOutcome.CANCELLED, None, "", stopped=StopReason.SHUTDOWN)


async def test_a_number_the_phone_cannot_call_says_why() -> None:
    script = Script()
    selftest = _selftest(script, SelfTestConfig(number="not a number"))
    script.reports = [_report(AttemptOutcome.FAILED, None, "cannot call 'not a number'")]
    await selftest.test_once()
    assert selftest.status().degraded == (
        "test call to not a number failed: failed (cannot call 'not a number')",
    )


def test_a_number_that_can_never_be_called_stops_the_start() -> None:
    check_number(SelfTestConfig(number="sip:echo@pbx.example.org"), "example.org")
    check_number(SelfTestConfig(number="+33 1 23 45 67 89"), "example.org")
    with pytest.raises(ConfigError, match=r"selftest.number: cannot call 'not a number'"):
        check_number(SelfTestConfig(number="not a number"), "example.org")


async def test_require_ack_fails_an_answer_without_the_key() -> None:
    script = Script()
    selftest = _selftest(script, SelfTestConfig(number="201", require_ack=True))
    script.reports = [_report(AttemptOutcome.ANSWERED_NO_ACK, 200, "OK")]
    await selftest.test_once()
    assert selftest.status().degraded == ("test call to 201 failed: answered_no_ack, SIP 200 OK",)


async def test_a_registration_lost_longer_than_the_grace_degrades() -> None:
    script = Script()
    selftest = _selftest(script, SelfTestConfig(registration_grace_seconds=0.1,
                                                 check_seconds=0.02))  # fmt: skip
    task = asyncio.create_task(selftest.run())
    try:
        assert selftest.status().monitored
        script.sip = SipState.REGISTERING  # a blip shorter than the grace: nothing
        await asyncio.sleep(0.05)
        script.sip = SipState.REGISTERED
        await asyncio.sleep(0.05)
        assert selftest.status().degraded == ()
        script.sip = SipState.FAILED
        await _until(lambda: bool(selftest.status().degraded))
        [reason] = selftest.status().degraded
        assert reason.startswith("SIP registration lost (failed) since ")
        script.sip = SipState.REGISTERED
        await _until(lambda: not selftest.status().degraded)
        assert selftest.status().registration_losses == 1
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
    assert [bool(c.degraded) for c in script.changes] == [True, False]


async def test_nothing_to_watch_without_a_number_or_a_registrar() -> None:
    script = Script()
    script.sip = SipState.NOT_CONFIGURED
    selftest = _selftest(script, SelfTestConfig())
    await selftest.run()  # returns at once
    assert not selftest.status().monitored


async def _until(check: object, seconds: float = 5.0) -> None:
    assert callable(check)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "voipalert.db", SystemClock())
    await opened.replace_rota(sample_rota())
    try:
        yield opened
    finally:
        await opened.close()


async def test_the_alert_readyz_and_metrics(store: Store) -> None:
    script = Script()
    selftest = _selftest(script)
    app = build_app(
        store, wake=lambda: None, sip_state=lambda: SipState.REGISTERED,
        config=IngestConfig(), clock=SystemClock(),
    )  # fmt: skip
    app[PHONE_PATH] = selftest.status
    selftest.listeners.append(AlertOnFailure(app[INTAKE]))
    runner, port = await start_http(app, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            script.reports = [_report(AttemptOutcome.FAILED, 503, "Service Unavailable")]
            await selftest.test_once()
            async with http.get(f"{base}/readyz") as response:
                assert response.status == 200, "degraded, but ready: calls may still work"
                ready = await response.json()
            assert ready["status"] == "degraded"
            assert ready["degraded"] == [
                "test call to sip:echo@127.0.0.1 failed: failed, SIP 503 Service Unavailable"
            ]
            page = await store.list_alerts()
            [alert] = [a for a in page.alerts if a.dedup_key == DEDUP_KEY]
            assert alert.source == "selftest" and alert.status is AlertStatus.TRIGGERED
            assert alert.summary.startswith("voipalert phone path failing: test call to")
            async with http.get(f"{base}/metrics") as response:
                text = await response.text()
            assert "voipalert_phone_path_degraded 1.0" in text
            assert "voipalert_selftest_failures_total 1.0" in text
            assert "voipalert_selftest_last_success_timestamp_seconds" not in text
            await store.close_unacknowledged(alert.id, "policy exhausted: its calls fail too")
            script.sip = SipState.FAILED
            script.reports = [_report(AttemptOutcome.UNREACHABLE)]
            await selftest.test_once()
            page = await store.list_alerts()
            assert [a.id for a in page.alerts if a.dedup_key == DEDUP_KEY] == [alert.id], (
                "one alert per outage, not one per change of the reasons"
            )
            script.reports = [_report(AttemptOutcome.ANSWERED_NO_ACK, 200, "OK")]
            await selftest.test_once()
            async with http.get(f"{base}/readyz") as response:
                assert (await response.json())["status"] == "ok"
            async with http.get(f"{base}/metrics") as response:
                text = await response.text()
            assert "voipalert_phone_path_degraded 0.0" in text
            assert "voipalert_selftest_last_success_timestamp_seconds 1." in text
            closed = await store.get_alert(alert.id)
            assert closed is not None and closed.status is AlertStatus.CLOSED_UNACKNOWLEDGED
    finally:
        await runner.cleanup()


async def test_one_alert_per_outage_resolved_when_the_path_works_again(store: Store) -> None:
    woken: list[int] = []
    listener = AlertOnFailure(Intake(store, lambda: woken.append(1)))
    await listener.phone_path_changed(PhonePath(True, ("SIP registration lost (failed)",)))
    await listener.phone_path_changed(
        PhonePath(True, ("SIP registration lost (failed)", "test call to 201 failed: busy"))
    )
    page = await store.list_alerts()
    [alert] = [a for a in page.alerts if a.dedup_key == DEDUP_KEY]
    assert alert.summary == "voipalert phone path failing: SIP registration lost (failed)"
    await listener.phone_path_changed(PhonePath(True, ()))
    resolved = await store.get_alert(alert.id)
    assert resolved is not None and resolved.status is AlertStatus.RESOLVED
    assert resolved.resolved_by == SOURCE
    await listener.phone_path_changed(PhonePath(True, ("test call to 201 failed: busy",)))
    page = await store.list_alerts()
    assert len([a for a in page.alerts if a.dedup_key == DEDUP_KEY]) == 2, "a new outage"
    assert woken, "the engine is woken to call about it"
