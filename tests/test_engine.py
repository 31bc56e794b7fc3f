"""Full escalations through the real engine and a real SQLite file, driven by a fake clock.

The engine waits for wake-ups only (``idle_poll_seconds`` is an hour), so every step below
happens because a call ended, the test woke it, or the fake clock was advanced: outcomes
depend on fake time only. ``eventually`` just gives aiosqlite's thread time to run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.scripted_notifier import ACK, ANSWERED_NO_ACK, BUSY, NO_ANSWER, Hold, ScriptedNotifier
from voipalert.clock import FakeClock
from voipalert.domain.alert import (
    Alert,
    AlertKind,
    AlertStatus,
    Attempt,
    AttemptId,
    AttemptOutcome,
    AttemptResult,
    AttemptState,
    NewAlert,
)
from voipalert.domain.override_edit import Origin, OverrideRequest
from voipalert.engine import Engine, EngineConfig
from voipalert.notify import Notification, NotifyResult, StopReason, StopRequest
from voipalert.rotafile.parse import parse_rota
from voipalert.store import Store

ROTA = """
people:
  - {name: alice, contacts: [{extension: "201"}]}
  - {name: bob, contacts: [{extension: "202"}]}
  - {name: carol, contacts: [{extension: "203"}]}
  - {name: dave, contacts: [{extension: "204"}]}
  - {name: erin, contacts: [{extension: "205"}]}
teams:
  - {name: ops, members: [alice, bob, carol, dave, erin]}
schedules:
  - name: primary
    time_zone: Europe/Paris
    layers:
      - {name: main, members: [alice], shift_length: 1, shift_unit: weeks,
         start: 2026-01-05, handoff: "09:00"}
policies:
  - name: default
    repeat: 1
    repeat_delay: 60
    steps:
      - {targets: [{schedule: primary}], timeout: 300, ring_timeout: 30}
      - {targets: [{person: bob}], timeout: 300, ring_timeout: 25}
routes:
  - {name: all, default: true, policy: default}
