"""iCalendar sources read into shifts: DST nights in Europe/Paris and America/New_York, a
recurring shift with an exception (RECURRENCE-ID) and a removed night (EXDATE), all-day
events, unknown people, and the feeds an attacker would write."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from tests.rota_sources.helpers import PARIS_ZONE, event, ics
from voipalert.domain.oncall import who_is_on_call
from voipalert.domain.rota import (
    Feed,
    PersonName,
    Schedule,
    ScheduleName,
    ScheduleSource,
    SourceKind,
)
from voipalert.ingest.feed_parse import SourceError
from voipalert.ingest.feed_worker import expand, expand_here

PEOPLE = frozenset({"alice", "bob", "carol"})
SOURCE = ScheduleSource(SourceKind.ICAL, "http://127.0.0.1/x.ics")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def feed_of(body: str, zone: str, start: str, end: str, source: ScheduleSource = SOURCE) -> Feed:
    return expand_here(body.encode(), source, PEOPLE, zone, utc(start), (utc(start), utc(end)))


def who(feed: Feed, zone: str, at: str) -> str | None:
    schedule = Schedule(ScheduleName("night"), zone, (), SOURCE, feed)
    return who_is_on_call(schedule, (), utc(at)).person


# Nights 20:00 → 08:00 Paris time, weekly for alice (Fri) and daily otherwise for bob; the
# night of Saturday 28 March 2026 spans the spring-forward (02:00 → 03:00): 11 real hours.
PARIS = ics(
    event(
        "bob-nights", "DTSTART;TZID=Europe/Paris:20260323T200000",
        "DTEND;TZID=Europe/Paris:20260324T080000", "bob", "RRULE:FREQ=DAILY;COUNT=14",
        "EXDATE;TZID=Europe/Paris:20260327T200000",
    ),
    event(
        "bob-nights", "DTSTART;TZID=Europe/Paris:20260329T200000",
        "DTEND;TZID=Europe/Paris:20260330T080000", "carol",
        "RECURRENCE-ID;TZID=Europe/Paris:20260329T200000",
    ),
    event(
        "alice-fri", "DTSTART;TZID=Europe/Paris:20260327T200000",
        "DTEND;TZID=Europe/Paris:20260328T080000", "alice", "RRULE:FREQ=WEEKLY",
    ),
    zones=PARIS_ZONE,
)  # fmt: skip


def test_paris_dst_night_with_exception_and_exdate() -> None:
    feed = feed_of(PARIS, "Europe/Paris", "2026-03-20T00:00", "2026-04-10T00:00")
    zone = "Europe/Paris"
    # Before the change: 20:00 CET is 19:00 UTC; 08:00 CET is 07:00 UTC.
    assert who(feed, zone, "2026-03-24T06:59") == "bob"
    assert who(feed, zone, "2026-03-24T07:00") is None  # day: the source has nobody
    # Friday 27th: EXDATE removed bob's night, alice's weekly night holds it.
    assert who(feed, zone, "2026-03-27T22:00") == "alice"
    # Night of 28th → 29th: 20:00 CET (19:00 UTC) to 08:00 CEST (06:00 UTC): 11 hours.
    night = next(s for s in feed.shifts if s.start == utc("2026-03-28T19:00"))
    assert (night.person, night.end) == ("bob", utc("2026-03-29T06:00"))
    assert who(feed, zone, "2026-03-29T05:59") == "bob"
    assert who(feed, zone, "2026-03-29T06:00") is None
    # RECURRENCE-ID: the night of the 29th went to carol, 20:00 CEST = 18:00 UTC.
    assert who(feed, zone, "2026-03-29T18:00") == "carol"
    assert who(feed, zone, "2026-03-30T05:59") == "carol"
    assert who(feed, zone, "2026-03-30T18:30") == "bob"
    # Alice's next Friday, after the change: 20:00 CEST = 18:00 UTC.
    assert who(feed, zone, "2026-04-03T18:00") == "alice"
    assert who(feed, zone, "2026-04-03T17:59") is None


def test_new_york_fall_back_night_and_all_day_events() -> None:
    # TZID without a VTIMEZONE: an IANA name, as many servers write it. The night of
    # 31 Oct → 1 Nov 2026 gains an hour (02:00 EDT → 01:00 EST): 13 real hours.
    body = ics(
        event(
            "n", "DTSTART;TZID=America/New_York:20261031T200000",
            "DTEND;TZID=America/New_York:20261101T080000", "bob",
        ),
        # All-day (VALUE=DATE) on 2 November: local midnight to local midnight.
        event("d", "DTSTART;VALUE=DATE:20261102", "DTEND;VALUE=DATE:20261103", "alice"),
        # Floating time: the schedule's wall clock.
        event("f", "DTSTART:20261103T090000", "DTEND:20261103T170000", "carol"),
    )  # fmt: skip
    zone = "America/New_York"
    feed = feed_of(body, zone, "2026-10-30T00:00", "2026-11-10T00:00")
    night = next(s for s in feed.shifts if s.person == "bob")
    assert night.start == utc("2026-11-01T00:00") and night.end == utc("2026-11-01T13:00")
    assert night.end - night.start == timedelta(hours=13)
    day = next(s for s in feed.shifts if s.person == "alice")
    assert (day.start, day.end) == (utc("2026-11-02T05:00"), utc("2026-11-03T05:00"))
    assert who(feed, zone, "2026-11-03T14:00") == "carol"  # 09:00 EST


def test_person_field_attendee_and_aliases() -> None:
    body = ics(
        event(
            "a", "DTSTART:20260302T080000Z", "DTEND:20260302T200000Z", "Day shift",
            "ATTENDEE;CN=Someone:mailto:alice@example.com",
        ),
        event(
            "b", "DTSTART:20260302T200000Z", "DTEND:20260303T080000Z", "Night shift",
            "ATTENDEE;CN=Bob:mailto:bob@example.com",
        ),
    )  # fmt: skip
    source = ScheduleSource(
        SourceKind.ICAL, SOURCE.url, person_field="ATTENDEE",
        aliases=(("alice@example.com", PersonName("alice")),),
    )  # fmt: skip
    feed = feed_of(body, "UTC", "2026-03-01T00:00", "2026-03-05T00:00", source)
    assert [s.person for s in feed.shifts] == ["alice", "bob"]  # alias; then CN, any case


def test_unknown_person_is_a_clear_error() -> None:
    body = ics(event("x", "DTSTART:20260302T080000Z", "DTEND:20260302T200000Z", "mallory"))
    with pytest.raises(
        SourceError, match=r"event x at 2026-03-02T08:00:00\+00:00: 'mallory' is not a person"
    ):
        feed_of(body, "UTC", "2026-03-01T00:00", "2026-03-05T00:00")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not a calendar", "not iCalendar data"),
        (
            ics(
                event(
                    "s",
                    "DTSTART:20260302T080000Z",
                    "DTEND:20260302T080001Z",
                    "bob",
                    "RRULE:FREQ=SECONDLY",
                )
            ),
            "FREQ=SECONDLY refused",
        ),
        (
            ics(
                event(
                    "m",
                    "DTSTART:20260302T080000Z",
                    "DURATION:PT1M",
                    "bob",
                    "RRULE:FREQ=MINUTELY;COUNT=1000000",
                )
            ),
            "FREQ=MINUTELY refused",
        ),
    ],
)
def test_hostile_feeds_are_refused(body: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        feed_of(body, "UTC", "2026-03-01T00:00", "2026-03-05T00:00")


async def test_million_occurrence_rule_is_bounded_by_the_window() -> None:
    body = ics(event("h", "DTSTART:20260101T000000Z", "DURATION:PT1H", "bob",
                     "RRULE:FREQ=HOURLY;COUNT=1000000"))  # fmt: skip
    window = (utc("2026-03-01T00:00"), utc("2026-03-08T00:00"))
    feed = await expand(body.encode(), SOURCE, PEOPLE, "UTC", window[0], window, 20)
    assert len(feed.shifts) == 7 * 24


async def test_expansion_that_runs_long_is_killed_and_refused() -> None:
    # A rule that never matches makes the recurrence library walk centuries of hours.
    body = ics(event("never", "DTSTART:20260101T000000Z", "DURATION:PT1H", "bob",
                     "RRULE:FREQ=HOURLY;BYMONTH=2;BYMONTHDAY=30"))  # fmt: skip
    window = (utc("2026-03-01T00:00"), utc("2026-05-01T00:00"))
    loop_ticks = 0

    async def ticker() -> None:
        nonlocal loop_ticks
        while True:
            loop_ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    started = asyncio.get_running_loop().time()
    with pytest.raises(SourceError, match="took over 1 s"):
        await expand(body.encode(), SOURCE, PEOPLE, "UTC", window[0], window, 1.0)
    task.cancel()
    assert asyncio.get_running_loop().time() - started < 3
    assert loop_ticks > 30  # the loop went on meanwhile
