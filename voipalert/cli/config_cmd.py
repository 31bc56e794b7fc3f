"""``voipalert config check``: load, validate and show the effective configuration."""

from __future__ import annotations

import argparse
import json
from typing import Any

from voipalert.settings import config_path, load_settings, masked_dump


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = subparsers.add_parser("config", help="inspect the configuration")
    actions = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check",
        help="validate the configuration and print the effective values (secrets masked)",
    )
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.set_defaults(func=run_check)


def _toml_line(key: str, value: Any) -> str:
    if value is None:
        return f"# {key} is not set"
    return f"{key} = {json.dumps(value, ensure_ascii=False)}"


def run_check(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    effective = masked_dump(settings)
    if args.json:
        print(json.dumps(effective, indent=2, ensure_ascii=False))
        return 0
    source = config_path(args.config)
    print(f"# configuration OK; file: {source if source else '(none: defaults + environment)'}")
    for section, values in effective.items():
        print(f"\n[{section}]")
        for key, value in values.items():
            print(_toml_line(key, value))
    return 0
