"""Overrides made one at a time on a real SQLite file: add, list, remove with the audit
log, the engine's reload counter, the import that keeps them (or refuses, all or nothing),
and a CSV imported twice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.store.conftest import Raw, RawError
from tests.stores import opened_store
from voipalert.clock import FakeClock
from voipalert.domain.errors import RotaError
from voipalert.domain.oncall import who_is_on_call
from voipalert.domain.override_edit import Origin, OverrideRequest
from voipalert.rotafile.parse import parse_rota
from voipalert.store import Store
from voipalert.store.overrides import OverridesOrphaned

ROTA = """
people:
  - {name: alice, contacts: [{extension: "201"}]}
  - {name: bob, contacts: [{extension: "202"}]}
  - {name: carol, contacts: [{extension: "203"}]}
schedules:
  - name: primary
    time_zone: Europe/Paris
    layers:
      - {name: main, members: [alice], shift_length: 1, shift_unit: weeks,
         start: 2026-01-05, handoff: "09:00"}
  - name: secondary
    time_zone: Europe/Paris
    layers:
      - {name: main, members: [carol], shift_length: 1, shift_unit: weeks,
         start: 2026-01-05, handoff: "09:00"}
overrides:
  - {schedule: primary, person: carol, start: "2026-04-01T09:00", end: "2026-04-02T09:00"}
