"""The store's contract tests run against both backends: ``database`` is a fresh SQLite file
or a fresh PostgreSQL database, by parameter.

PostgreSQL is a real server from Debian's ``postgresql`` package (15), started once per
session in a temporary directory with ``initdb`` and ``pg_ctl``: as the ``postgres`` user
when the tests run as root (CI), since the server refuses to run as root; listening on
127.0.0.1 only, on a free port, with trust authentication (the cluster lives and dies with
the session). Each test gets its own database. Missing PostgreSQL skips these tests on a
developer's machine and fails them under ``CI`` (tests/requires.py).
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.net.sip_harness import free_port
from tests.requires import need

PG_BIN = Path("/usr/lib/postgresql/15/bin")
_numbers = itertools.count(1)


@dataclass(frozen=True)
class PgServer:
    port: int

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


def _as_postgres() -> list[str]:
    """The prefix that runs a command as the unprivileged ``postgres`` user under root."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    need(
        (PG_BIN / "initdb").exists() and (os.geteuid() != 0 or _has_user("postgres")),
        "needs PostgreSQL 15 (apt-get install -y postgresql)",
    )
    top = Path(tempfile.mkdtemp(prefix="voipalert-pg-"))
    data, sockets = top / "data", top / "run"
    sockets.mkdir()
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for path in (top, sockets):
            os.chown(path, user.pw_uid, user.pw_gid)
    port = free_port(socket.SOCK_STREAM)
    prefix = _as_postgres()
    subprocess.run(
        [*prefix, str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
         "-E", "UTF8", "--locale=C", "--no-sync"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off"
    )
    subprocess.run(
        [*prefix, str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(top / "log"),
         "-o", options, "-w", "-t", "60", "start"],
        check=True, capture_output=True, timeout=90,
    )  # fmt: skip
    try:
        yield PgServer(port)
    finally:
        subprocess.run(
            [*prefix, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            check=False, capture_output=True, timeout=60,
        )  # fmt: skip
        shutil.rmtree(top, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def database(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """Where a fresh, empty database is: a file path, or a PostgreSQL URL."""
    if backend == "sqlite":
        return str(tmp_path / "voipalert.db")
    return await new_pg_database(request.getfixturevalue("pg_server"))


async def new_pg_database(server: PgServer) -> str:
    """The URL of a new, empty database on ``server``."""
    name = f"t{os.getpid()}_{next(_numbers)}"
    admin = await asyncpg.connect(server.url())
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    return server.url(name)


class RawError(Exception):
    """A statement refused by the database itself (a trigger, a constraint)."""


class Raw:
    """Statements straight to the database, past the store (what an intruder with the file
    or the database credentials could try)."""

    def __init__(self, database: str) -> None:
        self.database = database
        self._pg: Any = None

    async def execute(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        if self.database.startswith("postgresql://"):
            if self._pg is None:
                self._pg = await asyncpg.connect(self.database)
            numbered = sql
            for n in range(1, len(params) + 1):
                numbered = numbered.replace("?", f"${n}", 1)
            try:
                return [tuple(r) for r in await self._pg.fetch(numbered, *params)]
            except asyncpg.PostgresError as exc:
                raise RawError(str(exc)) from exc
        import sqlite3

        conn = sqlite3.connect(self.database, isolation_level=None)
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            return list(conn.execute(sql, params).fetchall())
        except sqlite3.Error as exc:
            raise RawError(str(exc)) from exc
        finally:
            conn.close()

    async def close(self) -> None:
        if self._pg is not None:
            await self._pg.close()


@pytest.fixture
async def raw(database: str) -> AsyncIterator[Raw]:
    opened = Raw(database)
    yield opened
    await opened.close()
