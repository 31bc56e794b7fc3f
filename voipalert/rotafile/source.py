"""Rota text (YAML or TOML) to a tree of values that remember their line.

YAML lines are exact (PyYAML's node marks). TOML's standard parser keeps no positions, so
lines are found by scanning the text for table headers and ``key =`` lines: exact for the
usual layout (one key per line, ``[[people]]`` array-of-tables), the enclosing key's line
for values inside inline tables and arrays.

YAML scalars also keep the text as written: YAML 1.1 reads ``18:00`` as the number 1080
and ``+33612345678`` as an integer, so a field that wants text (a time, a phone number)
takes the text.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from typing import Final

import yaml
from yaml.constructor import ConstructorError, SafeConstructor

from voipalert.domain.errors import RotaError, RotaProblem

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Node:
    value: object  # dict[str, Node] | list[Node] | a scalar
    line: int | None
    raw: str | None = None


def _yaml_node(node: yaml.Node, constructor: SafeConstructor, problems: list[RotaProblem]) -> Node:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        items: dict[str, Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                problems.append(RotaProblem(key_node.start_mark.line + 1, "", "keys must be text"))
                continue
            if key in items:
                problems.append(RotaProblem(key_node.start_mark.line + 1, key, "duplicate key"))
                continue
            items[key] = _yaml_node(value_node, constructor, problems)
        return Node(items, line)
    if isinstance(node, yaml.SequenceNode):
        return Node([_yaml_node(item, constructor, problems) for item in node.value], line)
    try:
        value = constructor.construct_object(node, deep=True)
    except (ConstructorError, ValueError):
        # "2026-13-01" looks like a date to YAML but is none: keep the text, and let the
        # field's reader say what it expected.
        value = str(node.value)
    return Node(value, line, raw=str(node.value))


def load_yaml(text: str) -> Node:
    """Parse YAML into a located tree; syntax errors become a ``RotaError`` with the line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise RotaError([RotaProblem(line, "", f"not valid YAML: {exc.problem}")]) from None
    except yaml.YAMLError as exc:
        raise RotaError([RotaProblem(None, "", f"not valid YAML: {exc}")]) from None
    if root is None:
        raise RotaError([RotaProblem(1, "", "the rota file is empty")])
    problems: list[RotaProblem] = []
    tree = _yaml_node(root, SafeConstructor(), problems)
    if problems:
        raise RotaError(problems)
    return tree


_HEADER: Final = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY: Final = re.compile(
    r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*="""
)


def _split_key(dotted: str) -> tuple[str, ...]:
    parts = re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", dotted)
    return tuple(p.strip("\"'") for p in parts)


class _TomlLines:
    """Maps key paths to the line that defines them, by scanning the text."""

    def __init__(self, text: str) -> None:
        self.lines: dict[Path, int] = {}
        counters: dict[Path, int] = {}
        table: Path = ()
        in_multiline = False
        for number, line in enumerate(text.splitlines(), start=1):
            if line.count('"""') % 2 or line.count("'''") % 2:
                in_multiline = not in_multiline
                if not in_multiline:
                    continue
            if in_multiline:
                continue
            header = _HEADER.match(line)
            if header:
                table = self._open(header.group(1) == "[[", _split_key(header.group(2)), counters)
                self.lines.setdefault(table, number)
                continue
            key = _KEY.match(line)
            if key:
                self.lines.setdefault(table + _split_key(key.group(1)), number)

    def _open(self, is_array: bool, keys: tuple[str, ...], counters: dict[Path, int]) -> Path:
        # Resolve each array-of-tables prefix to its latest element, as TOML does.
        path: Path = ()
        for depth, key in enumerate(keys):
            path = (*path, key)
            last = depth == len(keys) - 1
            if last and is_array:
                counters[path] = counters.get(path, -1) + 1
                path = (*path, counters[path])
            elif path in counters:
                path = (*path, counters[path])
        return path

    def find(self, path: Path) -> int | None:
        for end in range(len(path), 0, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None


def _toml_node(value: object, path: Path, lines: _TomlLines) -> Node:
    line = lines.find(path)
    if isinstance(value, dict):
        return Node({str(k): _toml_node(v, (*path, str(k)), lines) for k, v in value.items()}, line)
    if isinstance(value, list):
        return Node([_toml_node(v, (*path, i), lines) for i, v in enumerate(value)], line)
    return Node(value, line)


def load_toml(text: str) -> Node:
    """Parse TOML into a located tree (lines found as well as the layout allows)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"line (\d+)", str(exc))
        # "at end of document" has no line number: the last line is where it ended.
        line = int(found.group(1)) if found else max(1, len(text.splitlines()))
        raise RotaError([RotaProblem(line, "", f"not valid TOML: {exc}")]) from None
    return _toml_node(data, (), _TomlLines(text))
