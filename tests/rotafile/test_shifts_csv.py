"""A CSV of shifts as spreadsheets export it, validated like a rota file: every problem with
its line, nothing taken when there is one; and the hostile files (huge, overlong cells,
formula cells, a local time that does not exist)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.domain.test_override_edit import NOW, ROTA_TEXT
from voipalert.domain.errors import RotaError
from voipalert.domain.rota import Rota
from voipalert.rotafile.parse import parse_rota
from voipalert.rotafile.shifts_csv import MAX_ROWS, parse_shifts


@pytest.fixture(scope="module")
def rota() -> Rota:
    return parse_rota(ROTA_TEXT)


def problems(text: str, rota: Rota) -> list[str]:
    with pytest.raises(RotaError) as caught:
        parse_shifts(text, rota, NOW, filename="s.csv")
    return [p.describe("s.csv") for p in caught.value.problems]


def test_comma_separated_with_iso_and_local_times(rota: Rota) -> None:
    text = (
        "person,start,end,schedule\n"
        "bob,2026-03-28 18:00,2026-03-29 08:00,primary\n"
        "carol,2026-03-28T17:00Z,2026-03-28T23:00:00-04:00,us\n"
    )
    rows = parse_shifts(text, rota, NOW)
    assert [(r.line, r.override.person, r.override.schedule) for r in rows] == [
        (2, "bob", "primary"),
        (3, "carol", "us"),
    ]
    assert rows[0].override.start == datetime(2026, 3, 28, 17, tzinfo=UTC)
    assert rows[0].override.end == datetime(2026, 3, 29, 6, tzinfo=UTC)  # after the change
    assert rows[1].override.end == datetime(2026, 3, 29, 3, tzinfo=UTC)


def test_excel_semicolons_bom_crlf_any_column_order_and_trailing_columns(rota: Rota) -> None:
    text = (
        "\ufeffSchedule;Person;Start;End;Note;;\r\n"
        'primary;bob;2026-03-28 18:00;2026-03-29 08:00;"swap; asked by alice";;\r\n'
        ";;;;;;\r\n"
        "primary;carol;2026-03-30 18:00;2026-03-31 08:00;;;\r\n"
    )
    rows = parse_shifts(text, rota, NOW)
    assert [(r.line, r.override.person, r.note) for r in rows] == [
        (2, "bob", "swap; asked by alice"),
        (4, "carol", ""),
    ]


def test_a_quoted_cell_over_two_lines_keeps_the_line_numbers_right(rota: Rota) -> None:
    text = (
        "person,start,end,schedule,note\n"
        'bob,2026-03-28 18:00,2026-03-29 08:00,primary,"two\nlines"\n'
        "dave,2026-03-28 18:00,2026-03-29 08:00,primary,\n"
    )
    assert problems(text, rota) == [
        "s.csv:2: note: control characters are not allowed",
        "s.csv:4: person: no person named 'dave'",
    ]


def test_every_problem_with_its_line_and_nothing_taken(rota: Rota) -> None:
    text = (
        "person,start,end,schedule\n"
        "bob,2026-03-28 18:00,2026-03-29 08:00,primary\n"
        "dave,2026-03-28 18:00,2026-03-29 08:00,primary\n"
        "bob,2026-03-29 08:00,2026-03-28 18:00,primary\n"
        "\n"
        "bob,2026-03-29 02:30,2026-03-29 08:00,primary\n"
        "bob,2026-03-28 18:00,2026-03-29 08:00,secondary\n"
        "bob,2026-03-28 18:00\n"
    )
    assert problems(text, rota) == [
        "s.csv:3: person: no person named 'dave'",
        "s.csv:4: end: must be after start",
        "s.csv:6: start: 2026-03-29 02:30 does not exist in Europe/Paris (the clocks jump "
        "forward to 03:00 that night); give 03:00 or a time with its UTC offset",
        "s.csv:7: schedule: no schedule named 'secondary'",
        "s.csv:8: end: missing",
        "s.csv:8: schedule: missing",
    ]


def test_header_problems(rota: Rota) -> None:
    assert problems("who,start,end\nbob,1,2\n", rota) == [
        "s.csv:1: unknown column 'who' (expected: person, start, end, schedule, replaces, note)",
        "s.csv:1: missing column 'person'",
        "s.csv:1: missing column 'schedule'",
    ]
    assert problems("", rota) == ["s.csv:1: the file is empty (expected a header row)"]
    assert problems('person,start,end,schedule\n"bob,x\n', rota) == [
        "s.csv:2: not valid CSV: unexpected end of data"
    ]
    assert problems("person,person,start,end,schedule\n", rota) == [
        "s.csv:1: column 'person' appears twice"
    ]
    assert problems("\n\n", rota) == ["s.csv:1: the file is empty (expected a header row)"]


def test_formula_cells_stay_text(rota: Rota) -> None:
    text = (
        "person,start,end,schedule,note\n"
        "=cmd|' /C calc'!A0,2026-03-28 18:00,2026-03-29 08:00,primary,x\n"
        'bob,2026-03-28 18:00,2026-03-29 08:00,primary,"=HYPERLINK(""http://x"")"\n'
    )
    assert problems(text, rota) == ["s.csv:2: person: no person named \"=cmd|' /C calc'!A0\""]
    rows = parse_shifts(text.replace("=cmd|' /C calc'!A0", "carol"), rota, NOW)
    assert rows[1].note == '=HYPERLINK("http://x")'
    # What ``override list --csv`` writes (an apostrophe before a formula) reads back as is.
    escaped = text.replace('"=HYPERLINK', "\"'=HYPERLINK").replace("=cmd|' /C calc'!A0", "carol")
    assert parse_shifts(escaped, rota, NOW)[1].note == '=HYPERLINK("http://x")'


def test_huge_files_overlong_cells_and_too_many_rows(rota: Rota) -> None:
    assert problems("x" * 1_000_001, rota) == [
        "s.csv: the file is larger than 1,000,000 characters"
    ]
    long_cell = (
        "person,start,end,schedule\n" + "b" * 5000 + ",2026-03-28 18:00,2026-03-29 08:00,primary\n"
    )
    assert problems(long_cell, rota) == ["s.csv:2: person: too long (5,000 characters)"]
    huge_field = 'person,start,end,schedule,note\nbob,1,2,primary,"' + "n" * 200_000 + '"\n'
    found = problems(huge_field, rota)
    assert found and found[0].startswith("s.csv:2")
    row = "bob,2026-03-28 18:00,2026-03-29 08:00,primary\n"
    many = "person,start,end,schedule\n" + row * (MAX_ROWS + 1)
    assert problems(many, rota) == [f"s.csv:{MAX_ROWS + 2}: more than 5,000 rows"]


def test_past_rows_are_refused_unless_already_stored(rota: Rota) -> None:
    text = "person,start,end,schedule\nbob,2026-02-01 00:00,2026-02-02 00:00,primary\n"
    assert problems(text, rota) == ["s.csv:2: end: is in the past: it would never apply"]
    stored = parse_shifts(text, rota, datetime(2026, 1, 1, tzinfo=UTC))
    assert parse_shifts(text, rota, NOW, {stored[0].override}) == stored


def test_the_same_row_twice_is_one_shift(rota: Rota) -> None:
    row = "bob,2026-03-28 18:00,2026-03-29 08:00,primary\n"
    rows = parse_shifts("person,start,end,schedule\n" + row + row, rota, NOW)
    assert len(rows) == 1
