"""The small command-line fixes of the operations review, each as a user meets it: the real
``python -m voipalert`` in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.cli.test_main import run

REPO = Path(__file__).resolve().parents[2]

CONFIG = """
[imap]
enabled = false
allowed_senders = ["nagios@example.com"]

[[routes]]
name = "databases"
subject = "(?i)database"
team = "ops"

[[routes]]
name = "rest"
default = true
team = "ops"
"""


def test_log_level_in_any_case(tmp_path: Path) -> None:
    for level in ("info", "Warning", "DEBUG"):
        result = run("--log-level", level, "config", "check", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    wrong = run("--log-level", "loud", "config", "check", cwd=tmp_path)
    assert wrong.returncode == 2 and "invalid choice: 'LOUD'" in wrong.stderr


def test_config_check_output_is_the_same_configuration_when_pasted_back(tmp_path: Path) -> None:
    (tmp_path / "voipalert.toml").write_text(CONFIG)
    shown = run("config", "check", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    parsed = tomllib.loads(shown.stdout)
    assert [r["name"] for r in parsed["routes"]] == ["databases", "rest"]
    assert "routes" not in parsed["imap"]
    # Pasted back as a file, it is the same configuration.
    pasted = tmp_path / "pasted"
    pasted.mkdir()
    (pasted / "voipalert.toml").write_text(shown.stdout)
    first = json.loads(run("config", "check", "--json", cwd=tmp_path).stdout)
    again = json.loads(run("config", "check", "--json", cwd=pasted).stdout)
    assert again == first


def test_empty_routes_stay_at_the_top_level(tmp_path: Path) -> None:
    shown = run("config", "check", cwd=tmp_path)
    parsed = tomllib.loads(shown.stdout)
    assert parsed["routes"] == []
    assert "routes" not in parsed["imap"]


def test_a_closed_pipe_is_not_a_traceback(tmp_path: Path) -> None:
    # `voipalert config check --json | head -1`, made deterministic: the reader is gone
    # before the first write.
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOIPALERT_")}
    env["PYTHONPATH"] = str(REPO)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "voipalert", "config", "check", "--json"],
            stdout=write_end, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
            timeout=60, check=False,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert result.stderr == ""
    assert result.returncode == 1


def test_the_demo_runs_the_packages_testbed_not_one_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from voipalert.app.demo import find_testbed

    planted = tmp_path / "sip-testbed"
    planted.mkdir()
    (planted / "testbed.py").write_text("raise SystemExit('planted testbed executed')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "testbed", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    module = find_testbed()
    assert Path(module.__file__ or "").parent == Path(__file__).resolve().parents[2] / "sip-testbed"
