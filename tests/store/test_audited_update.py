"""``alert_sql.update_audited`` and ``alert_sql.acknowledge`` on both backends: a change and
its audit entry commit together or not at all, one entry per changed row, none for a row the
``WHERE`` skipped; an alert is acknowledged once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.stores import ALICE_ROTA, opened_store
from voipalert.clock import FakeClock
from voipalert.domain.alert import AlertStatus, NewAlert
from voipalert.store import Store, alert_sql
from voipalert.store.alert_sql import Note
from voipalert.store.sql import Row

START = datetime(2026, 3, 2, 10, tzinfo=UTC)
RENAME = "UPDATE alerts SET summary = ? WHERE status = 'triggered' AND summary = ? RETURNING id"


class Boom(Exception):
    pass


@pytest.fixture
async def store(database: str, tmp_path: Path) -> AsyncIterator[Store]:
    async with opened_store(
        database, FakeClock(START), ALICE_ROTA, tmp_path / "store.secret"
    ) as opened:
        yield opened


def _renamed(row: Row) -> Note:
    return Note("tester", "alert.renamed", row["id"], detail={"to": "disk fine"})


async def test_one_entry_per_changed_row_and_none_for_a_skipped_one(store: Store) -> None:
    first, _ = await store.create_or_join_alert(NewAlert("disk full", dedup_key="a"))
    second, _ = await store.create_or_join_alert(NewAlert("disk full", dedup_key="b"))
    async with store._db.transaction(write=True) as conn:
        rows = await alert_sql.update_audited(
            conn, RENAME, ("disk fine", "disk full"), START, _renamed
        )
        assert sorted(r["id"] for r in rows) == [first.id, second.id]
        # Nothing matches any more: no row, no entry.
        again = await alert_sql.update_audited(
            conn, RENAME, ("disk fine", "disk full"), START, _renamed
        )
        assert again == []
    renamed = [e for e in await store.audit_trail() if e.action == "alert.renamed"]
    assert sorted((e.alert_id, e.actor, dict(e.detail)["to"]) for e in renamed) == [
        (first.id, "tester", "disk fine"),
        (second.id, "tester", "disk fine"),
    ]


async def test_a_failed_transaction_keeps_neither_the_change_nor_its_entry(store: Store) -> None:
    alert, _ = await store.create_or_join_alert(NewAlert("disk full"))
    with pytest.raises(Boom):
        async with store._db.transaction(write=True) as conn:
            rows = await alert_sql.update_audited(
                conn, RENAME, ("disk fine", "disk full"), START, _renamed
            )
            assert len(rows) == 1
            raise Boom
    kept = await store.get_alert(alert.id)
    assert kept is not None and kept.summary == "disk full"
    assert [e for e in await store.audit_trail() if e.action == "alert.renamed"] == []


async def test_an_alert_is_acknowledged_once(store: Store) -> None:
    alert, _ = await store.create_or_join_alert(NewAlert("disk full"))
    async with store._db.transaction(write=True) as conn:
        first = await alert_sql.acknowledge(
            conn, START, alert.id, "alice", via="api", attempt_id=None, wake_engine=True
        )
        second = await alert_sql.acknowledge(
            conn, START, alert.id, "bob", via="api", attempt_id=None, wake_engine=True
        )
    assert (first, second) == ([], None)  # no attempt was pending; the second found it taken
    acked = await store.get_alert(alert.id)
    assert acked is not None and acked.status is AlertStatus.ACKNOWLEDGED
    entries = [e for e in await store.audit_trail(alert.id) if e.action == "alert.acknowledged"]
    assert [(e.actor, dict(e.detail)) for e in entries] == [("alice", {"via": "api"})]
