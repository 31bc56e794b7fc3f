"""``voipalert calendar url person|schedule NAME [--rotate]``: the secret iCalendar URL a
person subscribes to in their calendar application (their shifts in every schedule, or a
whole schedule's). The URL is derived from the server secret, so it can be printed again
at any time; ``--rotate`` makes the previous URL stop working. Exit status: 0 printed,
1 no such person or schedule."""

from __future__ import annotations

import argparse
import asyncio
import sys

from voipalert.app.store_config import public_url, store_config
from voipalert.cli.with_store import with_store
from voipalert.ingest.calendar_urls import calendar_path, calendar_token
from voipalert.settings import load_settings
from voipalert.store.ports import CliStore

EXIT_OK = 0
EXIT_UNKNOWN = 1


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cal = subparsers.add_parser("calendar", help="iCalendar feeds of shifts (secret URLs)")
    actions = cal.add_subparsers(dest="calendar_command", metavar="ACTION", required=True)
    url = actions.add_parser("url", help="print the secret URL of a person's or schedule's feed")
    url.add_argument("kind", choices=("person", "schedule"))
    url.add_argument("name", metavar="NAME")
    url.add_argument(
        "--rotate", action="store_true", help="make a new URL; the previous one stops working"
    )
    url.set_defaults(func=run_url)


def run_url(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)

    async def action(store: CliStore) -> str | None:
        rota = await store.load_rota()
        found = rota.person(args.name) if args.kind == "person" else rota.schedule(args.name)
        if found is None:
            return None
        if args.rotate:
            generation = await store.rotate_calendar(args.kind, args.name)
        else:
            generation = await store.calendar_generation(args.kind, args.name)
        return calendar_token(store.server_key, args.kind, args.name, generation)

    token = asyncio.run(with_store((settings.database.location, store_config(settings)), action))
    if token is None:
        print(f"voipalert: no {args.kind} named {args.name!r}", file=sys.stderr)
        return EXIT_UNKNOWN
    print(f"{public_url(settings)}{calendar_path(args.kind, args.name, token)}")
    return EXIT_OK
