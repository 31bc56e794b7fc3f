"""The alert list carries each alert's call attempts at a glance (real HTTP, real SQLite)."""

from __future__ import annotations

from tests.ingest.conftest import Api
from tests.ingest.test_webhook import ALERTS, _alert_with_attempt
from voipalert.clock import SystemClock
from voipalert.domain.alert import AlertId, AttemptKey, AttemptOutcome, AttemptResult
from voipalert.domain.policy import PlaceCall
from voipalert.domain.rota import Contact, ContactKind, Person, PersonName


async def test_each_listed_alert_has_an_attempts_summary(api: Api) -> None:
    called = await _alert_with_attempt(api)  # alice: no answer (487)
    bob = Person(PersonName("bob"), "en", (Contact(ContactKind.EXTENSION, "202"),))
    second = PlaceCall(AttemptKey(AlertId(called), 0, 1, bob.name, 1), bob, 0, bob.contacts[0], 30)
    attempt = await api.store.record_intent(second)
    assert attempt is not None and await api.store.start_attempt(attempt.id)
    dialling_only = await api.store.record_intent(
        PlaceCall(AttemptKey(AlertId(called), 0, 2, bob.name, 1), bob, 0, bob.contacts[0], 30)
    )
    assert dialling_only is not None
    await api.store.finish_attempt(
        attempt.id,
        AttemptResult(AttemptOutcome.BUSY, ended_at=SystemClock().now_utc(), sip_status=486),
    )
    _, quiet, _ = await api.call("POST", ALERTS, token="trigger", json={"summary": "no calls"})

    status, body, _ = await api.call("GET", ALERTS, token="reader")
    assert status == 200
    listed = {alert["id"]: alert["attempts"] for alert in body["alerts"]}
    summary = listed[called]
    assert summary["total"] == 3
    assert summary["live"] == 1  # the third is committed, not dialled yet
    assert summary["by_outcome"] == {"no_answer": 1, "busy": 1}
    assert summary["last_person"] == "bob" and summary["last_outcome"] == "pending"
    assert summary["last_at"] is not None
    assert listed[quiet["id"]] == {
        "total": 0, "live": 0, "by_outcome": {}, "last_person": None, "last_outcome": None,
        "last_at": None,
    }  # fmt: skip
