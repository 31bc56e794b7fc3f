"""Calendars out: the secret URL (printed and rotated by the CLI, compared in constant
time, rate limited), DST nights exported right in Europe/Paris and America/New_York, and
the round trip: a schedule exported as .ics over HTTP, fed back as a live source, answers
like the original for every hour of a month."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import aiohttp
import icalendar
import pytest

from tests.rota_sources.helpers import person
from voipalert.cli import main
from voipalert.cli.rota_cmd import oncall_answers
from voipalert.clock import FakeClock
from voipalert.domain.rota import (
    Layer,
    Override,
    PersonName,
    Rota,
    Schedule,
    ScheduleName,
    ScheduleSource,
    ShiftUnit,
    SourceKind,
    Window,
)
from voipalert.ingest.app_keys import INTAKE
from voipalert.ingest.calendar_out import REQUESTS_PER_MINUTE
from voipalert.ingest.calendar_urls import calendar_path, calendar_token
from voipalert.ingest.config import IngestConfig
from voipalert.ingest.feed_poll import SourcePoller
from voipalert.ingest.health import SipState
from voipalert.ingest.webhook import build_app, start_http
from voipalert.rotafile.ics import fold
from voipalert.store import Store
from voipalert.store.feeds import CopyState

NOW = datetime(2026, 3, 5, 12, 0, tzinfo=UTC)


def layered(name: str, zone: str) -> Schedule:
    nights = Layer(
        "nights", (PersonName("alice"), PersonName("bob")), 1, ShiftUnit.DAYS,
        date(2026, 2, 1), time(20, 0),
    )  # fmt: skip
    office = Layer(
        "office", (PersonName("carol"),), 1, ShiftUnit.WEEKS, date(2026, 2, 2), time(9, 0),
        (Window(frozenset({1, 2, 3, 4, 5}), time(9, 0), time(17, 30)),),
    )  # fmt: skip
    hours = Layer(
        "hours", (PersonName("bob"), PersonName("carol")), 7, ShiftUnit.HOURS,
        date(2026, 3, 20), time(2, 30),
    )  # fmt: skip
    layers = (nights, office) if zone == "Europe/Paris" else (nights, office, hours)
    return Schedule(ScheduleName(name), zone, layers)


def rota_with(*schedules: Schedule) -> Rota:
    return Rota(
        people=(person("alice", "201"), person("bob", "202"), person("carol", "203")),
        schedules=schedules,
        overrides=(
            Override(
                ScheduleName("paris"),
                PersonName("carol"),
                datetime(2026, 3, 21, 9, 7, tzinfo=UTC),
                datetime(2026, 3, 22, 9, 7, tzinfo=UTC),
            ),
            Override(
                ScheduleName("paris"),
                PersonName("alice"),
                datetime(2026, 3, 25, 0, 0, tzinfo=UTC),
                datetime(2026, 3, 25, 6, 0, tzinfo=UTC),
                replaces=PersonName("bob"),
            ),
        ),
    )


@dataclass
class Served:
    base: str
    store: Store
    clock: FakeClock
    session: aiohttp.ClientSession
    app: object

    async def get(self, path: str) -> tuple[int, str, str]:
        async with self.session.get(self.base + path) as response:
            return response.status, response.headers.get("Content-Type", ""), await response.text()

    async def url(self, kind: str, name: str) -> str:
        generation = await self.store.calendar_generation(kind, name)
        token = calendar_token(self.store.server_key, kind, name, generation)
        return calendar_path(kind, name, token)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    clock = FakeClock(NOW)
    store = await Store.open(tmp_path / "voipalert.db", clock)
    await store.replace_rota(
        rota_with(layered("paris", "Europe/Paris"), layered("new-york", "America/New_York"))
    )
    app = build_app(
        store, wake=lambda: None, sip_state=lambda: SipState.REGISTERED,
        config=IngestConfig(), clock=clock,
    )  # fmt: skip
    runner, port = await start_http(app, "127.0.0.1", 0)
    async with aiohttp.ClientSession() as session:
        try:
            yield Served(f"http://127.0.0.1:{port}", store, clock, session, app)
        finally:
            await runner.cleanup()
            await store.close()


def events(text: str) -> list[tuple[str, datetime, datetime]]:
    calendar = icalendar.Calendar.from_ical(text)
    found = []
    for event in calendar.walk("VEVENT"):
        start, end = event.decoded("DTSTART"), event.decoded("DTEND")
        assert isinstance(start, datetime) and isinstance(end, datetime)
        found.append((str(event["SUMMARY"]), start, end))
    return found


async def test_dst_nights_are_exported_with_their_real_length(served: Served) -> None:
    status, content_type, text = await served.get(await served.url("schedule", "paris"))
    assert status == 200 and content_type.startswith("text/calendar")
    shifts = events(text)
    # Paris, night of Sat 28 March 2026: 20:00 CET (19:00Z) → 09:00 CEST next... the office
    # layer is weekdays only, so the night runs to Sunday 20:00 CEST (18:00Z): 23 hours.
    night = next(s for s in shifts if s[1] == datetime(2026, 3, 28, 19, 0, tzinfo=UTC))
    assert night[2] == datetime(2026, 3, 29, 18, 0, tzinfo=UTC)
    assert all(s[1].tzinfo is not None and s[1].utcoffset() == timedelta(0) for s in shifts)
    # New York, spring-forward night of Sat 7 March: 20:00 EST (01:00Z) → Sunday 20:00 EDT
    # (00:00Z Monday): 23 hours; the 7-hour layer moves its wall time across the change.
    status, _, text = await served.get(await served.url("schedule", "new-york"))
    shifts = events(text)
    night = next(s for s in shifts if s[1] == datetime(2026, 3, 8, 1, 0, tzinfo=UTC))
    assert night[2] == datetime(2026, 3, 9, 0, 0, tzinfo=UTC)
    assert any(s[1] == datetime(2026, 3, 20, 6, 30, tzinfo=UTC) for s in shifts)  # 02:30 EDT
    # A person's feed: their shifts in both schedules.
    status, _, text = await served.get(await served.url("person", "carol"))
    summaries = {s[0] for s in events(text)}
    assert summaries == {"On call: paris", "On call: new-york"}


async def test_round_trip_every_hour_of_a_month(served: Served) -> None:
    original = (await served.store.load_rota()).schedules
    copies = []
    for s in original:
        url = served.base + await served.url("schedule", s.name)
        source = ScheduleSource(SourceKind.ICAL, url)
        copies.append(Schedule(ScheduleName(f"{s.name}-copy"), s.time_zone, (), source))
    rota = replace(await served.store.load_rota(), schedules=(*original, *copies))
    await served.store.replace_rota(rota)
    poller = SourcePoller(served.store, served.app[INTAKE], served.clock, served.session)  # type: ignore[index]
    for copy in copies:
        assert copy.source is not None
        assert (await poller.check(copy, copy.source, rota)).state is CopyState.LIVE
    loaded, stored = await served.store.load_rota_with_feeds()
    hours = [NOW + timedelta(hours=h) for h in range(31 * 24)]
    for schedule in original:
        back_schedule = loaded.schedule(f"{schedule.name}-copy")
        assert back_schedule is not None
        there = await oncall_answers(loaded, stored, [schedule] * len(hours), hours)
        back = await oncall_answers(loaded, stored, [back_schedule] * len(hours), hours)
        mismatches = [
            (at, a[2].person, b[2].person)
            for at, a, b in zip(hours, there, back, strict=True)
            if a[2].person != b[2].person
        ]
        assert mismatches == [], schedule.name
        assert {b[3] for b in back} == {"live"}


async def test_secret_urls_rotate_and_are_guarded(served: Served, tmp_path: Path) -> None:
    good = await served.url("person", "alice")
    assert (await served.get(good))[0] == 200
    token = good.rsplit("/", 1)[1].removesuffix(".ics")
    wrong = good.replace(token, token[:-1] + ("A" if token[-1] != "A" else "B"))
    for path in (
        wrong,
        good.replace("/person/", "/team/"),
        good.replace("/alice/", "/mallory/"),
        calendar_path("person", "x" * 300, token),
        good.replace(token, "t" * 200),
    ):
        status, _, text = await served.get(path)
        assert (status, "no such calendar" in text) == (404, True), path
    # An unknown name with the token it would have: still nothing.
    ghost = calendar_token(served.store.server_key, "person", "mallory", 1)
    assert (await served.get(calendar_path("person", "mallory", ghost)))[0] == 404
    await served.store.rotate_calendar("person", "alice")
    assert (await served.get(good))[0] == 404
    assert (await served.get(await served.url("person", "alice")))[0] == 200


async def test_rate_limit(served: Served) -> None:
    path = calendar_path("person", "alice", "nope")
    statuses = await asyncio.gather(*(served.get(path) for _ in range(REQUESTS_PER_MINUTE + 5)))
    assert sorted({s[0] for s in statuses}) == [404, 429]
    served.clock.advance(61)
    assert (await served.get(path))[0] == 404


def test_cli_prints_and_rotates_the_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "voipalert.toml"
    database = tmp_path / "voipalert.db"
    config.write_text(
        f'[database]\npath = "{database}"\n[http]\npublic_url = "https://oncall.lan/"\n'
    )

    async def fill() -> None:
        store = await Store.open(database, FakeClock(NOW))
        await store.replace_rota(rota_with(layered("paris", "Europe/Paris")))
        await store.close()

    asyncio.run(fill())
    run = ["--config", str(config), "calendar", "url"]
    assert main([*run, "schedule", "paris"]) == 0
    first = capsys.readouterr().out.strip()
    assert first.startswith("https://oncall.lan/api/v1/calendars/schedule/paris/")
    assert main([*run, "schedule", "paris"]) == 0
    assert capsys.readouterr().out.strip() == first  # printed again, same
    assert main([*run, "schedule", "paris", "--rotate"]) == 0
    assert capsys.readouterr().out.strip() not in ("", first)
    assert main([*run, "person", "nobody"]) == 1
    assert "no person named 'nobody'" in capsys.readouterr().err


def test_folding_keeps_utf8_whole() -> None:
    line = "SUMMARY:" + "é" * 100
    folded = fold(line)
    assert all(len(part.encode()) <= 75 for part in folded.split("\r\n"))
    assert folded.replace("\r\n ", "").removesuffix("\r\n") == line
