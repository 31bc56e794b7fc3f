"""``voipalert rota import|export`` and ``voipalert oncall``: the rota as text, and the
what-if question "who is (or will be) on call then?".

``rota import`` validates the whole file first (every problem with its line and reason) and
then replaces the rota in one transaction: all of it or nothing. Exit status: 0 imported,
1 rejected (the database is unchanged). ``oncall`` exits 1 when a schedule has nobody on
call at that instant (a gap), so it can run from a monitoring script.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from voipalert.app.store_config import sources_config
from voipalert.cli.with_store import with_store
from voipalert.clock import SystemClock
from voipalert.domain.errors import RotaError
from voipalert.domain.oncall import OnCall, who_is_on_call
from voipalert.domain.oncall_view import describe, parse_at
from voipalert.domain.rota import Rota, Schedule
from voipalert.rotafile.dump import dump_rota
from voipalert.rotafile.parse import RotaFormat, parse_rota
from voipalert.settings import load_settings
from voipalert.store import StoreConfig
from voipalert.store.feeds import SourceCopy
from voipalert.store.overrides import OverridesOrphaned
from voipalert.store.pg_url import shown_url
from voipalert.store.ports import CliStore

if TYPE_CHECKING:
    from voipalert.ingest.feed_poll import SourcesConfig

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_GAP = 1
EXIT_USAGE = 2


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rota = subparsers.add_parser("rota", help="import or export the rota (people, schedules...)")
    actions = rota.add_subparsers(dest="rota_command", metavar="ACTION", required=True)
    imp = actions.add_parser(
        "import", help="validate a rota file (YAML, or TOML if it ends in .toml) and load it"
    )
    imp.add_argument("file", type=Path, metavar="FILE")
    imp.add_argument(
        "--dry-run", action="store_true", help="only validate; leave the database alone"
    )
    imp.add_argument(
        "--keep-overrides",
        action="store_true",
        help="keep the overrides made with `override add`, the API or a CSV since (refused, "
        "with the list, if the file drops a schedule or person one of them names)",
    )
    imp.set_defaults(func=run_import)
    exp = actions.add_parser("export", help="print the stored rota as YAML (re-importable)")
    exp.add_argument("-o", "--output", type=Path, metavar="FILE", help="write to FILE instead")
    exp.set_defaults(func=run_export)

    oncall = subparsers.add_parser("oncall", help="who is (or will be) on call")
    oncall.add_argument(
        "--at",
        metavar="ISO-TIME",
        help="instant to ask about, e.g. 2026-03-29T02:45 (no offset: each schedule's local "
        "time; first occurrence when ambiguous) or 2026-03-29T00:45Z; default: now",
    )
    oncall.add_argument("--schedule", metavar="NAME", help="only this schedule")
    oncall.add_argument(
        "--fetch",
        action="store_true",
        help="ask schedules' live sources now instead of using their stored copies",
    )
    oncall.set_defaults(func=run_oncall)


T = TypeVar("T")


def _on_store(database: Path | str, action: Callable[[CliStore], Awaitable[T]]) -> T:
    return asyncio.run(with_store((database, StoreConfig()), action))


async def oncall_answers(
    rota: Rota,
    copies: dict[str, SourceCopy],
    schedules: list[Schedule],
    instants: list[datetime],
    *,
    fetch: bool = False,
    config: SourcesConfig | None = None,
) -> list[tuple[Schedule, datetime, OnCall, str]]:
    """What ``voipalert oncall`` answers for each schedule at its instant, with which copy
    of its live source answered ("" for a schedule without one)."""
    now = SystemClock().now_utc()
    answers = []
    for schedule, at in zip(schedules, instants, strict=True):
        said = ""
        if schedule.source is not None:
            from voipalert.ingest.feed_poll import feed_at  # aiohttp: only for sources

            copy = copies.get(schedule.name)
            schedule, said = await feed_at(
                schedule, rota, copy, at, now, fetch=fetch, config=config
            )
        answer = who_is_on_call(schedule, rota.overrides_for(schedule.name), at)
        answers.append((schedule, at, answer, said))
    return answers


def run_import(args: argparse.Namespace) -> int:
    path: Path = args.file
    if path.suffix.lower() == ".csv":
        print(
            f"voipalert: {path}: a CSV of shifts is added with `voipalert override import "
            f"{path}` (a rota file is YAML or TOML)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"voipalert: cannot read {path}: {exc}", file=sys.stderr)
        return EXIT_REJECTED
    fmt: RotaFormat = "toml" if path.suffix.lower() == ".toml" else "yaml"
    try:
        rota = parse_rota(text, fmt, filename=str(path))
    except RotaError as exc:
        for problem in exc.problems:
            print(problem.describe(str(path)), file=sys.stderr)
        count = len(exc.problems)
        print(
            f"voipalert: {path}: rota rejected ({count} problem{'s' * (count != 1)}); "
            "the database is unchanged",
            file=sys.stderr,
        )
        return EXIT_REJECTED
    summary = (
        f"{len(rota.people)} people, {len(rota.teams)} teams, {len(rota.schedules)} schedules, "
        f"{len(rota.overrides)} overrides, {len(rota.policies)} policies, {len(rota.routes)} routes"
    )
    if args.dry_run:
        print(f"{path}: valid ({summary}); not imported (--dry-run)")
        return EXIT_OK
    database = load_settings(args.config).database.location
    try:
        kept = _on_store(
            database,
            lambda store: store.replace_rota(
                rota, actor="cli", source=str(path), keep_overrides=args.keep_overrides
            ),
        )
    except OverridesOrphaned as exc:
        for reason in exc.reasons:
            print(f"{path}: {reason}, which this file does not have", file=sys.stderr)
        print(
            f"voipalert: {path}: not imported (--keep-overrides would keep overrides that name "
            "what the file drops); remove them with `voipalert override remove ID`, or "
            "import without --keep-overrides; the database is unchanged",
            file=sys.stderr,
        )
        return EXIT_REJECTED
    kept_text = f"; kept {kept} overrides made since" if args.keep_overrides else ""
    # A PostgreSQL URL may hold a password: never printed.
    shown = shown_url(database) if isinstance(database, str) else database
    print(f"{path}: imported into {shown} ({summary}{kept_text})")
    return EXIT_OK


def run_export(args: argparse.Namespace) -> int:
    rota = _on_store(load_settings(args.config).database.location, lambda s: s.load_rota())
    text = dump_rota(rota)
    if args.output is not None:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _instant(text: str | None, schedule: Schedule) -> datetime:
    if text is None:
        return SystemClock().now_utc()
    return parse_at(text, schedule)


def run_oncall(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    rota, copies = _on_store(settings.database.location, lambda s: s.load_rota_with_feeds())
    schedules = [s for s in rota.schedules if args.schedule in (None, s.name)]
    if args.schedule is not None and not schedules:
        print(f"voipalert: no schedule named {args.schedule!r}", file=sys.stderr)
        return EXIT_USAGE
    try:
        instants = [_instant(args.at, s) for s in schedules]
    except ValueError:
        print(f"voipalert: --at: not an ISO date-time: {args.at!r}", file=sys.stderr)
        return EXIT_USAGE
    config = sources_config(settings) if any(s.source for s in schedules) else None
    answers = asyncio.run(
        oncall_answers(rota, copies, schedules, instants, fetch=args.fetch, config=config)
    )
    gap = False
    for schedule, at, answer, said in answers:
        gap = gap or answer.gap
        print(describe(schedule, at, answer))
        if said:
            print(f"  source ({schedule.source.kind.value if schedule.source else ''}): {said}")
    return EXIT_GAP if gap else EXIT_OK