"""

START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
POLL_SECONDS = 0.005


@dataclass
class Harness:
    store: Store
    engine: Engine
    notifier: ScriptedNotifier
    clock: FakeClock

    async def trigger(self, summary: str = "database down", **kwargs: object) -> Alert:
        alert, _ = await self.store.create_or_join_alert(NewAlert(summary, **kwargs))  # type: ignore[arg-type]  # test shorthand: kwargs are NewAlert fields
        self.engine.wake()
        return alert

    async def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.engine.wake()

    async def attempts(self, alert: Alert) -> list[Attempt]:
        detail = await self.store.get_alert_with_attempts(alert.id)
        assert detail is not None
        return list(detail.attempts)

    async def alert(self, alert: Alert) -> Alert:
        fresh = await self.store.get_alert(alert.id)
        assert fresh is not None
        return fresh


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, seconds: float = 10.0
) -> None:
    """Poll ``check`` until it holds (the fake clock decides outcomes; this only waits for
    the database thread and the tasks to get there)."""
    for _ in range(int(seconds / POLL_SECONDS)):
        if await check():
            return
        await asyncio.sleep(POLL_SECONDS)
    raise AssertionError(f"timed out waiting for: {what}")


async def settle(harness: Harness) -> None:
    """Let the engine reach a quiet point: three ticks completed, each after a wake-up."""
    for _ in range(3):
        await eventually(_ticked(harness, harness.engine.ticks + 1), "engine ticks")


def _ticked(harness: Harness, target: int) -> Callable[[], Awaitable[bool]]:
    harness.engine.wake()

    async def check() -> bool:
        return harness.engine.ticks >= target

    return check


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    clock = FakeClock(START)
    store = await Store.open(tmp_path / "voipalert.db", clock)
    await store.replace_rota(parse_rota(ROTA))
    notifier = ScriptedNotifier()
    config = EngineConfig(idle_poll_seconds=3600, max_concurrent_calls=2)
    engine = Engine(store, notifier, clock, config)
    task = asyncio.create_task(engine.run())
    try:
        yield Harness(store, engine, notifier, clock)
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        await store.close()


def summary(attempts: list[Attempt]) -> list[tuple[int, int, str, int, str, str | None]]:
    return [
        (
            a.key.repeat,
            a.key.step,
            a.key.person,
            a.key.number,
            a.state.value,
            a.outcome.value if a.outcome else None,
        )
        for a in attempts
    ]


async def test_ack_on_step_one(harness: Harness) -> None:
    harness.notifier.script = {"alice": [ACK]}
    alert = await harness.trigger()
    await eventually(lambda: _status(harness, alert, AlertStatus.ACKNOWLEDGED), "acked")
    await settle(harness)
    fresh = await harness.alert(alert)
    attempts = await harness.attempts(alert)
    assert summary(attempts) == [(0, 0, "alice", 1, "done", "acknowledged")]
    assert (fresh.acked_by, fresh.acked_via, fresh.ack_attempt) == ("alice", "call", attempts[0].id)
    assert attempts[0].digit == "1" and attempts[0].sip_status == 200
    assert attempts[0].answered_at is not None and attempts[0].ring_timeout_seconds == 30
    assert [n.person for n in harness.notifier.calls] == ["alice"]
    call = harness.notifier.calls[0]
    assert call.fields["summary"] == "database down" and call.language == "en"
    assert call.fields["severity"] == "critical" and call.fields["alert_id"] == str(alert.id)
    assert call.attempt_key == str(attempts[0].key) and call.contact.address == "201"
    actions = [e.action for e in await harness.store.audit_trail(alert.id)]
    # The intent is committed before the dial, the outcome after.
    assert actions.index("attempt.intent") < actions.index("attempt.dialling")
    assert actions.index("attempt.dialling") < actions.index("attempt.ended")
    assert "alert.acknowledged" in actions


async def _status(harness: Harness, alert: Alert, status: AlertStatus) -> bool:
    return (await harness.alert(alert)).status is status


async def test_no_answer_then_ack_on_step_two(harness: Harness) -> None:
    harness.notifier.script = {"alice": [NO_ANSWER], "bob": [ACK]}
    alert = await harness.trigger()
    await eventually(lambda: _status(harness, alert, AlertStatus.ACKNOWLEDGED), "acked")
    await settle(harness)
    attempts = await harness.attempts(alert)
    assert summary(attempts) == [
        (0, 0, "alice", 1, "done", "no_answer"),
        (0, 1, "bob", 1, "done", "acknowledged"),
    ]
    assert attempts[0].sip_status == 487
    assert attempts[1].ring_timeout_seconds == 25
    assert (await harness.alert(alert)).acked_by == "bob"


async def test_step_timeout_moves_on_while_the_phone_still_rings(harness: Harness) -> None:
    ringing = Hold()
    harness.notifier.script = {"alice": [ringing], "bob": [ACK]}
    alert = await harness.trigger()
    await eventually(lambda: _count(harness, 1), "alice dialled")
    await settle(harness)
    await harness.advance(299)
    await settle(harness)
    assert len(harness.notifier.calls) == 1, "bob is not called before the step timeout"
    await harness.advance(1)
    await eventually(lambda: _status(harness, alert, AlertStatus.ACKNOWLEDGED), "acked by bob")
    await eventually(lambda: _count_cancelled(harness, 1), "alice's call cancelled")
    await settle(harness)
    attempts = await harness.attempts(alert)
    assert summary(attempts) == [
        (0, 0, "alice", 1, "cancelled", "cancelled"),
        (0, 1, "bob", 1, "done", "acknowledged"),
    ]
    assert (await harness.alert(alert)).position.step == 1


async def _count(harness: Harness, n: int) -> bool:
    return len(harness.notifier.calls) >= n


async def _count_cancelled(harness: Harness, n: int) -> bool:
    return len(harness.notifier.cancelled) >= n


async def test_busy_moves_on_at_once(harness: Harness) -> None:
    harness.notifier.script = {"alice": [BUSY], "bob": [ACK]}
    alert = await harness.trigger()
    await eventually(lambda: _status(harness, alert, AlertStatus.ACKNOWLEDGED), "acked")
    attempts = await harness.attempts(alert)
    assert summary(attempts) == [
        (0, 0, "alice", 1, "done", "busy"),
        (0, 1, "bob", 1, "done", "acknowledged"),
    ]
    assert attempts[0].sip_status == 486
    # No time passed on the fake clock: bob was called without waiting for any timeout.
    assert attempts[1].created_at == attempts[0].created_at == START


async def test_answered_without_key_escalates(harness: Harness) -> None:
    harness.notifier.script = {"alice": [ANSWERED_NO_ACK], "bob": [ACK]}
    alert = await harness.trigger()
    await eventually(lambda: _status(harness, alert, AlertStatus.ACKNOWLEDGED), "acked")
    attempts = await harness.attempts(alert)
    assert summary(attempts) == [
        (0, 0, "alice", 1, "done", "answered_no_ack"),
        (0, 1, "bob", 1, "done", "acknowledged"),
    ]
    assert attempts[0].answered_at is not None and attempts[0].digit is None
    assert (await harness.alert(alert)).acked_by == "bob"


async def test_policy_exhausted_after_its_repeat(harness: Harness) -> None:
    alert = await harness.trigger()  # the default result: no answer, for everyone
    await eventually(lambda: _count(harness, 2), "first pass")
    await settle(harness)
    assert (await harness.alert(alert)).status is AlertStatus.TRIGGERED
    assert len(harness.notifier.calls) == 2, "the second pass waits for repeat_delay"
    await harness.advance(59)
    await settle(harness)
    assert len(harness.notifier.calls) == 2
    await harness.advance(1)
    await eventually(lambda: _status(harness, alert, AlertStatus.CLOSED_UNACKNOWLEDGED), "closed")
    await settle(harness)
    fresh = await harness.alert(alert)
    assert fresh.close_reason == "escalation policy exhausted"
    assert summary(await harness.attempts(alert)) == [
        (0, 0, "alice", 1, "done", "no_answer"),
        (0, 1, "bob", 1, "done", "no_answer"),
        (1, 0, "alice", 1, "done", "no_answer"),
        (1, 1, "bob", 1, "done", "no_answer"),
    ]
    await harness.advance(3600)
    await settle(harness)
    assert len(harness.notifier.calls) == 4


async def test_resolve_cancels_the_call_in_progress(harness: Harness) -> None:
    harness.notifier.script = {"alice": [Hold(then=ACK)]}
    alert = await harness.trigger()
    await eventually(lambda: _count(harness, 1), "alice dialled")
    transition = await harness.store.resolve_alert(alert.id, by="alertmanager")
    assert transition.changed
    harness.engine.wake()
    await eventually(lambda: _count_cancelled(harness, 1), "call cancelled")
    await settle(harness)
    await harness.advance(3600)
    await settle(harness)
    attempts = await harness.attempts(alert)
    assert summary(attempts) == [(0, 0, "alice", 1, "cancelled", "cancelled")]
    assert [n.person for n in harness.notifier.calls] == ["alice"], "nobody else is called"
    fresh = await harness.alert(alert)
    assert fresh.status is AlertStatus.RESOLVED and fresh.resolved_by == "alertmanager"
    assert (await harness.store.engine_snapshot()) == []


async def test_repeated_trigger_joins_the_open_alert(harness: Harness) -> None:
    harness.notifier.script = {"alice": [Hold(then=ACK)]}
    first = await harness.trigger(dedup_key="fp-1")
    await eventually(lambda: _count(harness, 1), "alice dialled")
    second, created = await harness.store.create_or_join_alert(
        NewAlert("database down", dedup_key="fp-1")
    )
    harness.engine.wake()
    await settle(harness)
    assert not created and second.id == first.id and second.occurrences == 2
    assert len(harness.notifier.calls) == 1
    assert len((await harness.store.list_alerts()).alerts) == 1


async def test_mass_alert_respects_the_concurrency_cap(harness: Harness) -> None:
    gate = asyncio.Event()
    results = {"alice": ACK, "bob": ANSWERED_NO_ACK, "carol": NO_ANSWER, "dave": BUSY, "erin": ACK}
    harness.notifier.script = {p: [Hold(gate, r)] for p, r in results.items()}
    alert = await harness.trigger("evacuate hall B", kind=AlertKind.MASS, team="ops")
    await eventually(lambda: _count(harness, 2), "two calls")
    await settle(harness)
    states = [a.state for a in await harness.attempts(alert)]
    assert sorted(states) == [AttemptState.IN_FLIGHT] * 2 + [AttemptState.PENDING] * 3
    assert harness.notifier.active == 2
    gate.set()
    await eventually(lambda: _count(harness, 5), "everyone called")
    await settle(harness)
    assert harness.notifier.max_active == 2
    attempts = await harness.attempts(alert)
    assert {a.key.person: a.outcome for a in attempts} == {p: r.outcome for p, r in results.items()}
    fresh = await harness.alert(alert)
    # The first key press is recorded on the alert; the others were still called.
    assert fresh.status is AlertStatus.ACKNOWLEDGED and fresh.acked_by in {"alice", "erin"}
    assert await harness.store.engine_snapshot() == []


async def test_pending_intent_left_by_a_crash_is_dialled_under_its_own_key(
    tmp_path: Path,
) -> None:
    from voipalert.domain.policy import plan

    clock = FakeClock(START)
    store = await Store.open(tmp_path / "db.sqlite", clock)
    await store.replace_rota(parse_rota(ROTA))
    alert, _ = await store.create_or_join_alert(NewAlert("disk full"))
    calls = plan(alert, await store.load_rota(), [], clock.now_utc())
    intent = await store.record_intent(calls[0])  # type: ignore[arg-type]  # plan()[0] is a PlaceCall here
    assert intent is not None
    notifier = ScriptedNotifier({"alice": [ACK]})
    engine = Engine(store, notifier, clock, EngineConfig(idle_poll_seconds=3600))
    task = asyncio.create_task(engine.run())
    try:
        await eventually(lambda: _store_status(store, alert, AlertStatus.ACKNOWLEDGED), "acked")
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
    detail = await store.get_alert_with_attempts(alert.id)
    assert detail is not None
    assert [a.id for a in detail.attempts] == [intent.id]
    assert [n.attempt_key for n in notifier.calls] == [str(intent.key)]
    await store.close()


async def _store_status(store: Store, alert: Alert, status: AlertStatus) -> bool:
    fresh = await store.get_alert(alert.id)
    return fresh is not None and fresh.status is status


class _BrokenForOneAlert(ScriptedNotifier):
    """Fault injection: the phone raises (a bug) for alerts about the boiler."""

    async def notify(self, notification: Notification, stop: StopRequest) -> NotifyResult:
        if "boiler" in notification.fields["summary"]:
            raise RuntimeError("notifier bug")
        return await super().notify(notification, stop)


async def test_a_failing_alert_does_not_stop_the_others(tmp_path: Path) -> None:
    clock = FakeClock(START)
    store = await Store.open(tmp_path / "db.sqlite", clock)
    await store.replace_rota(parse_rota(ROTA))
    notifier = _BrokenForOneAlert({"alice": [NO_ANSWER, ACK]}, default=ACK)
    engine = Engine(store, notifier, clock, EngineConfig(idle_poll_seconds=3600))
    task = asyncio.create_task(engine.run())
    try:
        broken, _ = await store.create_or_join_alert(NewAlert("boiler pressure"))
        fine, _ = await store.create_or_join_alert(NewAlert("pump stopped"))
        engine.wake()
        await eventually(lambda: _store_status(store, fine, AlertStatus.ACKNOWLEDGED), "fine acked")
        detail = await store.get_alert_with_attempts(broken.id)
        assert detail is not None
        assert [a.outcome for a in detail.attempts][:1] == [AttemptOutcome.FAILED]
        assert "notifier error" in (detail.attempts[0].detail or "")
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
    await store.close()


class _SlowClock(FakeClock):
    """Monotonic time jumps 5 s at each read: every tick looks slow to the watchdog."""

    def monotonic(self) -> float:
        self.advance_monotonic = getattr(self, "advance_monotonic", 0.0) + 5.0
        return super().monotonic() + self.advance_monotonic


async def test_watchdog_logs_slow_ticks(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = _SlowClock(START)
    store = await Store.open(tmp_path / "db.sqlite", clock)
    engine = Engine(store, ScriptedNotifier(), clock, EngineConfig(idle_poll_seconds=3600))
    task = asyncio.create_task(engine.run())
    try:
        with caplog.at_level(logging.WARNING, logger="voipalert.engine"):
            await eventually(lambda: _ticks(engine, 1), "a tick")
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
    await store.close()
    assert any("slow engine tick" in r.getMessage() for r in caplog.records)


async def _ticks(engine: Engine, n: int) -> bool:
    return engine.ticks >= n


async def test_ack_from_outside_cancels_the_ringing_call(harness: Harness) -> None:
    harness.notifier.script = {"alice": [Hold(then=ANSWERED_NO_ACK)]}
    alert = await harness.trigger()
    await eventually(lambda: _count(harness, 1), "alice dialled")
    transition = await harness.store.ack_alert(alert.id, by="token:noc", via="api")
    assert transition.changed
    harness.engine.wake()
    await eventually(lambda: _count_cancelled(harness, 1), "call cancelled")
    await harness.advance(3600)
    await settle(harness)
    attempts = await harness.attempts(alert)
    assert summary(attempts) == [(0, 0, "alice", 1, "cancelled", "cancelled")]
    fresh = await harness.alert(alert)
    assert (fresh.status, fresh.acked_by, fresh.acked_via) == (
        AlertStatus.ACKNOWLEDGED,
        "token:noc",
        "api",
    )
    assert len(harness.notifier.calls) == 1


async def test_resolve_cancels_calls_waiting_for_a_line_before_they_are_dialled(
    harness: Harness,
) -> None:
    harness.notifier.script = {p: [Hold()] for p in ("alice", "bob", "carol", "dave", "erin")}
    alert = await harness.trigger("evacuate hall B", kind=AlertKind.MASS, team="ops")
    await eventually(lambda: _count(harness, 2), "two lines busy")
    await settle(harness)
    transition = await harness.store.resolve_alert(alert.id, by="api")
    assert len(transition.cancelled_attempts) == 3  # never dialled: cancelled in the resolve
    harness.engine.wake()
    await eventually(lambda: _count_cancelled(harness, 2), "ringing calls cancelled")
    await settle(harness)
    attempts = await harness.attempts(alert)
    assert {a.state for a in attempts} == {AttemptState.CANCELLED}
    assert len(harness.notifier.calls) == 2, "the three waiting calls were never dialled"
    assert harness.engine.calls_in_progress == 0


# ------------------------------------------------------------------ stop requests, shutdown


async def test_a_cancelled_call_is_asked_to_stop_once_and_keeps_its_facts(
    harness: Harness,
) -> None:
    ringing = Hold()
    harness.notifier.script = {"alice": [ringing]}
    alert = await harness.trigger()
    await eventually(lambda: _count(harness, 1), "alice dialled")
    await harness.store.ack_alert(alert.id, by="ops-token", via="api")
    await harness.store.resolve_alert(alert.id, by="ops-token")
    for _ in range(3):  # every later tick sees the cancelled attempt again
        await settle(harness)
    await eventually(lambda: _count_cancelled(harness, 1), "call stopped")
    await settle(harness)
    assert harness.notifier.stops == [("alice", StopReason.HANDLED)]
    (attempt,) = await harness.attempts(alert)
    assert (attempt.state, attempt.outcome) == (AttemptState.CANCELLED, AttemptOutcome.CANCELLED)
    assert attempt.sip_status == 487  # what the call reported, filled in after the cancel
    assert harness.engine.calls_in_progress == 0


class _KeyAlreadyPressed(ScriptedNotifier):
    """The callee pressed the key; the call is saying "acknowledged, goodbye" when the stop
    arrives, so it ends acknowledged a little later (as the real call script does)."""

    async def notify(self, notification: Notification, stop: StopRequest) -> NotifyResult:
        self.calls.append(notification)
        stopped = asyncio.Event()
        stop.subscribe(lambda reason: stopped.set())
        await stopped.wait()
        await asyncio.sleep(0.05)
        return ACK


async def test_shutdown_waits_for_calls_and_a_key_pressed_before_still_acknowledges(
    tmp_path: Path,
) -> None:
    clock = FakeClock(START)
    store = await Store.open(tmp_path / "voipalert.db", clock)
    await store.replace_rota(parse_rota(ROTA))
    notifier = _KeyAlreadyPressed()
    engine = Engine(store, notifier, clock, EngineConfig(idle_poll_seconds=3600))
    task = asyncio.create_task(engine.run())
    try:
        alert, _ = await store.create_or_join_alert(NewAlert("database down"))
        engine.wake()
        await eventually(lambda: _has_calls(notifier, 1), "alice dialled")
        await engine.shutdown(grace=5)
        detail = await store.get_alert_with_attempts(alert.id)
        assert detail is not None
        (attempt,) = detail.attempts
        assert (attempt.state, attempt.outcome) == (AttemptState.DONE, AttemptOutcome.ACKNOWLEDGED)
        assert detail.alert.status is AlertStatus.ACKNOWLEDGED
        assert engine.calls_in_progress == 0
        await store.create_or_join_alert(NewAlert("pump stopped", dedup_key="pump"))
        engine.wake()
        await asyncio.sleep(0.2)
        assert len(notifier.calls) == 1, "no call starts once the shutdown began"
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        await store.close()


async def _has_calls(notifier: ScriptedNotifier, n: int) -> bool:
    return len(notifier.calls) >= n


async def test_shutdown_records_an_unacknowledged_call_interrupted_with_its_facts(
    harness: Harness,
) -> None:
    harness.notifier.script = {"alice": [Hold()]}
    alert = await harness.trigger()
    await eventually(lambda: _count(harness, 1), "alice dialled")
    await harness.engine.shutdown(grace=5)
    (attempt,) = await harness.attempts(alert)
    assert attempt.state is AttemptState.INTERRUPTED
    assert attempt.sip_status == 487 and "stopped during the call" in (attempt.detail or "")
    assert harness.notifier.stops == [("alice", StopReason.SHUTDOWN)]


async def test_an_override_added_while_running_is_used_by_the_next_alert(
    harness: Harness,
) -> None:
    # First alert: the rota says alice. Then an override is added (as the CLI or the API
    # would: no rota import, no restart) and the next alert calls carol.
    harness.notifier.script = {"alice": [ACK], "carol": [ACK]}
    first = await harness.trigger("disk full")
    await eventually(lambda: _status(harness, first, AlertStatus.ACKNOWLEDGED), "first acked")
    cover = OverrideRequest("primary", "carol", "2026-03-02T09:00Z", "2026-03-03T09:00Z")
    await harness.store.add_override(cover, Origin.CLI, "alice")
    second = await harness.trigger("database down")
    await eventually(lambda: _status(harness, second, AlertStatus.ACKNOWLEDGED), "second acked")
    assert [n.person for n in harness.notifier.calls] == ["alice", "carol"]


class _SlowRecords(Store):
    """The real store, whose outcome commits wait for ``gate``: a database busy with the
    other calls' writes, as under a large mass alert."""

    gate: asyncio.Event

    async def finish_attempt(self, attempt_id: AttemptId, result: AttemptResult) -> bool:
        await self.gate.wait()
        return await super().finish_attempt(attempt_id, result)


