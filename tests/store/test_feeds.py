"""The store's half of live schedule sources and calendars out, on both backends: a
source's spec saved with the rota, its copy (body bytes, validators, expanded shifts)
written whole and replaced, the feeds version the engine reloads on, copies of another url
ignored, copies kept across a rota import, and calendar generations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.rota_sources.helpers import sourced_rota
from voipalert.clock import FakeClock
from voipalert.domain.rota import Feed, FeedShift, PersonName, ScheduleSource, SourceKind
from voipalert.store import Store, StoreConfig
from voipalert.store.feeds import CopyState, SourceCopy

START = datetime(2026, 3, 2, 10, tzinfo=UTC)
URL = "http://127.0.0.1:9/night.ics"
SOURCE = ScheduleSource(SourceKind.ICAL, URL, aliases=(("a@example.com", PersonName("alice")),))


@pytest.fixture
async def store(database: str, tmp_path: Path) -> AsyncIterator[Store]:
    config = StoreConfig(secret_file=tmp_path / "store.secret")
    opened = await Store.open(database, FakeClock(START), config)
    await opened.replace_rota(sourced_rota(SOURCE))
    try:
        yield opened
    finally:
        await opened.close()


def _copy(url: str = URL) -> SourceCopy:
    feed = Feed(
        (
            FeedShift(PersonName("alice"), START, START + timedelta(hours=8)),
            FeedShift(PersonName("bob"), START + timedelta(hours=8), None),
        ),
        START - timedelta(days=1),
        START + timedelta(days=14),
    )
    return SourceCopy(
        schedule="night", url=url, body=b"BEGIN:VCALENDAR\r\n\x00\xff", spec="{}",
        etag='"abc"', last_modified="Mon, 02 Mar 2026 10:00:00 GMT", feed=feed,
        good_at=START, checked_at=START,
    )  # fmt: skip


async def test_the_source_travels_with_the_rota(store: Store) -> None:
    [night] = (await store.load_rota()).schedules
    assert night.source == SOURCE
    assert await store.source_states() == {"night": None}  # never fetched


async def test_a_copy_is_written_whole_and_replaced(store: Store) -> None:
    rota_key = await store.rota_key()
    await store.save_source_copy(_copy(), changed=True)
    assert await store.source_copy("night") == _copy()
    assert await store.rota_key() == (rota_key[0], rota_key[1] + 1)
    failing = replace(_copy(), failing_since=START, error="503 Service Unavailable", alerted=True)
    await store.save_source_copy(failing, changed=False)
    assert await store.feeds_version() == rota_key[1] + 1  # the shifts did not change
    saved = await store.source_copy("night")
    assert saved == failing and saved.state is CopyState.CACHED
    assert await store.source_states() == {"night": failing}
    rota, copies = await store.load_rota_with_feeds()
    assert rota.schedules[0].feed == _copy().feed and copies == {"night": failing}


async def test_a_copy_of_another_url_is_ignored_and_copies_outlive_an_import(
    store: Store,
) -> None:
    await store.save_source_copy(_copy("http://127.0.0.1:9/old.ics"), changed=True)
    assert await store.source_states() == {"night": None}
    rota, _ = await store.load_rota_with_feeds()
    assert rota.schedules[0].feed is None
    await store.save_source_copy(_copy(), changed=True)
    await store.replace_rota(sourced_rota(SOURCE))  # the schedule's id changes, not its name
    assert await store.source_states() == {"night": _copy()}


async def test_calendar_generations(store: Store) -> None:
    assert await store.calendar_generation("person", "alice") == 1
    assert await store.rotate_calendar("person", "alice") == 2
    assert await store.rotate_calendar("person", "alice") == 3
    assert await store.calendar_generation("person", "alice") == 3
    assert await store.calendar_generation("schedule", "night") == 1
