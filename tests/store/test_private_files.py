"""The database, its WAL and SHM files, the server secret and the prompt cache are private
to the service's user whatever the umask; another local user cannot read them; tokens of a
version-1 database are migrated to signing secrets that the database alone does not give."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.requires import need_root
from voipalert.clock import SystemClock
from voipalert.domain.alert import NewAlert
from voipalert.store import Scope, Store, StoreConfig
from voipalert.store.api_reads import ApiReads
from voipalert.store.db import migrations
from voipalert.tts.cache import PromptCache

NOBODY = 65534
# The venv under /work is not open to other users; the child needs only the standard library.
SYSTEM_PYTHON = "/usr/bin/python3"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def exists(path: Path) -> bool:
    return path.exists()


def write(path: Path, text: str) -> None:
    path.write_text(text)


@pytest.fixture(params=[0o022, 0o000])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every user may enter (unlike pytest's tmp_path, which is 0700), so that
    only the files' own modes stand between another user and them."""
    with tempfile.TemporaryDirectory(dir="/tmp") as name:
        os.chmod(name, 0o755)
        yield Path(name)


async def test_database_wal_shm_and_secret_are_0600_whatever_the_umask(
    umask: int, shared_dir: Path
) -> None:
    path = shared_dir / "voipalert.db"
    store = await Store.open(path, SystemClock())
    try:
        await store.create_or_join_alert(NewAlert("disk full"))  # the WAL and SHM exist now
        ApiReads(store, SystemClock()).load_server_key()  # as the HTTP app does at start
        files = [path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}.secret")]
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    finally:
        await store.close()


async def test_a_configured_secret_file_is_created_0600(umask: int, shared_dir: Path) -> None:
    secret = shared_dir / "keys" / "signing.secret"
    secret.parent.mkdir()
    store = await Store.open(shared_dir / "x.db", SystemClock(), StoreConfig(secret_file=secret))
    await store.create_api_token("grafana", frozenset({Scope.TRIGGER}))
    assert await store.signing_secret("grafana") is not None
    await store.close()
    assert mode(secret) == 0o600 and not exists(shared_dir / "x.db.secret")
    assert len(bytes.fromhex(secret.read_text())) == 32


async def test_files_left_readable_by_an_older_version_are_tightened(shared_dir: Path) -> None:
    path = shared_dir / "old.db"
    sqlite3.connect(path).close()
    os.chmod(path, 0o644)
    write(Path(f"{path}.secret"), "ab" * 32 + "\n")
    os.chmod(f"{path}.secret", 0o644)
    store = await Store.open(path, SystemClock())
    ApiReads(store, SystemClock()).load_server_key()
    await store.close()
    assert mode(path) == 0o600 and mode(Path(f"{path}.secret")) == 0o600


async def test_commands_that_sign_nothing_leave_no_secret_file(shared_dir: Path) -> None:
    # e.g. "voipalert rota import" with [http] secret_file pointing elsewhere.
    store = await Store.open(shared_dir / "r.db", SystemClock())
    await store.create_or_join_alert(NewAlert("x"))
    await store.close()
    assert not exists(shared_dir / "r.db.secret")


def read_as_nobody(path: Path) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys\n"
        "try:\n"
        f"    open({str(path)!r}, 'rb').read(16)\n"
        "except PermissionError:\n"
        "    sys.exit(13)\n"
    )
    return subprocess.run(
        [SYSTEM_PYTHON, "-c", code], user=NOBODY, group=NOBODY, capture_output=True, text=True
    )


async def test_another_user_cannot_read_the_database_or_the_secret(shared_dir: Path) -> None:
    need_root("switching to another uid")
    path = shared_dir / "voipalert.db"
    store = await Store.open(path, SystemClock())
    await store.create_api_token("ci", frozenset({Scope.TRIGGER}))
    assert await store.signing_secret("ci") is not None
    await store.close()
    for target in (path, Path(f"{path}-wal"), Path(f"{path}.secret")):
        if target.exists():
            assert read_as_nobody(target).returncode == 13, target
    # The same attempt on a file with the mode SQLite used to get (0644) succeeds: the check
    # above is what stops it.
    leaked = shared_dir / "leaked.db"
    leaked.write_bytes(path.read_bytes())
    os.chmod(leaked, 0o644)
    assert read_as_nobody(leaked).returncode == 0


def test_prompt_cache_directories_0700_and_files_0600(umask: int, tmp_path: Path) -> None:
    root = tmp_path / "cache" / "prompts"
    cache = PromptCache(root, 1_000_000)
    cache.put("ab" * 32, np.zeros(800, dtype=np.int16))
    stored = root / "ab" / f"{'ab' * 32}.wav"
    assert mode(stored) == 0o600
    assert mode(root / "ab") == 0o700 and mode(root) == 0o700 and mode(root.parent) == 0o700


def test_an_open_prompt_directory_is_tightened(tmp_path: Path) -> None:
    root = tmp_path / "prompts"
    (root / "cd").mkdir(parents=True)
    os.chmod(root, 0o755)
    os.chmod(root / "cd", 0o755)
    PromptCache(root, 1_000_000).put("cd" * 32, np.zeros(800, dtype=np.int16))
    assert mode(root) == 0o700 and mode(root / "cd") == 0o700


async def test_migration_0002_gives_old_signing_tokens_a_salt(tmp_path: Path) -> None:
    """A database of schema 1 with tokens, as the previous version left it."""
    path = tmp_path / "v1.db"
    (version, _, init_sql), *_ = migrations()
    assert version == 1
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(f"BEGIN; {init_sql}; PRAGMA user_version = 1; COMMIT;")
    rows = [
        ("grafana", "a" * 64, "trigger"),
        ("boss", "b" * 64, "admin"),
        ("dash", "c" * 64, "read"),
        ("mixed", "d" * 64, "read trigger"),
    ]
    for name, digest, scopes in rows:
        conn.execute(
            "INSERT INTO api_tokens (name, token_sha256, scopes, created_at) "
            "VALUES (?, ?, ?, '2026-01-01T00:00:00.000000+00:00')",
            (name, digest, scopes),
        )
    conn.close()
    store = await Store.open(path, SystemClock())
    try:
        secrets = {name: await store.signing_secret(name) for name, _, _ in rows}
    finally:
        await store.close()
    assert secrets["dash"] is None
    signers = [secrets[n] for n in ("grafana", "boss", "mixed")]
    assert all(s is not None and s.startswith("vas_") for s in signers)
    assert len(set(signers)) == 3
    # The old signing secret (the stored hash) is not the new one.
    assert "a" * 64 not in signers
    conn = sqlite3.connect(path)
    salts = dict(conn.execute("SELECT name, signing_salt FROM api_tokens").fetchall())
    conn.close()
    assert salts["dash"] is None and all(len(salts[n]) == 32 for n in ("grafana", "boss", "mixed"))
