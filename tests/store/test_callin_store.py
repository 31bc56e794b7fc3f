"""The store's half of call-in, on both backends: PINs (kept as a keyed digest, never in
clear), identification by PIN (a shared PIN identifies nobody), the failure count behind
the hourly limit, and the open alerts a caller hears."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.store.conftest import Raw
from voipalert.clock import FakeClock
from voipalert.domain.alert import NewAlert
from voipalert.domain.policy import PlaceCall, plan
from voipalert.rotafile.parse import parse_rota
from voipalert.store import Store, StoreConfig

START = datetime(2026, 3, 2, 10, tzinfo=UTC)
ROTA = """
people:
  - {name: alice, contacts: [{extension: "201"}]}
  - {name: bob, contacts: [{extension: "202"}]}
policies:
  - name: default
    steps: [{targets: [{person: alice}], timeout: 300}]
routes:
  - {name: rest, default: true, policy: default}
"""


@pytest.fixture
async def store(database: str, tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(
        database, FakeClock(START), StoreConfig(secret_file=tmp_path / "store.secret")
    )
    await opened.replace_rota(parse_rota(ROTA))
    try:
        yield opened
    finally:
        await opened.close()


async def test_pins_are_digests_and_identify(store: Store, raw: Raw) -> None:
    await store.set_callin_pin("alice", "4711", may_resolve=True, actor="cli")
    await store.set_callin_pin("bob", "123456", may_resolve=False, actor="cli")
    rows = await raw.execute("SELECT person_name, pin_digest FROM callin_people ORDER BY 1")
    assert [r[0] for r in rows] == ["alice", "bob"]
    assert all("4711" not in r[1] and len(r[1]) == 64 for r in rows)
    assert await store.callin_check_pin("4711", "alice") == "alice"
    assert await store.callin_check_pin("4711", "bob") is None
    assert await store.callin_check_pin("4711", None) == "alice"
    assert await store.callin_check_pin("0000", None) is None
    assert await store.callin_check_pin("12'; --", None) is None
    person = await store.callin_person("alice")
    assert person is not None and person.has_pin and person.may_resolve
    assert await store.callin_person("carol") is None


async def test_a_shared_pin_identifies_only_with_the_person(store: Store) -> None:
    await store.set_callin_pin("alice", "2222", may_resolve=False, actor="cli")
    await store.set_callin_pin("bob", "2222", may_resolve=False, actor="cli")
    assert await store.callin_check_pin("2222", None) is None
    assert await store.callin_check_pin("2222", "bob") == "bob"


async def test_bad_pins_are_refused_and_a_pin_can_be_cleared(store: Store) -> None:
    for bad in ("123", "123456789", "12a4", ""):
        with pytest.raises(ValueError, match="4 to 8 digits"):
            await store.set_callin_pin("alice", bad, may_resolve=False, actor="cli")
    await store.set_callin_pin("alice", "4711", may_resolve=False, actor="cli")
    await store.set_callin_pin("alice", None, may_resolve=False, actor="cli")
    assert await store.callin_check_pin("4711", "alice") is None
    trail = [e.action for e in await store.audit_trail(None)]
    assert "callin.pin_set" in trail and "callin.pin_cleared" in trail


async def test_failures_are_counted_per_subject_and_locking_is_audited(store: Store) -> None:
    await store.callin_pin_failed(["caller:sip:666@x", "person:alice"], caller="sip:666@x",
                                  person="alice", locked=False)  # fmt: skip
    await store.callin_pin_failed(["caller:sip:666@x"], caller="sip:666@x", person=None,
                                  locked=True)  # fmt: skip
    hour_ago = START - timedelta(hours=1)
    assert await store.callin_failures_since("caller:sip:666@x", hour_ago) == 2
    assert await store.callin_failures_since("person:alice", hour_ago) == 1
    assert await store.callin_failures_since("person:alice", START + timedelta(seconds=1)) == 0
    assert "callin.locked_out" in [e.action for e in await store.audit_trail(None)]
    await store.prune_callin_failures(START + timedelta(seconds=1))
    assert await store.callin_failures_since("caller:sip:666@x", hour_ago) == 0


async def test_open_alerts_are_the_triggered_ones_the_person_was_notified_of(
    store: Store,
) -> None:
    first, _ = await store.create_or_join_alert(NewAlert("disk full", dedup_key="a"))
    second, _ = await store.create_or_join_alert(NewAlert("db down", dedup_key="b"))
    await store.create_or_join_alert(NewAlert("never called", dedup_key="c"))
    for alert in (first, second):
        fresh = await store.get_alert(alert.id)
        assert fresh is not None
        for action in plan(fresh, await store.load_rota(), [], START):
            if isinstance(action, PlaceCall):
                await store.record_intent(action)
    assert [a.id for a in await store.callin_open_alerts("alice")] == [first.id, second.id]
    assert await store.callin_open_alerts("bob") == []
    await store.ack_alert(first.id, "alice", "call-in")
    assert [a.id for a in await store.callin_open_alerts("alice")] == [second.id]
