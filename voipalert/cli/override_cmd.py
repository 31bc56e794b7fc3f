"""``voipalert override add|list|remove|import``: one-night swaps and holiday cover without
editing and re-importing the rota file (docs/rota-edits.md).

Every change is validated against the stored rota (unknown schedule or person, end before
start, longer than 92 days, ending in the past, a local time that does not exist), recorded
in the audit log under the OS user who ran the command, and seen by a running ``serve`` at
its next alert (no restart). ``import`` reads a CSV of shifts, all or nothing, every problem
with its line. ``list --csv`` writes the same columns, spreadsheet-safe.

Exit status: 0 done (an override that was already there counts), 1 refused (nothing
changed), 2 a wrong argument.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import getpass
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TextIO, TypeVar
from zoneinfo import ZoneInfo

from voipalert.app.store_config import store_config
from voipalert.cli.with_store import with_store
from voipalert.clock import SystemClock
from voipalert.domain.errors import RotaError
from voipalert.domain.override_edit import (
    BadTime,
    Origin,
    OverrideRecord,
    OverrideRequest,
    csv_cell,
    describe_override,
    parse_edit_time,
)
from voipalert.domain.rota import Rota
from voipalert.rotafile.shifts_csv import MAX_CSV_CHARS
from voipalert.settings import load_settings
from voipalert.store.overrides import Added, CsvImported
from voipalert.store.ports import CliStore

T = TypeVar("T")

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2


def os_user() -> str:
    """Who ran the command, for the audit log: the login name, else the numeric uid."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no USER/LOGNAME and no passwd entry (some containers)
        return f"uid {os.getuid()}"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    override = subparsers.add_parser(
        "override", help="add, list or remove overrides (one-off cover) without a rota import"
    )
    actions = override.add_subparsers(dest="override_command", metavar="ACTION", required=True)
    times = (
        "a date and time: 2026-03-28 18:00 is wall time in the schedule's zone, "
        "2026-03-28T17:00Z or ...+01:00 that instant"
    )
    add = actions.add_parser("add", help="put someone on call for a schedule for a while")
    add.add_argument("--schedule", required=True, metavar="NAME")
    add.add_argument("--person", required=True, metavar="NAME", help="who is on call")
    add.add_argument("--start", required=True, metavar="TIME", help=times)
    add.add_argument("--end", required=True, metavar="TIME", help=times)
    add.add_argument(
        "--replaces",
        metavar="NAME",
        help="only instead of this person (default: instead of whoever is on call)",
    )
    add.add_argument("--note", default="", help="why (at most 200 characters)")
    add.set_defaults(func=run_add)
    show = actions.add_parser("list", help="overrides that end after --from (default: now)")
    show.add_argument("--schedule", metavar="NAME", help="only this schedule")
    show.add_argument(
        "--from",
        dest="since",
        metavar="TIME",
        help="default now; without an offset: the --schedule's zone, else UTC",
    )
    show.add_argument("--to", dest="until", metavar="TIME", help="only those starting before")
    show.add_argument("--csv", action="store_true", help="CSV (re-importable, spreadsheet-safe)")
    show.set_defaults(func=run_list)
    remove = actions.add_parser("remove", help="remove an override by its id (see list)")
    remove.add_argument("id", type=int, metavar="ID")
    remove.set_defaults(func=run_remove)
    imp = actions.add_parser(
        "import", help="add the shifts of a CSV file (person, start, end, schedule) as overrides"
    )
    imp.add_argument("file", type=Path, metavar="FILE")
    imp.add_argument("--dry-run", action="store_true", help="only validate")
    imp.set_defaults(func=run_import)


def _run(args: argparse.Namespace, action: Callable[[CliStore], Awaitable[T]]) -> T:
    settings = load_settings(args.config)
    return asyncio.run(with_store((settings.database.location, store_config(settings)), action))


def _print_problems(exc: RotaError, where: str) -> None:
    for problem in exc.problems:
        print(problem.describe(where), file=sys.stderr)


def _local(record: OverrideRecord, rota: Rota | None, instant: datetime) -> str:
    schedule = rota.schedule(record.override.schedule) if rota else None
    zone = ZoneInfo(schedule.time_zone) if schedule else None
    return instant.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z") if zone else instant.isoformat()


def _line(record: OverrideRecord, rota: Rota | None) -> str:
    o = record.override
    swap = f" instead of {o.replaces}" if o.replaces else ""
    by = f" by {record.made_by}" if record.made_by else ""
    note = f"  {record.note!r}" if record.note else ""
    return (
        f"#{record.id}  {o.schedule}: {o.person}{swap}  {_local(record, rota, o.start)} → "
        f"{_local(record, rota, o.end)}  ({record.origin}{by}){note}"
    )


