"""Notification rules through the real engine and store, on the fake clock: the rules due
at once run together, a later one waits for its delay, an acknowledgement stops the rest,
and a method nobody configured fails its attempt without stopping the others."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import suppress
from pathlib import Path

import pytest

from tests.scripted_notifier import ACK, ANSWERED_NO_ACK, NO_ANSWER, Hold, ScriptedNotifier
from tests.test_engine import START, Harness, eventually, settle
from voipalert.clock import FakeClock
from voipalert.domain.alert import AlertStatus, AttemptOutcome
from voipalert.domain.rota import NotifyMethod
from voipalert.engine import Engine, EngineConfig
from voipalert.notify.channels import ChannelNotifier
from voipalert.rotafile.parse import parse_rota
from voipalert.store import Store

ROTA = """
people:
  - name: alice
    contacts:
      - {extension: "201", name: desk}
      - {number: "+33612345678", name: mobile}
    rules:
      - {contact: desk, method: message}
      - {contact: desk, method: call}
      - {contact: mobile, method: call, after: 2m}
  - {name: bob, contacts: [{extension: "202"}]}
policies:
  - name: default
    steps:
      - {targets: [{person: alice}], timeout: 300, ring_timeout: 30}
      - {targets: [{person: bob}], timeout: 300, ring_timeout: 25}
routes:
  - {name: all, default: true, policy: default}
"""


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    clock = FakeClock(START)
    store = await Store.open(tmp_path / "voipalert.db", clock)
    await store.replace_rota(parse_rota(ROTA))
    notifier = ScriptedNotifier()
    config = EngineConfig(idle_poll_seconds=3600, max_concurrent_calls=4)
    engine = Engine(store, notifier, clock, config)
    task = asyncio.create_task(engine.run())
    try:
        yield Harness(store, engine, notifier, clock)
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        await store.close()


async def test_rules_run_at_their_delays_then_escalate(harness: Harness) -> None:
    harness.notifier.script = {"alice": [ANSWERED_NO_ACK, NO_ANSWER, NO_ANSWER]}
    alert = await harness.trigger()
    await eventually(lambda: _ended(harness, alert.id, 2), "the two rules due at once")
    await settle(harness)
    sent = [(n.method, n.contact.address) for n in harness.notifier.calls]
    assert sent == [(NotifyMethod.MESSAGE, "201"), (NotifyMethod.CALL, "201")]
    await harness.advance(119)
    await settle(harness)
    assert len(harness.notifier.calls) == 2, "the 2-minute rule is not due yet"
    await harness.advance(1)
    await eventually(lambda: _ended(harness, alert.id, 3), "the mobile")
    await settle(harness)
    assert len(harness.notifier.calls) == 3, "the step waits for a reply until its timeout"
    await harness.advance(180)
    await eventually(lambda: _ended(harness, alert.id, 4), "then bob")
    methods = [(n.person, n.method, n.contact.address) for n in harness.notifier.calls]
    assert methods[2:] == [
        ("alice", NotifyMethod.CALL, "+33612345678"),
        ("bob", NotifyMethod.CALL, "202"),
    ]


async def test_an_ack_stops_the_rules_not_yet_due(harness: Harness) -> None:
    harness.notifier.script = {"alice": [ANSWERED_NO_ACK, ACK]}
    alert = await harness.trigger()
    await eventually(
        lambda: _status(harness, alert.id, AlertStatus.ACKNOWLEDGED), "acknowledged by the call"
    )
    await harness.advance(600)
    await settle(harness)
    assert [n.method for n in harness.notifier.calls] == [NotifyMethod.MESSAGE, NotifyMethod.CALL]


async def test_a_method_without_a_channel_fails_and_the_other_rules_go_on(
    harness: Harness, tmp_path: Path
) -> None:
    calls = ScriptedNotifier({"alice": [ACK]})
    harness.engine._notifier = ChannelNotifier({NotifyMethod.CALL: calls})
    alert = await harness.trigger()
    await eventually(lambda: _status(harness, alert.id, AlertStatus.ACKNOWLEDGED), "acked")
    await settle(harness)
    detail = await harness.store.get_alert_with_attempts(alert.id)
    assert detail is not None
    by_method = {a.method: a for a in detail.attempts}
    failed = by_method[NotifyMethod.MESSAGE]
    assert failed.outcome is AttemptOutcome.FAILED
    assert failed.detail == "no message channel is configured"
    assert by_method[NotifyMethod.CALL].outcome is AttemptOutcome.ACKNOWLEDGED


async def _ended(harness: Harness, alert_id: int, count: int) -> bool:
    detail = await harness.store.get_alert_with_attempts(alert_id)
    return detail is not None and sum(a.outcome is not None for a in detail.attempts) >= count


async def _status(harness: Harness, alert_id: int, status: AlertStatus) -> bool:
    fresh = await harness.store.get_alert(alert_id)
    return fresh is not None and fresh.status is status


async def test_a_text_does_not_wait_for_a_phone_line(tmp_path: Path) -> None:
    clock = FakeClock(START)
    store = await Store.open(tmp_path / "lines.db", clock)
    rota = ROTA.replace(
        "      - {contact: desk, method: message}\n      - {contact: desk, method: call}\n",
        "      - {contact: desk, method: call}\n      - {contact: desk, method: message}\n",
    )
    await store.replace_rota(parse_rota(rota))
    held = Hold()
    notifier = ScriptedNotifier({"alice": [held, ANSWERED_NO_ACK]})
    # One line, taken by the call that rings on: the text goes out all the same.
    engine = Engine(
        store, notifier, clock, EngineConfig(idle_poll_seconds=3600, max_concurrent_calls=1)
    )
    task = asyncio.create_task(engine.run())
    harness = Harness(store, engine, notifier, clock)
    try:
        alert = await harness.trigger()
        await eventually(lambda: _ended(harness, alert.id, 1), "the text, beside the held call")
        detail = await store.get_alert_with_attempts(alert.id)
        assert detail is not None
        text = next(a for a in detail.attempts if a.method is NotifyMethod.MESSAGE)
        assert text.outcome is AttemptOutcome.ANSWERED_NO_ACK
        assert engine.calls_in_progress == 1
        held.gate.set()
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        await store.close()
