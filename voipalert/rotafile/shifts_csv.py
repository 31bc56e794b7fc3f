"""A CSV of shifts (``voipalert override import``) to overrides, with the rota file's
validation: every problem with its line, nothing applied if there is one.

A row says "this person covers this schedule from start to end": it becomes one override
that takes the schedule over for that window (or, with a ``replaces`` column, swaps that
person out only). The format is what spreadsheets export (docs/rota-edits.md):

- a header row naming the columns, in any order and any case: ``person``, ``start``,
  ``end``, ``schedule``, and optionally ``replaces`` and ``note``; empty header cells (the
  trailing separators some exports add) are ignored;
- comma or semicolon separated (the header row decides: a spreadsheet in a locale whose
  decimal mark is a comma writes semicolons), optionally tab separated;
- UTF-8, with or without the byte-order mark Excel writes;
- times as ``override_edit.parse_edit_time`` reads them: ``2026-03-28 18:00`` is wall
  time in the row's schedule's zone, ISO with an offset is that instant.

Rows that are already stored (the same schedule, person, replaces, start and end) are not
added again, so importing the same file twice adds nothing the second time; rows equal
to an earlier row of the same file are likewise counted once.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from voipalert.domain.errors import RotaError, RotaProblem
from voipalert.domain.override_edit import OverrideRequest, check_override, from_csv_cell
from voipalert.domain.rota import Override, Rota

MAX_CSV_CHARS: Final = 1_000_000
MAX_ROWS: Final = 5_000
MAX_CELL_CHARS: Final = 1_000  # any cell; names, times and notes have tighter limits
REQUIRED: Final = ("person", "start", "end", "schedule")
OPTIONAL: Final = ("replaces", "note")
BOM: Final = "\ufeff"


@dataclass(frozen=True, slots=True)
class ShiftRow:
    line: int  # where the row starts in the file
    override: Override
    note: str


def _delimiter(header: str) -> str:
    counts = {d: header.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _fail(filename: str, line: int | None, path: str, message: str) -> RotaError:
    return RotaError([RotaProblem(line, path, message)], filename)


def _header(cells: list[str], filename: str) -> dict[str, int]:
    columns: dict[str, int] = {}
    problems = []
    for index, cell in enumerate(cells):
        name = cell.strip().lower()
        if not name:
            continue
        if name not in REQUIRED + OPTIONAL:
            expected = ", ".join(REQUIRED + OPTIONAL)
            problems.append(
                RotaProblem(1, "", f"unknown column {name[:40]!r} (expected: {expected})")
            )
        elif name in columns:
            problems.append(RotaProblem(1, "", f"column {name!r} appears twice"))
        else:
            columns[name] = index
    for name in REQUIRED:
        if name not in columns and not any(p.message.endswith("twice") for p in problems):
            problems.append(RotaProblem(1, "", f"missing column {name!r}"))
    if problems:
        raise RotaError(problems, filename)
    return columns


def parse_shifts(
    text: str,
    rota: Rota,
    now: datetime,
    existing: Collection[Override] = (),
    filename: str = "shifts.csv",
) -> list[ShiftRow]:
    """The rows of a shifts CSV as overrides, checked against ``rota``; ``RotaError`` with
    every problem when any row is wrong. A row ending in the past is refused unless it is
    already stored (re-importing last month's file is not an error)."""
    if len(text) > MAX_CSV_CHARS:
        raise _fail(filename, None, "", f"the file is larger than {MAX_CSV_CHARS:,} characters")
    text = text.removeprefix(BOM)
    if not text.strip():
        raise _fail(filename, 1, "", "the file is empty (expected a header row)")
    first = text.lstrip("\r\n").splitlines()[0]
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(first), strict=True)
    problems: list[RotaProblem] = []
    rows: list[ShiftRow] = []
    seen: set[Override] = set()
    columns: dict[str, int] | None = None
    for count, (start, cells) in enumerate(_records(reader, problems)):
        if columns is None:
            columns = _header(cells, filename)
            continue
        if count > MAX_ROWS:
            problems.append(RotaProblem(start, "", f"more than {MAX_ROWS:,} rows"))
            break
        row = _row(cells, columns, start, problems)
        if row is not None:
            _shift(rota, now, existing, start, row, rows, seen, problems)
    if columns is None:
        problems.append(RotaProblem(1, "", "no header row"))
    if problems:
        raise RotaError(problems, filename)
    return rows


def _records(
    reader: Iterator[list[str]], problems: list[RotaProblem]
) -> Iterator[tuple[int, list[str]]]:
    """The non-blank records with the line each starts on; a CSV syntax error ends them."""
    line_num = 0
    while True:
        start = line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problems.append(
                RotaProblem(getattr(reader, "line_num", start), "", f"not valid CSV: {exc}")
            )
            return
        line_num = int(getattr(reader, "line_num", start))
        if any(c.strip() for c in cells):
            yield start, cells


def _shift(
    rota: Rota,
    now: datetime,
    existing: Collection[Override],
    line: int,
    row: tuple[OverrideRequest, str],
    rows: list[ShiftRow],
    seen: set[Override],
    problems: list[RotaProblem],
) -> None:
    override, found = check_override(rota, row[0], now, line=line, allow_past=True)
    problems.extend(found)
    if override is None:
        return
    if override.end <= now and override not in existing:
        problems.append(RotaProblem(line, "end", "is in the past: it would never apply"))
    elif override not in seen:
        seen.add(override)
        rows.append(ShiftRow(line, override, row[1]))


def _row(
    cells: list[str], columns: dict[str, int], line: int, problems: list[RotaProblem]
) -> tuple[OverrideRequest, str] | None:
    width = max(columns.values()) + 1
    if any(c.strip() for c in cells[width:]):
        problems.append(RotaProblem(line, "", "more cells than the header has columns"))
        return None
    values: dict[str, str] = {}
    bad = False
    for name, index in columns.items():
        value = cells[index] if index < len(cells) else ""
        if len(value) > MAX_CELL_CHARS:
            problems.append(RotaProblem(line, name, f"too long ({len(value):,} characters)"))
            bad = True
        values[name] = value
    if bad:
        return None
    note = from_csv_cell(values.get("note", "").strip())
    request = OverrideRequest(
        schedule=values["schedule"],
        person=values["person"],
        start=values["start"],
        end=values["end"],
        replaces=values.get("replaces") or None,
        note=note,
    )
    return request, note
