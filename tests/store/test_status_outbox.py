"""The status webhook outbox: the audit trigger queues one event per change, in the change's
own transaction, for each target whose filter takes it; per target and alert the
deliveries come out in order; nothing is queued while no target is configured."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from tests.store.test_store import ROTA, START, _intent
from tests.stores import opened_store
from voipalert.clock import FakeClock
from voipalert.domain.alert import AttemptOutcome, AttemptResult, NewAlert, Position
from voipalert.store import Store
from voipalert.store.db import to_db

ALL = ["created", "escalated", "call", "acknowledged", "resolved", "closed"]


@pytest.fixture
async def store(database: str, tmp_path: Path) -> AsyncIterator[Store]:
    async with opened_store(database, FakeClock(START), ROTA, tmp_path / "store.secret") as opened:
        yield opened


async def test_nothing_is_queued_without_targets(store: Store) -> None:
    alert, _ = await store.create_or_join_alert(NewAlert("disk full"))
    await store.resolve_alert(alert.id, by="api")
    assert await store.deliveries_of(alert.id) == []


async def test_every_change_is_queued_for_each_target_that_wants_it(store: Store) -> None:
    await store.set_status_targets({"chat": ["created", "resolved"], "siem": ALL})
    alert, _ = await store.create_or_join_alert(NewAlert("disk full"))
    attempt = await store.record_intent(await _intent(store, alert.id))
    assert attempt is not None and await store.start_attempt(attempt.id)
    result = AttemptResult(AttemptOutcome.NO_ANSWER, START, 480, "Temporarily Unavailable")
    assert await store.finish_attempt(attempt.id, result) is False
    at = Position(0, 0, alert.created_at)
    moved = Position(0, 1, alert.created_at + timedelta(minutes=5))
    assert await store.advance_escalation(alert.id, at, moved, "timeout")
    await store.ack_alert(alert.id, by="bob", via="api", token="ops-token")
    await store.resolve_alert(alert.id, by="api")
    rows = await store.deliveries_of(alert.id)
    assert [(r.target, r.event) for r in rows if r.target == "chat"] == [
        ("chat", "created"),
        ("chat", "resolved"),
    ]
    assert [r.event for r in rows if r.target == "siem"] == [
        "created", "call", "escalated", "acknowledged", "resolved",
    ]  # fmt: skip
    assert {r.state for r in rows} == {"pending"}
    first = await store.next_delivery("siem")
    assert first is not None and first.event == "created"
    assert first.payload["alert"]["summary"] == "disk full"
    assert first.payload["alert"]["status"] == "triggered", "a snapshot of that moment"


async def test_the_snapshot_carries_the_call_and_hides_the_token(store: Store) -> None:
    await store.set_status_targets({"siem": ["call", "acknowledged"]})
    alert, _ = await store.create_or_join_alert(NewAlert("disk full"))
    attempt = await store.record_intent(await _intent(store, alert.id))
    assert attempt is not None and await store.start_attempt(attempt.id)
    acked = AttemptResult(AttemptOutcome.ACKNOWLEDGED, START, 200, "OK", "1", START)
    assert await store.finish_attempt(attempt.id, acked)
    call = await store.next_delivery("siem")
    assert call is not None and call.event == "call"
    assert call.payload["call"]["person"] == "alice"
    assert call.payload["call"]["outcome"] == "acknowledged"
    assert call.payload["actor"] == "engine"
    await store.delivery_done(call)
    ack = await store.next_delivery("siem")
    assert ack is not None and ack.event == "acknowledged"
    assert ack.payload["alert"]["acked_by"] == "alice"
    alert2, _ = await store.create_or_join_alert(NewAlert("cpu hot", dedup_key="cpu"))
    await store.ack_alert(alert2.id, by="bob", via="api", token="secret-token-name")
    rows = await store.deliveries_of(alert2.id)
    assert [r.event for r in rows] == ["acknowledged"]
    await store.delivery_done(ack)
    later = await store.next_delivery("siem")
    assert later is not None and "token" not in later.payload["detail"]


async def test_a_retrying_delivery_holds_back_its_alert_only(store: Store) -> None:
    await store.set_status_targets({"chat": ALL})
    first, _ = await store.create_or_join_alert(NewAlert("one", dedup_key="one"))
    second, _ = await store.create_or_join_alert(NewAlert("two", dedup_key="two"))
    await store.resolve_alert(first.id, by="api")
    created = await store.next_delivery("chat")
    assert created is not None and created.alert_id == first.id
    await store.delivery_failed(created, "HTTP 500", START + timedelta(minutes=1))
    # first's "resolved" waits behind its "created"; second's "created" goes.
    other = await store.next_delivery("chat")
    assert other is not None and (other.alert_id, other.event) == (second.id, "created")
    await store.delivery_done(other)
    assert await store.next_delivery("chat") is None
    assert await store.next_delivery_due("chat") == START + timedelta(minutes=1)
    # Its second try (as read again when due: one try made), dead: the rest may go.
    assert await store.delivery_failed(replace(created, tries=1), "HTTP 400", None)
    resolved = await store.next_delivery("chat")
    assert resolved is not None and (resolved.alert_id, resolved.event) == (first.id, "resolved")
    assert await store.delivery_counts() == {("chat", "dead"): 1, ("chat", "done"): 1,
                                             ("chat", "pending"): 1}  # fmt: skip


async def test_a_target_removed_from_the_configuration_gets_nothing_more(store: Store) -> None:
    await store.set_status_targets({"chat": ALL, "old": ALL})
    alert, _ = await store.create_or_join_alert(NewAlert("disk full"))
    assert await store.set_status_targets({"chat": ["resolved"]}) == 1
    await store.resolve_alert(alert.id, by="api")
    rows = await store.deliveries_of(alert.id)
    assert [(r.target, r.event, r.state) for r in rows] == [
        ("chat", "created", "pending"),
        ("old", "created", "cancelled"),
        ("chat", "resolved", "pending"),
    ]
    assert await store.next_delivery("old") is None


async def test_the_payload_is_the_same_document_on_both_backends(store: Store) -> None:
    # SQLite builds it with json_object, PostgreSQL with json_build_object (schema_pg/0008):
    # the receiver must not tell them apart.
    await store.set_status_targets({"siem": ["created", "call"]})
    alert, _ = await store.create_or_join_alert(
        NewAlert("disk full", source="grafana", labels={"host": "db1", "n": "2"})
    )
    created = await store.next_delivery("siem")
    assert created is not None
    assert created.payload == {
        "actor": "grafana",
        "detail": created.payload["detail"],
        "alert": {
            "id": alert.id, "kind": "escalation", "status": "triggered",
            "severity": "critical", "summary": "disk full", "source": "grafana",
            "labels": {"host": "db1", "n": "2"}, "created_at": to_db(alert.created_at),
            "acked_by": None, "acked_via": None, "resolved_by": None,
            "escalation_repeat": 0, "escalation_step": 0,
        },
        "call": None,
    }  # fmt: skip
    assert list(created.payload) == ["actor", "detail", "alert", "call"]
    await store.delivery_done(created)
    attempt = await store.record_intent(await _intent(store, alert.id))
    assert attempt is not None and await store.start_attempt(attempt.id)
    result = AttemptResult(AttemptOutcome.BUSY, START, 486, "Busy Here")
    await store.finish_attempt(attempt.id, result)
    call = await store.next_delivery("siem")
    assert call is not None
    assert call.payload["call"] == {
        "attempt_id": attempt.id, "person": "alice", "contact_kind": "extension",
        "outcome": "busy", "sip_status": 486,
    }  # fmt: skip
