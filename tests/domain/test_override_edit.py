"""Overrides made one at a time: what a typed time means, what is refused and why, and
which override wins where several overlap (docs/rota-edits.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from voipalert.domain.oncall import who_is_on_call
from voipalert.domain.override_edit import (
    BadTime,
    OverrideRecord,
    OverrideRequest,
    check_override,
    csv_cell,
    from_csv_cell,
    orphans,
    parse_edit_time,
)
from voipalert.domain.rota import Rota
from voipalert.rotafile.parse import parse_rota

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
ROTA_TEXT = """
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
  - name: us
    time_zone: America/New_York
    layers:
      - {name: main, members: [bob], shift_length: 1, shift_unit: weeks,
         start: 2026-01-05, handoff: "09:00"}
"""


@pytest.fixture(scope="module")
def rota() -> Rota:
    return parse_rota(ROTA_TEXT)


def test_times_naive_in_the_schedules_zone_or_with_an_offset() -> None:
    winter = datetime(2026, 3, 28, 17, tzinfo=UTC)
    assert parse_edit_time("2026-03-28 18:00", PARIS) == winter
    assert parse_edit_time("2026-03-28T18:00:00", PARIS) == winter
    assert parse_edit_time("2026-03-28T17:00Z", PARIS) == winter
    assert parse_edit_time(" 2026-03-28T12:00-05:00 ", PARIS) == winter
    assert parse_edit_time("2026-03-28 18:00", ZoneInfo("America/New_York")) == datetime(
        2026, 3, 28, 22, tzinfo=UTC
    )


def test_a_wall_time_in_the_spring_forward_gap_is_refused_with_the_fix() -> None:
    with pytest.raises(BadTime) as caught:
        parse_edit_time("2026-03-29 02:30", PARIS)
    assert "does not exist in Europe/Paris" in str(caught.value)
    assert "give 03:00 or a time with its UTC offset" in str(caught.value)
    # New York's gap is at 02:00 local on 2026-03-08.
    with pytest.raises(BadTime, match="jump forward to 03:00"):
        parse_edit_time("2026-03-08 02:15", ZoneInfo("America/New_York"))
    # The same instant with its offset is fine.
    assert parse_edit_time("2026-03-29T01:30Z", PARIS) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


def test_an_ambiguous_fall_back_time_means_its_first_occurrence() -> None:
    assert parse_edit_time("2026-10-25 02:30", PARIS) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    # The second one is reachable with its offset.
    second = parse_edit_time("2026-10-25T02:30+01:00", PARIS)
    assert second == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "text", ["", "tomorrow", "2026-02-30 10:00", "2026-03-28 25:00", "9" * 500]
)
def test_garbage_times_are_refused(text: str) -> None:
    with pytest.raises(BadTime):
        parse_edit_time(text, PARIS)


def test_a_good_request_becomes_an_override(rota: Rota) -> None:
    request = OverrideRequest("primary", "bob", "2026-03-28 18:00", "2026-03-30 09:00", "alice")
    override, problems = check_override(rota, request, NOW)
    assert problems == []
    assert override is not None
    assert override.start == datetime(2026, 3, 28, 17, tzinfo=UTC)
    assert override.end == datetime(2026, 3, 30, 7, tzinfo=UTC)  # summer time by then
    assert override.replaces == "alice"


def test_every_problem_is_reported_at_once(rota: Rota) -> None:
    request = OverrideRequest("secondary", "dave", "2026-03-28 18:00", "soon", "eve", "x\x07")
    override, problems = check_override(rota, request, NOW, line=7)
    assert override is None
    assert [(p.line, p.path, p.message) for p in problems] == [
        (7, "schedule", "no schedule named 'secondary'"),
        (7, "person", "no person named 'dave'"),
        (7, "replaces", "no person named 'eve'"),
        (7, "note", "control characters are not allowed"),
        (7, "end", "expected a date and time like 2026-03-28 18:00, not 'soon'"),
    ]


@pytest.mark.parametrize(
    ("start", "end", "field", "reason"),
    [
        ("2026-03-28 18:00", "2026-03-28 18:00", "end", "must be after start"),
        ("2026-03-28 18:00", "2026-03-27 18:00", "end", "must be after start"),
        ("2026-03-01 00:00", "2026-07-01 00:00", "end", "an override lasts at most 92 days"),
        ("2026-02-01 00:00", "2026-02-02 00:00", "end", "is in the past"),
        ("2029-01-01 00:00", "2029-01-02 00:00", "start", "more than 730 days ahead"),
        ("2026-03-29 02:30", "2026-03-29 09:00", "start", "does not exist in Europe/Paris"),
    ],
)
def test_absurd_periods_are_refused(
    rota: Rota, start: str, end: str, field: str, reason: str
) -> None:
    override, problems = check_override(rota, OverrideRequest("primary", "bob", start, end), NOW)
    assert override is None
    assert [p.path for p in problems] == [field]
    assert reason in problems[0].message


def test_overlong_and_self_replacing_requests(rota: Rota) -> None:
    request = OverrideRequest(
        "p" * 10_000, "bob", "2026-03-28 18:00", "2026-03-29 18:00", "bob", "n" * 201
    )
    _, problems = check_override(rota, request, NOW)
    messages = {p.path: p.message for p in problems}
    assert messages["schedule"] == f"no schedule named '{'p' * 64}...'"
    assert messages["replaces"] == "a person cannot replace themselves"
    assert messages["note"].startswith("at most 200 characters")


def _add(rota: Rota, person: str, start: str, end: str, replaces: str | None = None) -> Rota:
    override, problems = check_override(
        rota, OverrideRequest("primary", person, start, end, replaces), NOW
    )
    assert override is not None, problems
    return Rota(people=rota.people, schedules=rota.schedules, overrides=(*rota.overrides, override))


def test_overlapping_overrides_the_one_that_starts_last_wins(rota: Rota) -> None:
    # A weekend handed to bob, then carol takes Saturday evening inside it: carol there,
    # bob around it. Then a whole week for carol made afterwards: bob's weekend still
    # starts later, so it wins inside the week (remove it to hand the week over).
    weekend = _add(rota, "bob", "2026-03-28 00:00", "2026-03-30 00:00")
    nested = _add(weekend, "carol", "2026-03-28 18:00", "2026-03-28 22:00")
    schedule = rota.schedules[0]

    def who(r: Rota, local: str) -> str | None:
        at = parse_edit_time(local, PARIS)
        return who_is_on_call(schedule, r.overrides_for("primary"), at).person

    assert [
        who(nested, t) for t in ("2026-03-28 10:00", "2026-03-28 19:00", "2026-03-28 23:00")
    ] == [
        "bob",
        "carol",
        "bob",
    ]
    week = _add(weekend, "carol", "2026-03-25 00:00", "2026-04-01 00:00")
    assert who(week, "2026-03-26 12:00") == "carol"
    assert who(week, "2026-03-28 12:00") == "bob"
    assert who(week, "2026-03-31 12:00") == "carol"
    # Same start: the one made later (later in the rota's order) wins.
    tie = _add(weekend, "carol", "2026-03-28 00:00", "2026-03-29 00:00")
    assert who(tie, "2026-03-28 12:00") == "carol"


def test_orphans_name_what_is_gone(rota: Rota) -> None:
    override, _ = check_override(
        rota, OverrideRequest("us", "carol", "2026-03-28 18:00", "2026-03-29 18:00", "bob"), NOW
    )
    assert override is not None
    record = OverrideRecord(5, override, "cli", made_by="alice")
    smaller = parse_rota(
        ROTA_TEXT.replace('  - {name: bob, contacts: [{extension: "202"}]}\n', "").replace(
            "members: [bob]", "members: [alice]"
        )
    )
    assert orphans(smaller, [record]) == [
        "override #5 (carol instead of bob on us 2026-03-28T22:00:00+00:00 to "
        "2026-03-29T22:00:00+00:00) names person 'bob'"
    ]
    assert orphans(rota, [record]) == []


@pytest.mark.parametrize("text", ["=cmd|' /C calc'!A0", "+1+1", "-2", "@SUM(A1)", "\tx", "\rx"])
def test_formula_cells_are_escaped_and_read_back(text: str) -> None:
    assert csv_cell(text) == "'" + text
    assert from_csv_cell(csv_cell(text)) == text


def test_plain_cells_are_left_alone() -> None:
    for text in ("alice", "2026-03-28T18:00:00+01:00", "'quoted", ""):
        assert csv_cell(text) == text
        assert from_csv_cell(text) == text
