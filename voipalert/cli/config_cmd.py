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


def _is_table(value: Any) -> bool:
    return isinstance(value, dict)


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _table_lines(name: str, values: dict[str, Any], array: bool = False) -> list[str]:
    """``[name]`` (or ``[[name]]``) with its plain keys, then its sub-tables, recursively."""
    lines = ["", f"[[{name}]]" if array else f"[{name}]"]
    nested: list[tuple[str, Any]] = []
    for key, value in values.items():
        if _is_table(value) or _is_table_array(value):
            nested.append((key, value))
        else:
            lines.append(_toml_line(key, value))
    for key, value in nested:
        if _is_table_array(value):
            for item in value:
                lines += _table_lines(f"{name}.{key}", item, array=True)
        else:
            lines += _table_lines(f"{name}.{key}", value)
    return lines


def run_check(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    effective = masked_dump(settings)
    if args.json:
        print(json.dumps(effective, indent=2, ensure_ascii=False))
        return 0
    source = config_path(args.config)
    print(f"# configuration OK; file: {source if source else '(none: defaults + environment)'}")
    # Plain top-level keys (``routes = []``) first: after a [table] header they would belong
    # to that table when the output is pasted back into a file (TOML 1.0, "Table").
    tables = [(k, v) for k, v in effective.items() if _is_table(v) or _is_table_array(v)]
    for section, values in effective.items():
        if (section, values) not in tables:
            print(_toml_line(section, values))
    for section, values in tables:
        if _is_table(values):
            print("\n".join(_table_lines(section, values)))
        else:
            for item in values:
                print("\n".join(_table_lines(section, item, array=True)))
    return 0
