"""who_is_on_call across DST nights, layers, overrides and gaps (Europe/Paris 2026:
spring forward 2026-03-29 02:00 CET → 03:00 CEST, fall back 2026-10-25 03:00 CEST → 02:00
CET)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voipalert.domain.oncall import in_windows, resolve_local, shift_at, who_is_on_call
from voipalert.domain.rota import (
    Layer,
    Override,
    PersonName,
    Schedule,
    ScheduleName,
    ShiftUnit,
    Window,
)

PARIS = ZoneInfo("Europe/Paris")
ALICE, BOB, CAROL, DAVE = (PersonName(n) for n in ("alice", "bob", "carol", "dave"))


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def layer(
    members: tuple[PersonName, ...] = (ALICE, BOB),
    length: int = 1,
    unit: ShiftUnit = ShiftUnit.DAYS,
    start: date = date(2026, 3, 27),
    handoff: time = time(2, 30),
    windows: tuple[Window, ...] = (),
    name: str = "main",
) -> Layer:
    return Layer(name, members, length, unit, start, handoff, windows)


def schedule(*layers: Layer) -> Schedule:
    return Schedule(ScheduleName("primary"), "Europe/Paris", layers)


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2026, 3, 28), utc(2026, 3, 28, 1, 30)),  # 02:30 CET
        (date(2026, 3, 29), utc(2026, 3, 29, 1, 0)),  # no 02:30: the gap ends at 03:00 CEST
        (date(2026, 3, 30), utc(2026, 3, 30, 0, 30)),  # 02:30 CEST
        (date(2026, 10, 25), utc(2026, 10, 25, 0, 30)),  # two 02:30s: the first (CEST)
        (date(2026, 10, 26), utc(2026, 10, 26, 1, 30)),  # 02:30 CET
    ],
)
def test_resolve_local_rule_for_missing_and_repeated_wall_times(
    day: date, expected: datetime
) -> None:
    assert resolve_local(day, time(2, 30), PARIS) == expected


def test_resolve_local_in_a_half_hour_dst_zone() -> None:
    # Lord Howe Island moves its clocks by 30 minutes: 02:00 → 02:30 on 2026-10-04.
    zone = ZoneInfo("Australia/Lord_Howe")
    at = resolve_local(date(2026, 10, 4), time(2, 10), zone)
    assert at.astimezone(zone).time() == time(2, 30)


def test_daily_handoff_at_0230_on_the_spring_forward_night() -> None:
    rota = schedule(layer())  # alice from 2026-03-27 02:30, then bob, alice, bob...
    # The 2026-03-28 shift (bob) runs from 02:30 CET until the gap ends at 03:00 CEST.
    before = who_is_on_call(rota, [], utc(2026, 3, 29, 0, 59, 59))
    assert before.person == BOB
    assert before.since == utc(2026, 3, 28, 1, 30) and before.until == utc(2026, 3, 29, 1, 0)
    assert before.until - before.since == timedelta(hours=23, minutes=30)
    after = who_is_on_call(rota, [], utc(2026, 3, 29, 1, 0))
    assert after.person == ALICE
    assert after.until == utc(2026, 3, 30, 0, 30)  # back to 02:30, now CEST


def test_daily_handoff_at_0230_on_the_fall_back_night_happens_once() -> None:
    rota = schedule(layer(start=date(2026, 10, 23)))  # alice on the 23rd, bob 24th, alice 25th
    assert who_is_on_call(rota, [], utc(2026, 10, 25, 0, 29)).person == BOB
    first = who_is_on_call(rota, [], utc(2026, 10, 25, 0, 30))  # the first 02:30 (CEST)
    assert first.person == ALICE
    # The second 02:30 (CET, 01:30 UTC) is not another hand-off.
    assert who_is_on_call(rota, [], utc(2026, 10, 25, 1, 45)).person == ALICE
    assert first.until is not None and first.since is not None
    assert first.until - first.since == timedelta(hours=25)


def test_hour_shifts_count_real_hours_across_dst() -> None:
    twelve = layer(length=12, unit=ShiftUnit.HOURS, start=date(2026, 3, 28), handoff=time(8))
    rota = schedule(twelve)
    night = who_is_on_call(rota, [], utc(2026, 3, 29, 1, 30))
    assert night.person == BOB
    assert night.since == utc(2026, 3, 28, 19) and night.until == utc(2026, 3, 29, 7)
    assert night.until - night.since == timedelta(hours=12)
    # Real hours: the local hand-off moves from 08:00 CET to 09:00 CEST.
    assert night.until.astimezone(PARIS).time() == time(9)


def test_week_shifts_count_calendar_days_across_dst() -> None:
    weekly = layer(unit=ShiftUnit.WEEKS, start=date(2026, 3, 23), handoff=time(9))
    answer = who_is_on_call(schedule(weekly), [], utc(2026, 3, 29, 12))
    assert answer.person == ALICE
    assert answer.since == utc(2026, 3, 23, 8) and answer.until == utc(2026, 3, 30, 7)
    assert answer.until - answer.since == timedelta(hours=167)  # one hour less that week
    assert answer.until.astimezone(PARIS).time() == time(9)


def test_rotation_cycles_through_members() -> None:
    three = layer(members=(ALICE, BOB, CAROL), start=date(2026, 1, 1), handoff=time(9))
    people = [
        who_is_on_call(schedule(three), [], utc(2026, 1, day, 12)).person for day in range(1, 8)
    ]
    assert people == [ALICE, BOB, CAROL, ALICE, BOB, CAROL, ALICE]


def test_before_the_rotation_starts_is_a_gap() -> None:
    answer = who_is_on_call(schedule(layer()), [], utc(2026, 3, 27, 1, 29))
    assert answer.gap and answer.person is None


NIGHTS = Window(frozenset(range(1, 8)), time(20), time(8))


def test_higher_layer_wins_where_it_has_someone() -> None:
    base = layer(members=(ALICE,), start=date(2026, 1, 1), handoff=time(9))
    nights = layer(
        members=(CAROL,), start=date(2026, 1, 1), handoff=time(9), windows=(NIGHTS,), name="nights"
    )
    rota = schedule(base, nights)
    assert who_is_on_call(rota, [], utc(2026, 3, 10, 21)).person == CAROL  # 22:00 CET
    day = who_is_on_call(rota, [], utc(2026, 3, 10, 12))
    assert (day.person, day.layer) == (ALICE, "main")
    # An upper layer whose rotation has not started yet leaves the lower one in charge.
    later = layer(members=(DAVE,), start=date(2027, 1, 1), name="next-year")
    assert who_is_on_call(schedule(base, later), [], utc(2026, 3, 10, 12)).person == ALICE


def test_window_past_midnight_and_weekday_rules() -> None:
    weekend = Window(frozenset({5, 6}), time(20), time(8))  # Fri and Sat nights
    assert in_windows([weekend], PARIS, utc(2026, 3, 13, 22))  # Fri 23:00
    assert in_windows([weekend], PARIS, utc(2026, 3, 14, 6))  # Sat 07:00 (Fri night)
    assert in_windows([weekend], PARIS, utc(2026, 3, 15, 6))  # Sun 07:00 (Sat night)
    assert not in_windows([weekend], PARIS, utc(2026, 3, 16, 6))  # Mon 07:00
    assert not in_windows([weekend], PARIS, utc(2026, 3, 13, 12))  # Fri noon
    office = Window(frozenset({1, 2, 3, 4, 5}), time(9), time(17))
    assert in_windows([office], PARIS, utc(2026, 3, 16, 8))  # Mon 09:00
    assert not in_windows([office], PARIS, utc(2026, 3, 16, 16))  # Mon 17:00


def test_only_windowed_layer_outside_its_windows_is_a_gap() -> None:
    nights = layer(members=(CAROL,), start=date(2026, 1, 1), handoff=time(9), windows=(NIGHTS,))
    assert who_is_on_call(schedule(nights), [], utc(2026, 3, 10, 12)).gap


def test_override_takes_the_schedule_over_for_its_period() -> None:
    rota = schedule(layer(members=(ALICE,), start=date(2026, 1, 1)))
    holiday = Override(ScheduleName("primary"), DAVE, utc(2026, 3, 28, 17), utc(2026, 3, 30, 7))
    assert who_is_on_call(rota, [holiday], utc(2026, 3, 28, 16, 59)).person == ALICE
    during = who_is_on_call(rota, [holiday], utc(2026, 3, 29, 1, 30))
    assert (during.person, during.override, during.until) == (DAVE, holiday, holiday.end)
    assert who_is_on_call(rota, [holiday], utc(2026, 3, 30, 7)).person == ALICE


def test_overlapping_overrides_latest_start_wins() -> None:
    rota = schedule(layer(members=(ALICE,), start=date(2026, 1, 1)))
    week = Override(ScheduleName("primary"), BOB, utc(2026, 3, 1), utc(2026, 3, 8))
    day = Override(ScheduleName("primary"), CAROL, utc(2026, 3, 3), utc(2026, 3, 4))
    assert who_is_on_call(rota, [day, week], utc(2026, 3, 3, 12)).person == CAROL
    assert who_is_on_call(rota, [day, week], utc(2026, 3, 5, 12)).person == BOB
    other = Override(ScheduleName("other"), DAVE, utc(2026, 3, 1), utc(2026, 3, 8))
    assert who_is_on_call(rota, [other], utc(2026, 3, 5, 12)).person == ALICE


def test_replacing_override_only_swaps_that_person() -> None:
    rota = schedule(layer(members=(ALICE, BOB), start=date(2026, 3, 1), handoff=time(9)))
    swap = Override(
        ScheduleName("primary"), CAROL, utc(2026, 3, 1), utc(2026, 3, 31), replaces=ALICE
    )
    assert who_is_on_call(rota, [swap], utc(2026, 3, 1, 12)).person == CAROL  # alice's day
    assert who_is_on_call(rota, [swap], utc(2026, 3, 2, 12)).person == BOB  # bob's day


def test_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        who_is_on_call(schedule(layer()), [], datetime(2026, 3, 29, 2, 30))  # noqa: DTZ001  # the error under test


ZONES = ["Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]


@settings(max_examples=300, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    unit=st.sampled_from(list(ShiftUnit)),
    length=st.integers(1, 3),
    handoff=st.sampled_from([time(0), time(2, 30), time(9), time(23, 59)]),
    offset_hours=st.floats(0, 24 * 400),
)
def test_shifts_tile_time_without_gaps_or_overlaps(
    zone: str, unit: ShiftUnit, length: int, handoff: time, offset_hours: float
) -> None:
    tz = ZoneInfo(zone)
    rotation = layer(
        members=(ALICE, BOB, CAROL),
        length=length,
        unit=unit,
        start=date(2026, 1, 1),
        handoff=handoff,
    )
    at = resolve_local(date(2026, 1, 1), handoff, tz) + timedelta(hours=offset_hours)
    shift = shift_at(rotation, tz, at)
    assert shift is not None
    assert shift.start <= at < shift.end
    following = shift_at(rotation, tz, shift.end)
    assert following is not None
    assert (following.index, following.start) == (shift.index + 1, shift.end)
    if unit is not ShiftUnit.HOURS:
        # Calendar shifts hand off at the wall time, or where the gap ends if it is missing.
        local = shift.start.astimezone(tz)
        assert local.time() == handoff or resolve_local(local.date(), handoff, tz) == shift.start
