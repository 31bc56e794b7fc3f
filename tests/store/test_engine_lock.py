"""One engine per SQLite database (store.engine_lock), with real ``voipalert serve``
processes: a second one on the same file refuses to start naming the holder, a SIGKILLed
holder leaves no stale lock, and the database commands keep working beside a server."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.net.sip_harness import free_port
from voipalert.store.engine_lock import EngineLock, EngineLockHeld, lock_file_of
from voipalert.store.errors import DatabaseUnusable

REPO = Path(__file__).resolve().parents[2]
ROTA = """
version: 1
people:
  - name: alice
    language: en
    contacts:
      - sip: sip:alice@127.0.0.1
policies:
  - name: page
    steps:
      - targets:
          - person: alice
        timeout: 60s
routes:
  - name: all
    default: true
    policy: page
"""


def _env(directory: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOIPALERT_")}
    return env | {
        "PYTHONPATH": str(REPO),
        "VOIPALERT_DATABASE__PATH": str(directory / "voipalert.db"),
        "VOIPALERT_HTTP__PORT": str(free_port(socket.SOCK_STREAM)),
        "VOIPALERT_SIP__LOCAL_PORT": str(free_port()),
        "VOIPALERT_TTS__VOICES_DIR": str(REPO / "voices"),
        "VOIPALERT_TTS__CACHE_DIR": str(directory / "cache"),
    }


def _serve(directory: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "voipalert", "serve"], env=_env(directory), cwd=directory,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def _cli(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voipalert", *args], env=_env(directory), cwd=directory,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def _holds_lock(directory: Path, process: subprocess.Popen[str]) -> None:
    """Wait until ``process`` has written itself into the lock file (it locks first)."""
    lock = lock_file_of(directory / "voipalert.db")
    async with asyncio.timeout(30):
        while not (lock.exists() and f"pid {process.pid} " in lock.read_text()):
            assert process.poll() is None, process.communicate()[0]
            await asyncio.sleep(0.05)


def _kill(process: subprocess.Popen[str], sig: int = signal.SIGKILL) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
    process.communicate(timeout=30)


@pytest.fixture
def servers() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        _kill(process)


async def test_second_serve_refuses_then_starts_after_sigkill(
    tmp_path: Path, servers: list[subprocess.Popen[str]]
) -> None:
    first = _serve(tmp_path)
    servers.append(first)
    await _holds_lock(tmp_path, first)

    second = _serve(tmp_path)
    servers.append(second)
    out, _ = await asyncio.to_thread(second.communicate, timeout=60)
    assert second.returncode == 1, out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out  # one line, no traceback, nothing bound or registered
    assert lines[0].startswith("voipalert: cannot start: another voipalert serve "), out
    assert f"pid {first.pid} on {socket.gethostname()}" in lines[0]
    assert str(tmp_path / "voipalert.db") in lines[0]

    # The database commands work beside the running server: they take no engine lock.
    (tmp_path / "rota.yaml").write_text(ROTA)
    imported = await asyncio.to_thread(_cli, tmp_path, "rota", "import", "rota.yaml")
    assert imported.returncode == 0, imported.stderr
    token = await asyncio.to_thread(_cli, tmp_path, "token", "create", "t", "--scope", "read")
    assert token.returncode == 0, token.stderr

    # SIGKILL: no chance to clean up, yet the kernel drops the lock with the process.
    _kill(first)
    third = _serve(tmp_path)
    servers.append(third)
    await _holds_lock(tmp_path, third)
    _kill(third)


def test_lock_in_process(tmp_path: Path) -> None:
    """The lock's own rules: in memory nothing is locked; released, it can be taken again."""
    assert EngineLock.acquire(":memory:") is None
    lock = EngineLock.acquire(tmp_path / "v.db")
    assert lock is not None
    assert (tmp_path / "v.db.lock").read_text() == (
        f"pid {os.getpid()} on {socket.gethostname()}\n"
    )
    lock.release()
    lock.release()  # twice is harmless
    again = EngineLock.acquire(tmp_path / "v.db")
    assert again is not None
    again.release()


