"""The import contracts (pyproject.toml, [tool.importlinter]) fail when they should.

Each case copies the package, breaks one rule on purpose and runs ``lint-imports`` on the
copy; the untouched copy is the control. A contract that still passes here would pass
by accident in CI too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "voipalert", tmp_path / "voipalert")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env, capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text() + f"\n{line}\n")


def test_the_untouched_copy_keeps_every_contract(tmp_path: Path) -> None:
    result = _lint(_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _io_in_email_parser(tree: Path) -> str:
    _append(tree / "voipalert/ingest/email_parse.py", "import asyncio, socket  # noqa")
    return "voipalert.ingest.email_parse is not allowed to import asyncio"


def _renamed_engine(tree: Path) -> str:
    (tree / "voipalert/engine.py").rename(tree / "voipalert/escalation.py")
    return "voipalert.engine"


def _store_imports_the_engine(tree: Path) -> str:
    _append(tree / "voipalert/store/repo.py", "import voipalert.engine  # noqa")
    return "voipalert.store.repo -> voipalert.engine"


def _sip_core_opens_a_socket(tree: Path) -> str:
    _append(tree / "voipalert/sip/message.py", "import socket  # noqa")
    return "voipalert.sip.message -> socket"


def _decisions_import_the_file_format(tree: Path) -> str:
    _append(tree / "voipalert/domain/oncall.py", "import voipalert.rotafile.parse  # noqa")
    return "voipalert.domain.oncall -> voipalert.rotafile.parse"


def _rota_parser_reads_the_clock(tree: Path) -> str:
    _append(tree / "voipalert/rotafile/parse.py", "import time  # noqa")
    return "voipalert.rotafile.parse -> time"


@pytest.mark.parametrize(
    "breakage", [_io_in_email_parser, _renamed_engine, _store_imports_the_engine,
                 _sip_core_opens_a_socket, _decisions_import_the_file_format,
                 _rota_parser_reads_the_clock],
)  # fmt: skip
def test_each_broken_rule_fails_the_contracts(
    tmp_path: Path, breakage: Callable[[Path], str]
) -> None:
    tree = _copy(tmp_path)
    expected = breakage(tree)
    result = _lint(tree)
    assert result.returncode != 0, result.stdout
    assert expected in result.stdout + result.stderr
