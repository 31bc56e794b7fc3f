"""The command line as a user runs it: a real ``python -m voipalert`` process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from voipalert import __version__


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VOIPALERT_")}
    clean["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return subprocess.run(
        [sys.executable, "-m", "voipalert", *args],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        cwd=cwd,
        timeout=60,
        check=False,
    )


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"voipalert {__version__}"


def test_help_lists_only_commands_that_exist() -> None:
    import argparse

    from voipalert.cli import build_parser

    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    commands = set(subparsers.choices)
    assert "config" in commands
    # Every advertised command runs its own --help without error. The processes are
    # independent: two at a time (one per core of CI's machine), not ~16 in a row.
    names = sorted(commands)
    with ThreadPoolExecutor(max_workers=2) as pool:
        result, *helps = pool.map(
            lambda args: run(*args), [("--help",)] + [(n, "--help") for n in names]
        )
    assert result.returncode == 0
    for name in commands:
        assert name in result.stdout
    for name, helped in zip(names, helps, strict=True):
        assert helped.returncode == 0, name


def test_config_check_masks_secrets(tmp_path: Path) -> None:
    config = tmp_path / "voipalert.toml"
    config.write_text(
        '[sip]\nregistrar = "sip:127.0.0.1:5070"\nusername = "alerts"\npassword = "s3cret-pass"\n'
    )
    result = run("config", "check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert 'registrar = "sip:127.0.0.1:5070"' in result.stdout
    assert "s3cret-pass" not in result.stdout + result.stderr
    assert 'password = "**********"' in result.stdout
    as_json = json.loads(run("config", "check", "--json", cwd=tmp_path).stdout)
    assert as_json["sip"]["password"] == "**********"


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"VOIPALERT_SIP__LOCAL_PORT": "99999"}, "sip.local_port"),
        ({"VOIPALERT_SIP__REGISTRAR": "pbx.example.com"}, "sip.registrar"),
        ({"VOIPALERT_SIP__TRANSPORT": "carrier-pigeon"}, "sip.transport"),
    ],
)
def test_config_errors_exit_2_with_one_line(env: dict[str, str], key: str) -> None:
    result = run("config", "check", env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"voipalert: configuration error: {key} ")
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_config_file_from_environment_variable(tmp_path: Path) -> None:
    config = tmp_path / "elsewhere.toml"
    config.write_text("[http]\nport = 9999\n")
    result = run("config", "check", "--json", env={"VOIPALERT_CONFIG": str(config)})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["http"]["port"] == 9999


def test_unknown_command_is_a_usage_error() -> None:
    result = run("frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