"""
NOW = datetime(2026, 3, 2, 10, tzinfo=UTC)
SATURDAY = OverrideRequest("primary", "bob", "2026-03-28 18:00", "2026-03-29 18:00", note="swap")


@pytest.fixture
async def store(database: str, tmp_path: Path) -> AsyncIterator[Store]:
    async with opened_store(database, FakeClock(NOW), ROTA, tmp_path / "store.secret") as opened:
        yield opened


async def test_add_list_remove_with_who_did_it(store: Store) -> None:
    version = await store.rota_version()
    added = await store.add_override(SATURDAY, Origin.CLI, "alice")
    assert added.created
    record = added.record
    assert (record.origin, record.note, record.made_by, record.made_at) == (
        "cli",
        "swap",
        "alice",
        NOW,
    )
    # The engine reloads the rota when this counter moves: the next alert sees it.
    assert await store.rota_version() == version + 1
    rota = await store.load_rota()
    at = datetime(2026, 3, 28, 20, tzinfo=UTC)
    assert who_is_on_call(rota.schedules[0], rota.overrides_for("primary"), at).person == "bob"
    listed = await store.list_overrides()
    assert [(r.origin, r.override.person) for r in listed] == [("cli", "bob"), ("file", "carol")]
    assert await store.list_overrides(schedule="secondary") == []
    after = await store.list_overrides(since=datetime(2026, 3, 30, tzinfo=UTC))
    assert [r.override.person for r in after] == ["carol"]
    gone = await store.remove_override(record.id, "bob")
    assert gone == record
    assert await store.remove_override(record.id, "bob") is None
    assert await store.rota_version() == version + 2
    trail = [(e.actor, e.action, e.detail.get("person")) for e in await store.audit_trail()]
    assert trail[-2:] == [("alice", "override.added", "bob"), ("bob", "override.removed", "bob")]
    assert (await store.audit_trail())[-1].detail["made_by"] == "alice"


async def test_the_same_override_twice_is_one(store: Store) -> None:
    first = await store.add_override(SATURDAY, Origin.API, "ops-bot")
    version = await store.rota_version()
    again = await store.add_override(SATURDAY, Origin.CLI, "alice")
    assert not again.created and again.record == first.record
    assert await store.rota_version() == version


async def test_overlaps_are_reported(store: Store) -> None:
    await store.add_override(SATURDAY, Origin.CLI, "alice")
    inner = OverrideRequest("primary", "carol", "2026-03-28 20:00", "2026-03-28 22:00")
    added = await store.add_override(inner, Origin.CLI, "alice")
    assert [o.override.person for o in added.overlaps] == ["bob"]


async def test_a_bad_override_changes_nothing(store: Store) -> None:
    version = await store.rota_version()
    with pytest.raises(RotaError) as caught:
        await store.add_override(
            OverrideRequest("primary", "dave", "2026-03-29 02:30", "2026-03-29 09:00"), "cli", "x"
        )
    assert [p.path for p in caught.value.problems] == ["person", "start"]
    assert await store.rota_version() == version
    assert len(await store.list_overrides()) == 1


async def test_import_drops_edits_unless_asked_to_keep_them(store: Store) -> None:
    await store.add_override(SATURDAY, Origin.CLI, "alice")
    assert await store.replace_rota(parse_rota(ROTA), keep_overrides=True) == 1
    assert [r.origin for r in await store.list_overrides()] == ["cli", "file"]
    assert await store.replace_rota(parse_rota(ROTA)) == 0
    assert [r.origin for r in await store.list_overrides()] == ["file"]


async def test_keep_refuses_all_or_nothing_when_the_file_drops_what_an_edit_names(
    store: Store,
) -> None:
    await store.add_override(SATURDAY, Origin.CLI, "alice")
    swap = OverrideRequest("secondary", "alice", "2026-03-10 09:00", "2026-03-11 09:00", "carol")
    await store.add_override(swap, Origin.API, "ops-bot")
    before = await store.load_rota()
    smaller = parse_rota(ROTA.split("  - name: secondary")[0].replace("  - {name: bob,", "  #"))
    with pytest.raises(OverridesOrphaned) as caught:
        await store.replace_rota(smaller, keep_overrides=True)
    assert [r.split(") names ")[1] for r in caught.value.reasons] == [
        "schedule 'secondary'",  # by start: the 10th
        "person 'bob'",  # the 28th
    ]
    assert await store.load_rota() == before


async def test_an_edit_the_file_now_carries_is_not_kept_twice(store: Store) -> None:
    added = await store.add_override(SATURDAY, Origin.CLI, "alice")
    with_it = parse_rota(
        ROTA + '  - {schedule: primary, person: bob, start: "2026-03-28T18:00", '
        'end: "2026-03-29T18:00"}\n'
    )
    assert added.record.override in with_it.overrides
    assert await store.replace_rota(with_it, keep_overrides=True) == 0
    assert [r.origin for r in await store.list_overrides()] == ["file", "file"]


async def test_a_csv_imported_twice_adds_nothing_the_second_time(store: Store) -> None:
    text = (
        "person;start;end;schedule;note\n"
        "bob;2026-03-28 18:00;2026-03-29 18:00;primary;=1+1\n"
        "carol;2026-03-29 18:00;2026-03-30 18:00;primary;\n"
    )
    version = await store.rota_version()
    dry = await store.import_shifts(text, "alice", dry_run=True)
    assert (dry.would_add, dry.already) == (2, 0)
    assert await store.rota_version() == version
    first = await store.import_shifts(text, "alice", "week13.csv")
    assert [(r.origin, r.override.person, r.note) for r in first.added] == [
        ("csv", "bob", "=1+1"),
        ("csv", "carol", ""),
    ]
    again = await store.import_shifts(text, "alice", "week13.csv")
    assert (again.added, again.already) == ((), 2)
    assert await store.rota_version() == version + 1
    assert len(await store.list_overrides()) == 3
    entry = (await store.audit_trail())[-1]
    assert (entry.actor, entry.action, entry.detail["added"]) == ("alice", "overrides.imported", 2)


async def test_a_bad_csv_adds_nothing(store: Store) -> None:
    text = (
        "person,start,end,schedule\n"
        "bob,2026-03-28 18:00,2026-03-29 18:00,primary\n"
        "eve,2026-03-28 18:00,2026-03-29 18:00,primary\n"
    )
    with pytest.raises(RotaError) as caught:
        await store.import_shifts(text, "alice", "bad.csv")
    assert str(caught.value) == "bad.csv:3: person: no person named 'eve'"
    assert len(await store.list_overrides()) == 1


async def test_the_database_refuses_a_duplicate_edit_row(store: Store, raw: Raw) -> None:
    await store.add_override(SATURDAY, Origin.CLI, "alice")
    with pytest.raises(RawError):
        await raw.execute(
            "INSERT INTO overrides (schedule_id, person_id, start_at, end_at, origin) "
            "SELECT schedule_id, person_id, start_at, end_at, 'api' FROM overrides "
            "WHERE origin = 'cli'"
        )
    with pytest.raises(RawError):
        await raw.execute("UPDATE overrides SET origin = 'elsewhere'")
