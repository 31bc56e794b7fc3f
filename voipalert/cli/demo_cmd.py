"""``voipalert demo``: watch an alert become phone calls, on this machine alone."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="run the whole chain on this machine with the SIP testbed (Kamailio + baresip)",
    )
    demo.add_argument(
        "--stay",
        action="store_true",
        help="keep the web console up after the alert is acknowledged (Ctrl-C stops)",
    )
    demo.set_defaults(func=run_demo_command)


def run_demo_command(args: argparse.Namespace) -> int:
    from voipalert.app.demo import DemoError, run_demo  # heavy: see serve_cmd
    from voipalert.app.serve import StartupError
    from voipalert.settings import load_settings

    settings = load_settings(args.config)
    if args.log_level == "INFO":
        # The timeline is the demo's output; the service's own log would drown it.
        logging.getLogger().setLevel(logging.WARNING)
    try:
        return asyncio.run(run_demo(settings, stay=args.stay))
    except (DemoError, StartupError) as exc:
        print(f"voipalert demo: {exc}", file=sys.stderr)
        return 1