def test_symlink_and_special_files_refused(tmp_path: Path) -> None:
    """A link planted at the lock's name would make the server truncate its target."""
    target = tmp_path / "precious"
    target.write_text("keep me")
    (tmp_path / "v.db.lock").symlink_to(target)
    with pytest.raises(DatabaseUnusable, match="is a symbolic link"):
        EngineLock.acquire(tmp_path / "v.db")
    assert target.read_text() == "keep me"
    os.mkfifo(tmp_path / "w.db.lock")
    with pytest.raises(DatabaseUnusable, match="not a regular file"):
        EngineLock.acquire(tmp_path / "w.db")
    with pytest.raises(DatabaseUnusable, match="does not exist"):
        EngineLock.acquire(tmp_path / "missing" / "v.db")


_ACQUIRE = """
import sys
from voipalert.store.engine_lock import EngineLock
EngineLock.acquire(sys.argv[1])
"""


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory another user can reach (pytest's own are private to their owner)."""
    directory = Path(tempfile.mkdtemp(prefix="voipalert-lock-"))
    directory.chmod(0o755)
    yield directory
    for path in sorted(directory.rglob("*"), reverse=True):
        path.chmod(0o700) if path.is_dir() else None
    shutil.rmtree(directory)


@pytest.mark.parametrize("case", ["foreign lock file", "unwritable directory"])
def test_unusable_lock_file_is_one_line(open_dir: Path, case: str) -> None:
    """Lock file pre-created by another user, or no right to create it: ``serve`` says so on
    one line naming the file and the fix, exit status 1, not a traceback. As root (CI) the
    server runs as ``nobody``; as anyone else, the file is made unwritable."""
    root = os.geteuid() == 0
    user = pwd.getpwnam("nobody") if root else None
    directory = open_dir / "state"
    directory.mkdir()
    if case == "foreign lock file":
        (directory / "voipalert.db.lock").write_text("")
        (directory / "voipalert.db.lock").chmod(0o644 if root else 0)
        directory.chmod(0o777)
        expected = "its lock file " + str(directory / "voipalert.db.lock") + " cannot be written"
    else:
        directory.chmod(0o755 if root else 0o500)
        expected = "is not writable"  # the database's own check, before the lock's
    env = _env(directory) | {"HOME": str(open_dir)}
    # The interpreter lives under root's private home, so the child starts as root, imports
    # what serve needs, then becomes ``nobody`` before it runs the command.
    drop = f"os.setgid({user.pw_gid}); os.setuid({user.pw_uid})" if user else "pass"
    script = (
        "import os, sys\nfrom voipalert.cli import main\nimport voipalert.app.serve\n"
        f"{drop}\nsys.exit(main(['serve']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
        check=False, cwd=open_dir, env=env,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("voipalert: cannot use the database "), result.stderr
    assert expected in lines[0], result.stderr
    assert "fix: " in lines[0]


def test_held_lock_error_names_holder(tmp_path: Path) -> None:
    """The holder's text is shown; an empty lock file (its holder has only just started)
    reads as such."""
    child = subprocess.Popen(
        [sys.executable, "-c", _ACQUIRE + "sys.stdout.write('ok\\n'); sys.stdout.flush(); "
         "sys.stdin.read()", str(tmp_path / "v.db")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=os.environ | {"PYTHONPATH": str(REPO)},
    )  # fmt: skip
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "ok\n"
        with pytest.raises(EngineLockHeld, match=f"pid {child.pid} on "):
            EngineLock.acquire(tmp_path / "v.db")
        (tmp_path / "v.db.lock").write_text("")
        with pytest.raises(EngineLockHeld, match="pid unknown"):
            EngineLock.acquire(tmp_path / "v.db")
    finally:
        child.communicate("", timeout=10)