async def test_a_line_is_free_as_soon_as_its_call_hangs_up(tmp_path: Path) -> None:
    # Two lines, five people: the first two calls end at once but their outcomes cannot be
    # committed yet. The next calls must still take the lines (a PBX channel is free when
    # the call hangs up, not when our database has caught up; docs/capacity.md).
    clock = FakeClock(START)
    store = await _SlowRecords.open(tmp_path / "voipalert.db", clock)
    assert isinstance(store, _SlowRecords)
    store.gate = asyncio.Event()
    await store.replace_rota(parse_rota(ROTA))
    notifier = ScriptedNotifier(default=ACK)
    hold = asyncio.Event()
    notifier.script = {p: [Hold(hold, ACK)] for p in ("carol", "dave", "erin")}
    engine = Engine(store, notifier, clock, EngineConfig(idle_poll_seconds=3600,
                                                         max_concurrent_calls=2))  # fmt: skip
    task = asyncio.create_task(engine.run())
    harness = Harness(store, engine, notifier, clock)
    try:
        alert = await harness.trigger("evacuate hall B", kind=AlertKind.MASS, team="ops")
        await eventually(lambda: _count(harness, 4), "two more calls while records wait")
        assert notifier.max_active == 2
        store.gate.set()
        hold.set()
        await eventually(lambda: _count(harness, 5), "everyone called")
        await settle(harness)
        attempts = await harness.attempts(alert)
        assert sorted(a.key.person for a in attempts) == ["alice", "bob", "carol", "dave", "erin"]
        assert {a.outcome for a in attempts} == {AttemptOutcome.ACKNOWLEDGED}
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        await store.close()