def run_add(args: argparse.Namespace) -> int:
    request = OverrideRequest(
        args.schedule, args.person, args.start, args.end, args.replaces, args.note
    )
    who = os_user()

    async def action(store: CliStore) -> tuple[Added, Rota]:
        return await store.add_override(request, Origin.CLI, who), await store.load_rota()

    try:
        added, rota = _run(args, action)
    except RotaError as exc:
        _print_problems(exc, "override")
        print("voipalert: override refused; nothing changed", file=sys.stderr)
        return EXIT_REFUSED
    if added.created:
        print(f"added {_line(added.record, rota)}")
    else:
        print(f"already there: {_line(added.record, rota)}")
    for other in added.overlaps:
        print(f"  overlaps {_line(other, rota)}")
    if added.overlaps:
        print("  (where overrides overlap, the one that starts last wins; see docs/rota-edits.md)")
    return EXIT_OK


def _bound(text: str | None, zone: ZoneInfo) -> datetime | None:
    return None if text is None else parse_edit_time(text, zone)


def run_list(args: argparse.Namespace) -> int:
    async def action(store: CliStore) -> tuple[list[OverrideRecord], Rota] | str:
        rota = await store.load_rota()
        schedule = rota.schedule(args.schedule) if args.schedule else None
        if args.schedule and schedule is None:
            return f"no schedule named {args.schedule!r}"
        zone = ZoneInfo(schedule.time_zone if schedule else "UTC")
        try:
            since = _bound(args.since, zone) or SystemClock().now_utc()
            until = _bound(args.until, zone)
        except BadTime as exc:
            return f"--from/--to: {exc}"
        found = await store.list_overrides(schedule=args.schedule, since=since, until=until)
        return found, rota

    result: tuple[list[OverrideRecord], Rota] | str = _run(args, action)
    if isinstance(result, str):
        print(f"voipalert: {result}", file=sys.stderr)
        return EXIT_USAGE
    records, rota = result
    if args.csv:
        write_csv(records, rota, sys.stdout)
        return EXIT_OK
    for record in records:
        print(_line(record, rota))
    if not records:
        print("no overrides")
    return EXIT_OK


def write_csv(records: Sequence[OverrideRecord], rota: Rota, out: TextIO) -> None:
    """The overrides in ``override import``'s columns, times with their offset in the
    schedule's zone. Every cell goes through ``csv_cell``: a note typed as ``=HYPERLINK(..)``
    stays text when the file is opened in a spreadsheet."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["person", "start", "end", "schedule", "replaces", "note"])
    for record in records:
        o = record.override
        schedule = rota.schedule(o.schedule)
        zone = ZoneInfo(schedule.time_zone) if schedule else ZoneInfo("UTC")
        cells = [
            o.person,
            o.start.astimezone(zone).isoformat(),
            o.end.astimezone(zone).isoformat(),
            o.schedule,
            o.replaces or "",
            record.note,
        ]
        writer.writerow([csv_cell(c) for c in cells])


def run_remove(args: argparse.Namespace) -> int:
    who = os_user()

    async def action(store: CliStore) -> OverrideRecord | None:
        return await store.remove_override(args.id, who)

    gone: OverrideRecord | None = _run(args, action)
    if gone is None:
        print(f"voipalert: no override #{args.id}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"removed #{gone.id}: {describe_override(gone.override)}")
    if gone.origin == Origin.FILE:
        print("  (it came from the rota file: the next `rota import` of that file restores it)")
    return EXIT_OK


def run_import(args: argparse.Namespace) -> int:
    path: Path = args.file
    limit = MAX_CSV_CHARS * 4  # UTF-8: at most 4 bytes a character
    try:
        # Read at most one byte past the limit: a device or a pipe has no size to check.
        with path.open("rb") as file:
            data = file.read(limit + 1)
        if len(data) > limit:
            raise ValueError(f"larger than {MAX_CSV_CHARS:,} characters")
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        print(
            f"voipalert: cannot read {path}: not UTF-8 (byte {exc.start + 1}); save it from "
            'the spreadsheet as "CSV UTF-8"',
            file=sys.stderr,
        )
        return EXIT_REFUSED
    except (OSError, ValueError) as exc:
        print(f"voipalert: cannot read {path}: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    who = os_user()

    async def action(store: CliStore) -> CsvImported:
        return await store.import_shifts(text, who, str(path), dry_run=args.dry_run)

    try:
        result: CsvImported = _run(args, action)
    except RotaError as exc:
        _print_problems(exc, str(path))
        count = len(exc.problems)
        print(
            f"voipalert: {path}: shifts rejected ({count} problem{'s' * (count != 1)}); "
            "nothing was added",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    if args.dry_run:
        print(
            f"{path}: valid ({result.would_add} to add, {result.already} already there); "
            "not imported (--dry-run)"
        )
        return EXIT_OK
    print(f"{path}: {len(result.added)} overrides added, {result.already} already there")
    for record in result.added:
        print(f"  #{record.id} {describe_override(record.override)}")
    return EXIT_OK
