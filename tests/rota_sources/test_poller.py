"""The poller against a real HTTP server on loopback: conditional requests, the source going
down mid-test and coming back (its last good copy answering meanwhile, the alert about it
opened after ``alert_after`` and resolved when it is back), bodies too big, a server that
hangs, JSON sources, and the engine's rota following the copy."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from tests.rota_sources.helpers import FeedServer, event, feed_server, ics, sourced_rota
from voipalert.clock import FakeClock
from voipalert.domain.alert import AlertStatus
from voipalert.domain.oncall import who_is_on_call
from voipalert.domain.policy import step_targets
from voipalert.domain.rota import Rota, ScheduleSource, SourceKind
from voipalert.ingest.app_keys import INTAKE
from voipalert.ingest.config import IngestConfig
from voipalert.ingest.feed_parse import SourceError, caldav_to_ical
from voipalert.ingest.feed_poll import SourcePoller, SourcesConfig, dedup_key
from voipalert.ingest.health import SipState
from voipalert.ingest.webhook import build_app
from voipalert.store import Store
from voipalert.store.feeds import CopyState

START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
WEEK = ics(
    event("a", "DTSTART:20260302T080000Z", "DTEND:20260302T200000Z", "alice",
          "RRULE:FREQ=DAILY"),
    event("b", "DTSTART:20260302T200000Z", "DTEND:20260303T080000Z", "bob", "RRULE:FREQ=DAILY"),
)  # fmt: skip


@dataclass
class Rig:
    server: FeedServer
    store: Store
    clock: FakeClock
    poller: SourcePoller
    rota: Rota

    async def check(self) -> CopyState:
        schedule = self.rota.schedules[0]
        assert schedule.source is not None
        return (await self.poller.check(schedule, schedule.source, self.rota)).state

    async def on_call(self, at: datetime) -> str | None:
        rota, _ = await self.store.load_rota_with_feeds()
        return who_is_on_call(rota.schedules[0], (), at).person

    async def source_alert(self) -> AlertStatus | None:
        page = await self.store.list_alerts()
        found = [a for a in page.alerts if a.dedup_key == dedup_key("night")]
        return found[0].status if found else None


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    clock = FakeClock(START)
    store = await Store.open(tmp_path / "voipalert.db", clock)
    app = build_app(
        store, wake=lambda: None, sip_state=lambda: SipState.REGISTERED,
        config=IngestConfig(), clock=clock,
    )  # fmt: skip
    async with feed_server() as server, aiohttp.ClientSession() as session:
        source = ScheduleSource(
            SourceKind.ICAL, server.put("week.ics", WEEK), poll_seconds=60, alert_after_seconds=600
        )
        rota = sourced_rota(source, "UTC")
        await store.replace_rota(rota)
        config = SourcesConfig(max_bytes=64 * 1024, timeout_seconds=1.0, horizon_days=14)
        poller = SourcePoller(store, app[INTAKE], clock, session, config)
        try:
            yield Rig(server, store, clock, poller, rota)
        finally:
            await store.close()


async def test_source_goes_down_and_comes_back(rig: Rig) -> None:
    assert await rig.check() is CopyState.LIVE
    assert await rig.on_call(START) == "alice"
    assert await rig.on_call(datetime(2026, 3, 5, 23, tzinfo=UTC)) == "bob"
    # Unchanged: a conditional request, answered 304.
    rig.clock.advance(60)
    assert await rig.check() is CopyState.LIVE
    assert rig.server.not_modified == 1
    assert rig.server.requests[-1][2]["If-None-Match"].startswith('"')
    # Down: the last good copy answers; no alert before alert_after.
    rig.server.down = True
    rig.clock.advance(60)
    assert await rig.check() is CopyState.CACHED
    copy = await rig.store.source_copy("night")
    assert copy is not None and "HTTP 503" in (copy.error or "")
    assert copy.describe().startswith("cached since 2026-03-02T10:00:00+00:00")
    assert await rig.on_call(START.replace(hour=21)) == "bob"
    assert await rig.source_alert() is None
    rig.clock.advance(600)
    assert await rig.check() is CopyState.CACHED
    assert await rig.source_alert() is AlertStatus.TRIGGERED
    rig.clock.advance(60)
    await rig.check()  # still down: no second alert
    assert len((await rig.store.list_alerts()).alerts) == 1
    # Back, with a change: carol took Wednesday's night.
    rig.server.down = False
    changed = (
        WEEK.replace("END:VCALENDAR", "")
        + ics(event("c", "DTSTART:20260304T200000Z", "DTEND:20260305T080000Z", "carol")).split(
            "PRODID:-//tests//EN\r\n"
        )[1]
    )
    rig.server.put("week.ics", changed)
    version = await rig.store.feeds_version()
    rig.clock.advance(60)
    assert await rig.check() is CopyState.LIVE
    assert await rig.source_alert() is AlertStatus.RESOLVED
    assert await rig.store.feeds_version() > version
    assert await rig.on_call(datetime(2026, 3, 4, 23, tzinfo=UTC)) == "carol"


async def test_garbage_and_unknown_people_keep_the_last_good_copy(rig: Rig) -> None:
    assert await rig.check() is CopyState.LIVE
    rig.server.put("week.ics", ics(event("m", "DTSTART:20260302T080000Z",
                                         "DTEND:20260302T200000Z", "mallory")))  # fmt: skip
    assert await rig.check() is CopyState.CACHED
    copy = await rig.store.source_copy("night")
    assert copy is not None and "'mallory' is not a person in the rota" in (copy.error or "")
    assert await rig.on_call(START) == "alice"
    rig.server.put("week.ics", b"\x00" * (64 * 1024 + 1))
    assert await rig.check() is CopyState.CACHED
    copy = await rig.store.source_copy("night")
    assert copy is not None and "limit is 65536" in (copy.error or "")


async def test_never_fetched_and_hanging_server(rig: Rig) -> None:
    rig.server.hang = True
    assert await rig.check() is CopyState.NONE
    copy = await rig.store.source_copy("night")
    assert copy is not None and copy.describe().startswith("none (")
    assert await rig.on_call(START) is None


async def test_poll_due_follows_poll_seconds(rig: Rig) -> None:
    assert await rig.poller.poll_due() == ["night"]
    assert await rig.poller.poll_due() == []
    rig.clock.advance(61)
    assert await rig.poller.poll_due() == ["night"]


async def test_json_sources(rig: Rig) -> None:
    shifts = {
        "data": {
            "shifts": [
                {
                    "who": {"name": "Carol"},
                    "from": "2026-03-02T08:00:00Z",
                    "to": "2026-03-02T20:00:00+00:00",
                },
                {"who": {"name": "bob"}, "from": "2026-03-02T21:00:00", "to": "2026-03-03T08:00"},
            ]
        }
    }
    url = rig.server.put("shifts.json", json.dumps(shifts), "application/json")
    source = ScheduleSource(
        SourceKind.JSON, url, shifts="data.shifts", person="who.name", start="from", end="to"
    )
    rig.rota = sourced_rota(source, "Europe/Paris")
    await rig.store.replace_rota(rig.rota)
    assert await rig.check() is CopyState.LIVE
    assert await rig.on_call(START) == "carol"
    assert await rig.on_call(datetime(2026, 3, 2, 20, 30, tzinfo=UTC)) == "bob"  # 21:30 Paris
    # One answer for "now", asked with the instant in the URL.
    url = rig.server.put("now.json", json.dumps({"oncall": {"user": "alice"}}), "application/json")
    source = ScheduleSource(SourceKind.JSON, url + "?at={at}", person="oncall.user")
    rig.rota = sourced_rota(source, "UTC")
    await rig.store.replace_rota(rig.rota)
    assert await rig.check() is CopyState.LIVE
    assert rig.server.requests[-1][1] == "/now.json?at=2026-03-02T10:00:00Z"
    assert await rig.on_call(START) == "alice"
    rig.server.put("now.json", json.dumps({"oncall": {"user": ["x"]}}), "application/json")
    assert await rig.check() is CopyState.CACHED


async def test_rota_import_keeps_the_copy_and_a_new_url_drops_it(rig: Rig) -> None:
    assert await rig.check() is CopyState.LIVE
    await rig.store.replace_rota(rig.rota)
    assert await rig.on_call(START) == "alice"
    source = rig.rota.schedules[0].source
    assert source is not None
    moved = replace(rig.rota.schedules[0], source=replace(source, url=source.url + "?v=2"))
    await rig.store.replace_rota(replace(rig.rota, schedules=(moved,)))
    assert await rig.on_call(START) is None


async def test_escalation_calls_whom_the_source_names(rig: Rig) -> None:
    assert await rig.check() is CopyState.LIVE
    loaded, _ = await rig.store.load_rota_with_feeds()
    step = loaded.policies[0].steps[0]  # the schedule "night"
    assert [p.name for p in step_targets(step, loaded, START)] == ["alice"]
    assert [p.name for p in step_targets(step, loaded, START.replace(hour=21))] == ["bob"]


async def test_a_rota_import_rechecks_every_source_at_once(rig: Rig) -> None:
    assert await rig.poller.poll_due() == ["night"]
    assert await rig.poller.poll_due() == []
    await rig.store.replace_rota(rig.rota)
    assert await rig.poller.poll_due() == ["night"]


def test_xml_entity_bombs_are_refused() -> None:
    levels = "".join(f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10}">' for i in range(1, 10))
    bomb = (
        f'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY l0 "lol">{levels}]>'
        '<d:multistatus xmlns:d="DAV:">&l9;</d:multistatus>'
    ).encode()
    with pytest.raises(SourceError, match="not a CalDAV multistatus"):
        caldav_to_ical(bomb)