@pytest.mark.parametrize(("slice_seconds", "yields"), [(0.0, True), (3600.0, False)])
async def test_a_tick_over_many_alerts_gives_the_loop_back_between_them(
    tmp_path: Path, slice_seconds: float, yields: bool
) -> None:
    """Planning is CPU on the loop that paces every call's audio (about 0.3 ms an alert:
    10,000 open alerts held it for 3 s, benchmarks/README.md): the tick yields between
    alerts once its slice is spent. A slice of 0 yields after every alert; an endless one
    never does, the control that shows the count is the tick's own."""
    clock = FakeClock(START)
    store = await Store.open(tmp_path / "voipalert.db", clock)
    await store.replace_rota(parse_rota(ROTA))
    config = EngineConfig(idle_poll_seconds=3600, loop_slice_seconds=slice_seconds)
    engine = Engine(store, ScriptedNotifier(), clock, config)
    task = asyncio.create_task(engine.run())
    try:
        for i in range(30):
            await store.create_or_join_alert(NewAlert(f"disk {i} full", dedup_key=f"disk{i}"))
        engine.wake()
        # Every alert called alice once (no answer) and now waits for its step's timeout.
        await eventually(lambda: _attempts_done(store, 30), "every alert's first call ended")
        # A tick that began before the wake-up may end after it: the second one after the
        # wake-up surely planned all 30.
        before = engine.ticks
        engine.wake()
        await eventually(lambda: _true(engine.ticks > before), "one more tick")
        before = engine.ticks
        engine.wake()
        await eventually(lambda: _true(engine.ticks > before), "one more tick")
        assert len(await store.engine_snapshot()) == 30
        if yields:
            assert engine.last_tick_yields >= 29
        else:
            assert engine.last_tick_yields == 0
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        await store.close()


async def _attempts_done(store: Store, alerts: int) -> bool:
    """Every alert called someone and no call is still going: they all wait for a timeout."""
    snapshot = await store.engine_snapshot()
    return len(snapshot) == alerts and all(
        attempts and not any(a.state.is_live for a in attempts) for _, attempts in snapshot
    )


async def _true(value: bool) -> bool:
    return value
