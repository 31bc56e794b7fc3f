"""Housekeeping's half in the store, on both backends: finished webhook deliveries older
than the retention go (with their events once no delivery is left), pending ones stay
whatever their age, and text replies and wrong call-in PINs of that age go too."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.store.conftest import Raw
from tests.store.test_store import ROTA, START
from voipalert.app.housekeeping import Housekeeping
from voipalert.clock import FakeClock
from voipalert.domain.alert import NewAlert
from voipalert.rotafile.parse import parse_rota
from voipalert.store import Store, StoreConfig


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
async def store(database: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Store]:
    opened = await Store.open(database, clock, StoreConfig(secret_file=tmp_path / "s.secret"))
    await opened.replace_rota(parse_rota(ROTA))
    try:
        yield opened
    finally:
        await opened.close()


async def test_old_finished_rows_go_and_pending_ones_stay(
    store: Store, clock: FakeClock, raw: Raw
) -> None:
    await store.set_status_targets({"chat": ["created", "resolved"], "down": ["created"]})
    alert, _ = await store.create_or_join_alert(NewAlert("disk full"))
    sent = await store.next_delivery("chat")
    assert sent is not None
    await store.delivery_done(sent)  # chat: done; down: still pending (its receiver is down)
    await store.log_text_reply("203@pbx", "1", "no_open_text")
    await store.callin_pin_failed(["caller:x@y"], caller="x@y", person=None, locked=False)
    keeper = Housekeeping(store, clock, retention_days=30)
    assert await keeper.once() == 0  # nothing old enough yet
    clock.advance(timedelta(days=31).total_seconds())
    await store.resolve_alert(alert.id, by="api")  # a fresh row, kept
    assert await keeper.once() == 1
    rows = await store.deliveries_of(alert.id)
    assert [(r.target, r.event, r.state) for r in rows] == [
        ("down", "created", "pending"),
        ("chat", "resolved", "pending"),
    ]
    assert rows[1].at is not None and rows[1].sent_at is None
    # The "created" event stays while its "down" delivery is pending.
    events = await raw.execute("SELECT event FROM status_events ORDER BY id")
    assert [e[0] for e in events] == ["created", "resolved"]
    assert await raw.execute("SELECT COUNT(*) FROM text_replies") == [(0,)]
    assert await raw.execute("SELECT COUNT(*) FROM callin_pin_failures") == [(0,)]
    assert await keeper.once() == 0
