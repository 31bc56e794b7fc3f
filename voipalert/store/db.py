"""The one SQLite connection: pragmas, migrations, and short serialized transactions.

SQLite has one writer even in WAL mode, so the store owns exactly one connection and runs
one transaction at a time on it (an ``asyncio.Lock``): statements of two coroutines never
interleave inside a transaction. Each store method is one short transaction with no network
wait inside it (GoAlert commits before it sends). aiosqlite runs the statements of a
connection in order on its own thread, so even when the awaiting task is cancelled mid-way
the ``ROLLBACK`` queued by the cancel still runs before the next transaction's ``BEGIN``.

Files are private (owner read/write only) whatever the umask: the database file is
created 0600 before SQLite opens it, and SQLite gives its ``-wal`` and ``-shm`` files the
mode of the database file. A database left group- or world-readable by an older version is
tightened at open. The server secret that webhook signing secrets derive from lives in a
0600 file of its own (``store.secret``), found here (``StoreConfig.secret_file``, else next
to the database) so that every process that opens the database (the daemon, ``voipalert
token``) uses the same one.

Migrations are the numbered files ``schema/NNNN_name.sql``; each one runs in its own
transaction together with ``PRAGMA user_version = NNNN``, so a database is always at exactly
one schema version.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Final, Literal

import aiosqlite

from voipalert.store.errors import DatabaseUnusable, StoreError
from voipalert.store.secret import (
    create_private,
    default_secret_file,
    load_server_key,
    make_private,
)
from voipalert.store.sql import Conn, SqliteConn
from voipalert.store.startup import check_location, explain

_MIGRATION_NAME: Final = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class StoreConfig:
    busy_timeout_ms: int = 5000
    # FULL: a commit is on disk before it returns, so "202 accepted" survives a power cut.
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    # The server secret (``store.secret``); None: ``<database>.secret``.
    secret_file: Path | None = None


def to_db(instant: datetime) -> str:
    """UTC text with fixed width, so text order is time order."""
    if instant.tzinfo is None:
        raise ValueError("the store only keeps aware datetimes")
    return instant.astimezone(UTC).isoformat(timespec="microseconds")


def from_db(text: str) -> datetime:
    return datetime.fromisoformat(text)


def from_db_opt(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def migrations() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) for every migration shipped, in order."""
    found = []
    for entry in resources.files("voipalert.store").joinpath("schema").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def _private_files(path: Path | str) -> None:
    """Create the database file 0600 when it is missing, and tighten it and its WAL/SHM
    files when another user could read them."""
    if default_secret_file(path) is None:
        return  # in memory
    main = Path(path)
    try:
        create_private(main, b"")  # empty: SQLite writes its header at the first write
        for file in (main, Path(f"{main}-wal"), Path(f"{main}-shm")):
            make_private(file)
    except OSError as exc:
        raise StoreError(f"open database {path}: {exc}") from exc


class SqliteDatabase:
    """The SQLite backend of ``store.sql.Database``."""

    def __init__(
        self, conn: aiosqlite.Connection, path: Path | str = "", secret_file: Path | None = None
    ) -> None:
        self._conn = conn
        self._path = path
        self._lock = asyncio.Lock()
        self._secret_file = secret_file
        self._server_key: bytes | None = None

    @property
    def server_key(self) -> bytes:
        """The server secret (``store.secret``), read, or created 0600, at first use: by the
        HTTP app when it is built, by ``voipalert token``; never by commands that do not
        need it, so they leave no stray secret file behind."""
        if self._server_key is None:
            self._server_key = load_server_key(self._secret_file)
        return self._server_key

    @classmethod
    async def open(cls, path: Path | str, config: StoreConfig | None = None) -> SqliteDatabase:
        config = config or StoreConfig()
        check_location(path)
        try:
            _private_files(path)
        except StoreError as exc:
            raise explain(path, exc) from exc
        pending = aiosqlite.connect(path, isolation_level=None)
        try:
            conn = await pending
        except sqlite3.Error as exc:
            await _join_worker(pending)
            raise explain(path, exc) from exc
        conn.row_factory = aiosqlite.Row
        db = cls(conn, path, config.secret_file or default_secret_file(path))
        try:
            await conn.execute(f"PRAGMA busy_timeout = {int(config.busy_timeout_ms)}")
            await conn.execute("PRAGMA foreign_keys = ON")
            await conn.execute(f"PRAGMA synchronous = {config.synchronous}")
            async with conn.execute("PRAGMA journal_mode = WAL") as cursor:
                row = await cursor.fetchone()
            if row is None or str(row[0]).lower() != "wal":
                raise StoreError(f"open database {path}: cannot switch to WAL mode")
            await db._migrate()
        except BaseException as exc:
            await conn.close()
            if isinstance(exc, sqlite3.Error | StoreError):
                raise explain(path, exc) from exc
            raise
        return db

    async def _migrate(self) -> None:
        async with self._conn.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        current = int(row[0]) if row else 0
        available = migrations()
        latest = available[-1][0] if available else 0
        if current > latest:
            raise schema_too_new(self._path, current, latest)
        for version, name, sql in available:
            if version <= current:
                continue
            try:
                await self._conn.executescript(
                    f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version = {version};\nCOMMIT;"
                )
                if "writable_schema" in sql:
                    await self._reload_schema()
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    await self._conn.rollback()
                raise StoreError(f"apply migration {name}: {exc}") from exc

    async def claim_engine(self) -> None:
        """Nothing to do here: for a file, ``serve`` takes ``store.engine_lock`` before it
        opens anything (a lock file can be taken before the database is opened)."""

    async def _reload_schema(self) -> None:
        """A migration edited sqlite_master itself: a new schema cookie makes this
        connection parse the schema again (others parse it when they open)."""
        async with self._conn.execute("PRAGMA schema_version") as cursor:
            row = await cursor.fetchone()
        cookie = int(row[0]) if row else 0
        await self._conn.execute(f"PRAGMA schema_version = {cookie + 1}")

    async def close(self) -> None:
        await self._conn.close()

    @asynccontextmanager
    async def transaction(self, *, write: bool, what: str = "database") -> AsyncIterator[Conn]:
        """One transaction, alone on the connection. Writers take the write lock at BEGIN
        (IMMEDIATE), so a busy database is waited for there, not half-way through. SQLite
        errors come out as ``StoreError`` saying ``what`` was being done."""
        async with self._lock:
            try:
                await self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield SqliteConn(self._conn)
                    await self._conn.commit()
                except BaseException:
                    # A no-op when COMMIT already ran; undoes the work or a failed COMMIT.
                    await self._conn.rollback()
                    raise
            except sqlite3.Error as exc:
                raise StoreError(f"{what}: {exc}") from exc


def schema_too_new(path: Path | str, current: int, latest: int) -> DatabaseUnusable:
    return DatabaseUnusable(
        path,
        f"its schema version {current} is newer than this voipalert knows ({latest})",
        "run the voipalert version that last used it, or restore the backup taken before "
        "the upgrade",
    )


async def _join_worker(pending: aiosqlite.Connection) -> None:
    """Wait for the worker thread of a connection that failed to open.

    aiosqlite stops that thread by itself, but the thread then reports to the event loop;
    when ``asyncio.run`` has already closed the loop, it dies with "Event loop is closed"
    on stderr, after our one-line message."""
    thread = getattr(pending, "_thread", None)
    if thread is not None and thread.is_alive():
        await asyncio.to_thread(thread.join, 5.0)
