"""Every start-up problem with the database ends in one line naming the file and the fix:
the real CLI in a subprocess, against real files (missing directory, read-only for the
service user, damaged, locked by another process, written by a newer voipalert)."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.test_main import run
from tests.net.sip_harness import free_port
from tests.requires import need_root

REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"


def assert_one_line(result: subprocess.CompletedProcess[str], status: int, *words: str) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == status, result.stderr
    assert len(lines) == 1, result.stderr  # no traceback, no "Event loop is closed"
    assert "Traceback" not in result.stderr and "Event loop" not in result.stderr
    assert "fix:" in lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def db_env(path: Path, **extra: str) -> dict[str, str]:
    return {"VOIPALERT_DATABASE__PATH": str(path), **extra}


def test_missing_directory_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "no-such-dir" / "voipalert.db"
    for command in (["token", "list"], ["rota", "export"]):
        result = run(*command, env=db_env(path))
        line = assert_one_line(result, 2, str(path), "does not exist", "install -d")
        assert line.startswith("voipalert: cannot use the database")
    assert not path.parent.exists()


def test_serve_says_the_same_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "state" / "voipalert.db"
    env = db_env(
        path,
        VOIPALERT_HTTP__PORT=str(free_port(socket.SOCK_STREAM)),
        VOIPALERT_SIP__LOCAL_PORT=str(free_port()),
    )
    result = run("--log-level", "WARNING", "serve", env=env)
    assert_one_line(result, 2, str(path), "does not exist")


def test_a_damaged_file_is_named_with_the_way_out(tmp_path: Path) -> None:
    path = tmp_path / "voipalert.db"
    path.write_bytes(b"this is not SQLite\n" * 400)
    path.chmod(0o600)  # private, as voipalert keeps it: the one line is about the damage
    result = run("token", "list", env=db_env(path))
    assert_one_line(result, 1, str(path), "damaged", "backup")
    assert path.read_bytes() == b"this is not SQLite\n" * 400  # left as it was


def test_a_database_from_a_newer_voipalert_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "voipalert.db"
    assert run("token", "list", env=db_env(path)).returncode == 0
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 9999")
    result = run("token", "list", env=db_env(path))
    assert_one_line(result, 1, str(path), "schema version 9999 is newer")


def test_a_lock_held_by_another_process_is_reported(tmp_path: Path) -> None:
    # A database being written by someone else (here: this test, in rollback-journal mode,
    # as a sqlite3 shell would) while voipalert needs to migrate it.
    path = tmp_path / "voipalert.db"
    holder = sqlite3.connect(path, isolation_level=None)
    path.chmod(0o600)  # private, as voipalert keeps it: the one line is about the lock
    try:
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("CREATE TABLE held (x)")
        env = db_env(path, VOIPALERT_DATABASE__BUSY_TIMEOUT_MS="200")
        result = run("token", "list", env=env)
        assert_one_line(result, 1, str(path), "lock", "busy_timeout_ms")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert run("token", "list", env=db_env(path)).returncode == 0  # lock gone: it works


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another user can enter (pytest's tmp is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="voipalert-db-"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def as_nobody(cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The CLI as an unprivileged user (root ignores file modes), under the system Python
    with this checkout and its dependencies on PYTHONPATH."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VOIPALERT_")}
    clean["PYTHONPATH"] = f"{REPO}{os.pathsep}{sysconfig.get_paths()['purelib']}"
    clean["HOME"] = str(cwd)
    return subprocess.run(
        [SYSTEM_PYTHON, "-m", "voipalert", *args], cwd=cwd, env={**clean, **env},
        capture_output=True, text=True, timeout=60, check=False, user="nobody",
        group="nogroup", extra_groups=[],
    )  # fmt: skip


needs_root = pytest.mark.usefixtures("_root")


@pytest.fixture
def _root() -> None:
    need_root("switching users")


@needs_root
def test_a_directory_the_service_user_cannot_write(shared_dir: Path) -> None:
    path = shared_dir / "voipalert.db"
    assert run("token", "list", env=db_env(path)).returncode == 0  # created by root
    result = as_nobody(shared_dir, "token", "list", env=db_env(path))
    assert_one_line(result, 1, str(path), "not writable", "sudo -u voipalert")


@needs_root
def test_a_read_only_file(shared_dir: Path) -> None:
    path = shared_dir / "voipalert.db"
    assert run("token", "list", env=db_env(path)).returncode == 0
    os.chown(shared_dir, 65534, -1)  # the directory is the user's, the file is not
    path.chmod(0o644)
    result = as_nobody(shared_dir, "token", "list", env=db_env(path))
    assert_one_line(result, 1, str(path), "read-only")
    # The legitimate path: the same user with write access works.
    os.chown(path, 65534, -1)
    for extra in (shared_dir / "voipalert.db-wal", shared_dir / "voipalert.db-shm"):
        if extra.exists():
            os.chown(extra, 65534, -1)
    ok = as_nobody(shared_dir, "token", "list", env=db_env(path))
    assert ok.returncode == 0, ok.stderr
