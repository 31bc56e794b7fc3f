"""Replies to texts against the real store: only the texted contact's "1", within the
window, for an alert still triggered, acknowledges (abuse: wrong sender, another alert,
late reply, floods)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.stores import opened_store
from voipalert.clock import FakeClock
from voipalert.domain.alert import AlertStatus, AttemptOutcome, AttemptResult, NewAlert
from voipalert.domain.policy import PlaceCall, plan
from voipalert.domain.rota import NotifyMethod
from voipalert.notify.message import compose_text, outcome_for
from voipalert.notify.replies import TextReplies, parse_reply
from voipalert.sip.events import TextDone, TextId, TextReceived
from voipalert.sip.uri import SipUri
from voipalert.store import Store

START = datetime(2026, 3, 2, 10, tzinfo=UTC)
DOMAIN = "pbx.example.com"
ROTA = """
people:
  - name: carol
    contacts: [{extension: "203", name: desk}]
    rules: [{contact: desk, method: message}]
  - name: dave
    contacts: [{sip: "sip:dave@pbx.example.com", name: desk}]
    rules: [{contact: desk, method: message}]
policies:
  - name: default
    steps: [{targets: [{person: carol}, {person: dave}], timeout: 300}]
routes:
  - {name: rest, default: true, policy: default}
"""
CAROL = SipUri(user="203", host="PBX.example.com", port=5060)
DAVE = SipUri(user="dave", host=DOMAIN)
MALLORY = SipUri(user="mallory", host=DOMAIN)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
async def store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Store]:
    async with opened_store(tmp_path / "voipalert.db", clock, ROTA) as opened:
        yield opened


class Woken:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


async def texted(store: Store, summary: str) -> int:
    """An alert whose texts went out and were delivered (as the engine records them)."""
    alert, _ = await store.create_or_join_alert(NewAlert(summary))
    fresh = await store.get_alert(alert.id)
    assert fresh is not None
    for action in plan(fresh, await store.load_rota(), [], START):
        if isinstance(action, PlaceCall):
            assert action.method is NotifyMethod.MESSAGE
            attempt = await store.record_intent(action)
            assert attempt is not None and await store.start_attempt(attempt.id)
            delivered = AttemptResult(AttemptOutcome.ANSWERED_NO_ACK, START, 200, "OK")
            await store.finish_attempt(attempt.id, delivered)
    return alert.id


def reply(sender: SipUri, body: str) -> TextReceived:
    return TextReceived(sender, body, ("192.0.2.10", 5060))


def replies(store: Store, clock: FakeClock, woken: Woken) -> TextReplies:
    return TextReplies(store, clock, DOMAIN, woken, reply_window_seconds=600, replies_per_minute=3)


async def status(store: Store, alert_id: int) -> AlertStatus:
    alert = await store.get_alert(alert_id)
    assert alert is not None
    return alert.status


async def test_a_1_from_the_texted_contact_acknowledges_the_newest_alert(
    store: Store, clock: FakeClock
) -> None:
    woken = Woken()
    first = await texted(store, "disk full")
    second = await texted(store, "database down")
    handler = replies(store, clock, woken)
    assert await handler.handle(reply(CAROL, " 1 ")) == "acknowledged"
    assert await status(store, second) is AlertStatus.ACKNOWLEDGED
    assert await status(store, first) is AlertStatus.TRIGGERED
    alert = await store.get_alert(second)
    assert alert is not None and (alert.acked_by, alert.acked_via) == ("carol", "message")
    assert woken.count == 1
    assert await handler.handle(reply(CAROL, "1")) == "acknowledged"  # then the older one
    assert await status(store, first) is AlertStatus.ACKNOWLEDGED


async def test_1_with_an_alert_number_picks_that_alert(store: Store, clock: FakeClock) -> None:
    first = await texted(store, "disk full")
    await texted(store, "database down")
    handler = replies(store, clock, Woken())
    assert await handler.handle(reply(DAVE, f"1 #{first}")) == "acknowledged"
    assert await status(store, first) is AlertStatus.ACKNOWLEDGED


async def test_abuse_replies_change_nothing(store: Store, clock: FakeClock) -> None:
    alert_id = await texted(store, "disk full")
    handler = replies(store, clock, Woken())
    # A sender we never texted (the agent answers 403 first; here the store is the check).
    assert await handler.handle(reply(MALLORY, "1")) == "no_open_text"
    # A number for an alert that was not texted to this contact.
    assert await handler.handle(reply(CAROL, "1 99999")) == "no_open_text"
    assert await handler.handle(reply(CAROL, "yes please")) == "not_understood"
    assert await handler.handle(reply(CAROL, "11")) == "not_understood"
    assert await status(store, alert_id) is AlertStatus.TRIGGERED
    clock.advance(601)  # past the reply window
    assert await handler.handle(reply(DAVE, "1")) == "no_open_text"
    assert await status(store, alert_id) is AlertStatus.TRIGGERED


async def test_a_reply_for_a_handled_alert_is_logged_as_such(
    store: Store, clock: FakeClock
) -> None:
    alert_id = await texted(store, "disk full")
    await store.resolve_alert(alert_id, "api")
    handler = replies(store, clock, Woken())
    assert await handler.handle(reply(CAROL, "1")) == "already_handled"
    assert await status(store, alert_id) is AlertStatus.RESOLVED


async def test_a_flood_from_one_sender_is_cut_to_its_budget(store: Store, clock: FakeClock) -> None:
    await texted(store, "disk full")
    handler = replies(store, clock, Woken())
    results = [await handler.handle(reply(DAVE, "hello")) for _ in range(5)]
    assert results == ["not_understood"] * 3 + [None, None]
    assert await handler.handle(reply(CAROL, "1")) == "acknowledged"  # others unaffected
    clock.advance(60)
    assert await handler.handle(reply(DAVE, "hello")) == "not_understood"


def test_parse_reply() -> None:
    assert parse_reply("1", "1").acknowledge
    assert parse_reply(" 1 #42 ", "1").alert_id == 42
    assert parse_reply("1 42.", "1").alert_id == 42
    assert not parse_reply("12", "1").acknowledge
    assert parse_reply("1#12", "1").alert_id == 12
    assert not parse_reply("1 abc", "1").acknowledge
    assert not parse_reply("", "1").acknowledge


def test_the_text_puts_the_instruction_first_and_maps_answers() -> None:
    text = compose_text(
        {"alert_id": "7", "severity": "critical", "summary": "db\r\ndown"}, "fr", "1"
    )
    assert text == "voipalert alerte n°7 (critical). Répondez 1 pour acquitter.\ndb down"
    assert outcome_for(TextDone(TextId("x"), 200, "OK")) is AttemptOutcome.ANSWERED_NO_ACK
    assert outcome_for(TextDone(TextId("x"), 480, "Offline")) is AttemptOutcome.UNREACHABLE
    assert outcome_for(TextDone(TextId("x"), 415, "No")) is AttemptOutcome.FAILED
