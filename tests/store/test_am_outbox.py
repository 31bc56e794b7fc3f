"""The silence outbox: every way an alert from an Alertmanager is acknowledged queues one
silence request in the ack's own transaction; closing it queues the expiry only when a
silence was asked for; alerts from elsewhere queue nothing. Plus the heartbeat rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.store.test_store import ROTA, START, _intent
from tests.stores import opened_store
from voipalert.clock import FakeClock
from voipalert.domain.alert import AttemptOutcome, AttemptResult, NewAlert
from voipalert.store import Store
from voipalert.store.am_outbox import AmLink
from voipalert.store.heartbeat import HeartbeatExists

LINK = AmLink("default", "http://127.0.0.1:9093", {"alertname": "HostDown"}, 3600)


@pytest.fixture
async def store(database: str, tmp_path: Path) -> AsyncIterator[Store]:
    async with opened_store(database, FakeClock(START), ROTA, tmp_path / "store.secret") as opened:
        yield opened


async def _am_alert(store: Store, key: str = "alertmanager:group:1") -> int:
    alert, created = await store.create_or_join_alert(
        NewAlert("3 alerts: HostDown on db1, db2, db3", source="alertmanager", dedup_key=key),
        LINK,
    )
    assert created
    return alert.id


async def test_a_key_press_queues_a_silence(store: Store) -> None:
    alert_id = await _am_alert(store)
    attempt = await store.record_intent(await _intent(store, alert_id))
    assert attempt is not None and await store.start_attempt(attempt.id)
    acked = AttemptResult(AttemptOutcome.ACKNOWLEDGED, START, 200, "OK", "1", START)
    assert await store.finish_attempt(attempt.id, acked)
    [item] = await store.due_outbox()
    assert (item.alert_id, item.action, item.acked_by) == (alert_id, "silence", "alice")
    assert item.link == LINK


async def test_api_ack_then_resolve_queues_silence_then_expiry(store: Store) -> None:
    alert_id = await _am_alert(store)
    await store.ack_alert(alert_id, by="bob", via="api")
    await store.ack_alert(alert_id, by="bob", via="api")  # a second ack changes nothing
    await store.resolve_alert(alert_id, by="api")
    rows = await store.outbox_of(alert_id)
    assert [(r.action, r.state) for r in rows] == [("silence", "pending"), ("expire", "pending")]
    items = await store.due_outbox()
    assert [i.action for i in items] == ["silence", "expire"]
    assert items[1].silence_state == "pending"  # the silencer cancels both
    await store.outbox_cancel_silence(items[1])
    assert {r.state for r in await store.outbox_of(alert_id)} == {"cancelled"}


async def test_nothing_is_queued_without_an_ack_or_a_link(store: Store) -> None:
    alert_id = await _am_alert(store)
    await store.resolve_alert(alert_id, by="alertmanager")  # never acknowledged: no silence
    plain, _ = await store.create_or_join_alert(NewAlert("disk full", dedup_key="x"))
    await store.ack_alert(plain.id, by="bob", via="api")  # not from an Alertmanager
    assert await store.due_outbox() == []


async def test_a_repeat_refreshes_the_text_and_keeps_one_link(store: Store) -> None:
    alert_id = await _am_alert(store)
    grown = NewAlert(
        "4 alerts: HostDown on db1, db2, db3, db4", source="alertmanager",
        dedup_key="alertmanager:group:1", refresh=True,
    )  # fmt: skip
    alert, created = await store.create_or_join_alert(grown, LINK)
    assert not created and alert.id == alert_id
    assert alert.summary == grown.summary and alert.occurrences == 2
    same = NewAlert("other text", source="alertmanager", dedup_key="alertmanager:group:1")
    alert, _ = await store.create_or_join_alert(same, LINK)
    assert alert.summary == grown.summary  # without refresh a repeat is only counted
    await store.ack_alert(alert_id, by="bob", via="api")
    assert len(await store.due_outbox()) == 1


async def test_failed_tries_wait_for_their_backoff(store: Store) -> None:
    alert_id = await _am_alert(store)
    await store.ack_alert(alert_id, by="bob", via="api")
    [item] = await store.due_outbox()
    await store.outbox_retry(item, "refused", START + timedelta(seconds=10))
    assert await store.due_outbox() == []
    assert await store.next_outbox_due() == START + timedelta(seconds=10)
    [row] = await store.outbox_of(alert_id)
    assert (row.tries, row.last_error) == (1, "refused")
    assert await store.outbox_counts() == {"pending": 1}


async def test_heartbeat_rows(store: Store) -> None:
    heartbeat, token = await store.add_heartbeat("backup", 300, 60)
    assert heartbeat.deadline() == START + timedelta(seconds=360)
    with pytest.raises(HeartbeatExists):
        await store.add_heartbeat("backup", 60)
    assert await store.record_beat("hb_wrong") is None
    before = await store.record_beat(token)
    assert before is not None and before.beats == 0
    assert not await store.mark_heartbeat_down("backup", START - timedelta(seconds=1))
    assert await store.mark_heartbeat_down("backup", START)
    assert (await store.list_heartbeats())[0].down
    assert await store.remove_heartbeat("backup")
    assert await store.record_beat(token) is None
