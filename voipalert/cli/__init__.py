"""The ``voipalert`` command line (also ``python -m voipalert``).

Each command group lives in its own module with an ``add_parser(subparsers)`` function; this
module only wires them, sets logging up once, and turns a ``ConfigError`` into a clear
message and exit status 2 (no traceback), and a database that cannot be used into one line
naming the file and the fix (exit status 2 when the configured path is wrong, else 1).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from voipalert import __version__
from voipalert.cli import (  # _blas_threads first: before anything loads numpy
    _blas_threads,  # noqa: F401
    calendar_cmd,
    call_cmd,
    config_cmd,
    demo_cmd,
    dtmf_cmd,
    heartbeat_cmd,
    override_cmd,
    rota_cmd,
    say_cmd,
    serve_cmd,
    sip_cmd,
    token_cmd,
    user_cmd,
)
from voipalert.errors import ConfigError
from voipalert.logs import setup_logging
from voipalert.store.errors import DatabaseUnusable, StoreError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

# Only commands that exist are listed: a command is added here in the change that builds it.
COMMAND_MODULES = (
    serve_cmd,
    demo_cmd,
    config_cmd,
    sip_cmd,
    call_cmd,
    say_cmd,
    dtmf_cmd,
    rota_cmd,
    token_cmd,
    user_cmd,
    heartbeat_cmd,
    calendar_cmd,
    override_cmd,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voipalert",
        description="Turn technical events into phone calls through your own SIP PBX.",
    )
    parser.add_argument("--version", action="version", version=f"voipalert {__version__}")
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="TOML configuration file (default: $VOIPALERT_CONFIG, else ./voipalert.toml)",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="human-readable lines (default) or JSON lines",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,  # `--log-level info` as well as INFO
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="DEBUG, INFO (default), WARNING or ERROR, in any case",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_format, args.log_level)
    try:
        status = _run(args)
        sys.stdout.flush()  # here, not at exit, where a closed pipe prints a traceback
    except BrokenPipeError:
        return _reader_went_away()
    return status


def _run(args: argparse.Namespace) -> int:
    """The command, with the errors an operator can fix turned into one line each."""
    try:
        status: int = args.func(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"voipalert: configuration error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except DatabaseUnusable as exc:
        print(f"voipalert: cannot use the {exc}", file=sys.stderr)
        return EXIT_USAGE if exc.configuration else EXIT_FAILURE
    except StoreError as exc:
        # A statement failed after the start (a lock held longer than busy_timeout_ms...).
        print(f"voipalert: database error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        logging.getLogger("voipalert").info("interrupted")
        return 130
    return status


def _reader_went_away() -> int:
    """``voipalert config check --json | head -1``: the reader closed the pipe, which is not
    an error of ours. Python ignores SIGPIPE, so the write raised instead; point stdout at
    /dev/null so that the interpreter's final flush stays quiet (the recipe of the Python
    documentation, "Note on SIGPIPE")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_FAILURE
