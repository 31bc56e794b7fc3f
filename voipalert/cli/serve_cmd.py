"""``voipalert serve``: run the main job until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import sys


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = subparsers.add_parser(
        "serve",
        help="run voipalert: HTTP/e-mail triggers, the escalation engine and the phone",
    )
    command.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    # Imported here: the service's modules (speech, SIP, HTTP) cost seconds to import, and
    # the commands that do not serve should not pay for them.
    from voipalert.app.serve import StartupError, serve
    from voipalert.settings import load_settings

    settings = load_settings(args.config)
    try:
        return asyncio.run(serve(settings))
    except StartupError as exc:
        print(f"voipalert: cannot start: {exc}", file=sys.stderr)
        return 1
