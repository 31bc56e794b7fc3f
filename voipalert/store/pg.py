"""The PostgreSQL backend of ``store.sql.Database`` (asyncpg), chosen by
``[database] url = "postgresql://..."`` (docs/database.md).

It keeps the SQLite backend's rules so that the store's statements mean the same on both:

- one connection, one transaction at a time on it (an ``asyncio.Lock``), each short;
- writers are serialized across processes too: a write transaction first takes one
  transaction-scoped advisory lock, as SQLite's ``BEGIN IMMEDIATE`` takes its one write
  lock, so conditional updates (``WHERE state = 'pending'``) see the same order of events;
- read transactions are ``REPEATABLE READ``: the two reads of the engine's snapshot see one
  state of the database, as in a SQLite read transaction;
- times stay ISO-8601 text (``store.db.to_db``), so comparisons and ordering are the same.

A ``[database] url`` may name several hosts, as libpq's does
(``postgresql://h1:5432,h2:5432/db``): each connection tries them in order and keeps the
first that accepts writes, so a node follows a failed-over primary by itself; a read-only
standby is never written to (docs/database-failover.md).

Statements are written with ``?``; ``PgConn`` numbers them (``$1``, ``$2``...) outside
string literals. Migrations are ``schema_pg/NNNN_name.sql``, numbered like SQLite's, and the
version is the single row of ``schema_version``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import socket
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Final, cast

import asyncpg

from voipalert.store.engine_lock import EngineLockHeld
from voipalert.store.errors import DatabaseUnusable, StoreError
from voipalert.store.pg_url import (
    connect_timeout,
    host_urls,
    shown_url,
    target_session_attrs,
)
from voipalert.store.secret import load_server_key
from voipalert.store.sql import POSTGRESQL, Conn, Row

log = logging.getLogger("voipalert.store")

# Advisory lock keys: writers and migrations (transaction-scoped), the engine (held by the
# session of the one ``serve``). Any 64-bit numbers no other application on the same
# database uses; these spell "voipalrt", "voipamig" and "voipaeng".
WRITE_LOCK: Final = 0x766F6970616C7274
MIGRATION_LOCK: Final = 0x766F6970616D6967
ENGINE_LOCK: Final = 0x766F697061656E67
# A host that has neither answered nor failed within this long no longer holds back the
# next one: both attempts go on, the first writable answer wins (RFC 8305's "connection
# attempt delay", for database hosts). A primary that is down but not refusing (a dead
# machine, a dropped route) costs this, not the whole connect_timeout, at each reconnect.
HOST_STAGGER_SECONDS: Final = 0.5
# After a failed reconnection the store's transactions fail at once for this long (the
# intake answers 503 without waiting) instead of each trying every host again.
RECONNECT_RETRY_SECONDS: Final = 0.5
OUTAGE_LOG_SECONDS: Final = 30.0  # while no primary answers, say so again this often
_MIGRATION_NAME: Final = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_PLACEHOLDER_OR_LITERAL: Final = re.compile(r"'(?:[^']|'')*'|\?")


READ_ONLY_SQLSTATE: Final = "25006"  # read_only_sql_transaction
NAMEDATALEN: Final = 63  # PostgreSQL keeps this many bytes of application_name


def _who() -> str:
    return f"voipalert pid {os.getpid()} on {socket.gethostname()}"


def is_postgresql_url(location: object) -> bool:
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


@functools.lru_cache(maxsize=1024)  # the store's statements are a fixed, small set
def numbered(sql: str) -> str:
    """``?`` → ``$1``, ``$2``... (string literals left alone)."""
    count = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal count
        if match.group(0) != "?":
            return match.group(0)
        count += 1
        return f"${count}"

    return _PLACEHOLDER_OR_LITERAL.sub(replace, sql)


def pg_migrations() -> list[tuple[int, str, str]]:
    found = []
    for entry in resources.files("voipalert.store").joinpath("schema_pg").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


class PgConn:
    """``Conn`` over an asyncpg connection (the transaction is the caller's)."""

    dialect = POSTGRESQL

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, parameters: Sequence[object] = ()) -> None:
        await self._conn.execute(numbered(sql), *parameters)

    async def execute_fetchall(self, sql: str, parameters: Sequence[object] = ()) -> list[Row]:
        return cast(list[Row], await self._conn.fetch(numbered(sql), *parameters))

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        batch = [tuple(row) for row in rows]
        if batch:
            await self._conn.executemany(numbered(sql), batch)


class PgDatabase:
    def __init__(
        self, conn: asyncpg.Connection, url: str, secret_file: Path | None, lock_timeout_ms: int
    ) -> None:
        self._conn = conn
        self._url = url
        self._lock = asyncio.Lock()
        self._secret_file = secret_file
        self._server_key: bytes | None = None
        self._lock_timeout_ms = lock_timeout_ms
        self._engine = False  # this process claimed the engine lock
        self._lost: EngineLockHeld | None = None  # ... and another serve took it since
        self._closed = False
        self._retry_at = 0.0  # loop time before which no reconnection is tried
        self._down_since: float | None = None  # loop time the connection was found lost
        self._told_at: float | None = None  # loop time the outage was last logged
        self._last_try = ""  # what the hosts answered at the last reconnection

    @property
    def server_key(self) -> bytes:
        """As with SQLite (``store.db``), read or created at first use; but there is no
        database file for it to sit beside, so the file must be configured: a key made up
        per process would change every webhook signing secret at each start."""
        if self._secret_file is None:
            raise DatabaseUnusable(
                shown_url(self._url),
                "a PostgreSQL database has no file next to which the server secret could live",
                "set [http] secret_file (VOIPALERT_HTTP__SECRET_FILE) to a 0600 file path",
                configuration=True,
            )
        if self._server_key is None:
            self._server_key = load_server_key(self._secret_file)
        return self._server_key

    @classmethod
    async def open(
        cls, url: str, secret_file: Path | None, lock_timeout_ms: int = 5000
    ) -> PgDatabase:
        conn = await _connect(url, lock_timeout_ms)
        db = cls(conn, url, secret_file, lock_timeout_ms)
        try:
            await db._migrate()
        except BaseException:
            conn.terminate()  # synchronous: a cancelled open cannot leave it half-closed
            raise
        return db

    async def _usable(self) -> asyncpg.Connection:
        """The connection, connected again when it was lost (a restarted or failed-over
        server, a network cut): the failed transaction gave its caller a ``StoreError``
        and the next one starts afresh, as the engine's next tick re-plans. An engine whose
        connection was lost also lost its session lock: it takes it again, or stops
        (``EngineLockHeld``) when another serve took over meanwhile."""
        if self._closed:
            raise StoreError(f"database {shown_url(self._url)} is closed")
        if self._lost is not None:
            raise self._lost
        if not self._conn.is_closed():
            return self._conn
        self._conn = await self._reconnect()
        if self._engine:
            self._engine = False
            try:
                await self._claim()
            except EngineLockHeld as exc:
                # Never two engines: this one does nothing more on this database.
                self._lost = exc
                raise
        return self._conn

    async def _reconnect(self) -> asyncpg.Connection:
        """A new connection to a host that accepts writes, or ``StoreError`` at once while
        none does (a failover in progress: the primary gone, the standby not yet promoted).
        The outage is logged when it starts, every ``OUTAGE_LOG_SECONDS`` while it lasts,
        and when it ends, with which host took over and after how long."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._down_since is None:
            self._down_since = now
            self._told_at = None
            log.warning("the connection to %s was lost; reconnecting", shown_url(self._url))
        if now < self._retry_at:
            raise DatabaseUnusable(
                shown_url(self._url),
                f"{self._last_try} (lost {now - self._down_since:.1f} s ago; trying again "
                f"in {self._retry_at - now:.1f} s)",
                _FIX,
            )
        try:
            conn, host = await _connect_first(self._url, self._lock_timeout_ms)
        except DatabaseUnusable as exc:
            now = loop.time()
            self._retry_at = now + RECONNECT_RETRY_SECONDS
            self._last_try = exc.problem
            if self._told_at is None or now - self._told_at >= OUTAGE_LOG_SECONDS:
                self._told_at = now
                log.warning(
                    "%s; no write is possible (the intake answers 503) until a host accepts "
                    "writes (down %.1f s)",
                    exc,
                    now - self._down_since,
                )
            raise
        log.warning(
            "reconnected to %s (%s), %.1f s after the connection was lost",
            shown_url(self._url),
            host,
            loop.time() - self._down_since,
        )
        self._down_since = None
        self._retry_at = 0.0
        return conn

    async def _migrate(self) -> None:
        available = pg_migrations()
        latest = available[-1][0] if available else 0
        try:
            async with self._conn.transaction():
                # Several processes may start at once: one migrates, the others wait here.
                await self._conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
                await self._conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, "
                    "one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one))"
                )
                current = await self._conn.fetchval("SELECT version FROM schema_version")
                if current is None:
                    current = 0
                    await self._conn.execute("INSERT INTO schema_version (version) VALUES (0)")
                if current > latest:
                    raise DatabaseUnusable(
                        shown_url(self._url),
                        f"its schema version {current} is newer than this voipalert knows "
                        f"({latest})",
                        "run the voipalert version that last used it, or restore the backup "
                        "taken before the upgrade",
                    )
                for version, name, sql in available:
                    if version <= current:
                        continue
                    try:
                        async with self._conn.transaction():
                            await self._conn.execute(sql)
                            await self._conn.execute(
                                "UPDATE schema_version SET version = $1", version
                            )
                    except asyncpg.PostgresError as exc:
                        raise StoreError(f"apply migration {name}: {exc}") from exc
        except asyncpg.PostgresError as exc:
            raise StoreError(f"migrate {shown_url(self._url)}: {exc}") from exc

    async def claim_engine(self) -> None:
        """One engine per database, as with SQLite's lock file (``store.engine_lock``): a
        session advisory lock, which PostgreSQL drops when this connection ends, however
        the process ends. Raises ``EngineLockHeld`` naming the holder."""
        async with self._lock:
            try:
                await self._usable()
                await self._claim()
            except _ERRORS as exc:
                self._drop_if_broken(exc)
                raise StoreError(f"claim the engine lock: {exc}") from exc

    async def _claim(self) -> None:
        got = await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", ENGINE_LOCK)
        if not got:
            holder = await self._conn.fetchval(
                "SELECT a.application_name || COALESCE(' from ' || host(a.client_addr), '') "
                "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted "
                "AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 1",
                ENGINE_LOCK >> 32,
                ENGINE_LOCK & 0xFFFFFFFF,
            )
            raise EngineLockHeld(shown_url(self._url), "an advisory lock", holder or "pid unknown")
        self._engine = True

    async def listen(self, channel: str, on_payload: Callable[[str], None]) -> PgListener:
        """A connection of its own that LISTENs on ``channel``: the store's connection runs
        one transaction at a time under its lock, and a notification is only delivered
        between them, so it could wait behind a long one (docs/multi-node.md)."""
        conn = await _connect(self._url, self._lock_timeout_ms)
        try:
            await conn.add_listener(
                channel, lambda _conn, _pid, _channel, payload: on_payload(str(payload))
            )
        except _ERRORS as exc:
            conn.terminate()
            raise StoreError(f"LISTEN {channel}: {exc}") from exc
        except BaseException:  # cancelled: see try_job_lock
            conn.terminate()
            raise
        return PgListener(conn)

    async def session(self, what: str) -> PgListener:
        """A connection of its own for short statements that must not wait for the store's
        connection (``PgListener.fetch``): the cluster's heartbeat and lease renewal."""
        conn = await _connect(self._url, self._lock_timeout_ms)
        session = PgListener(conn)
        session.what = what
        return session

    async def try_job_lock(self, key: int, idle_seconds: float) -> PgJobLock | None:
        """A connection of its own holding the session advisory lock ``key``, or None
        when another session holds it. The holder must make a round trip (``probe``) more
        often than every ``idle_seconds``. Session-level, not transaction-level: the lock
        lasts as long as the connection, and PostgreSQL drops it when the connection ends,
        however its process ends (docs/multi-node.md, "Single-writer jobs")."""
        # The server ends the session (and so the lock) once it has been quiet this long:
        # a holder cut off by the network can send no probe, and its lock must not
        # outlive it until TCP keepalives notice (hours by default).
        idle = {"idle_session_timeout": str(max(1, int(idle_seconds * 1000)))}
        conn = await _connect(self._url, self._lock_timeout_ms, idle)
        try:
            got = await conn.fetchval("SELECT pg_try_advisory_lock($1)", key)
        except _ERRORS as exc:
            conn.terminate()
            raise StoreError(f"take the job lock {key:#x}: {exc}") from exc
        except BaseException:
            # Cancelled (the node stops while its writer tries the lock every few tenths
            # of a second): the connection is ours alone, and nobody else will close it.
            conn.terminate()
            raise
        if not got:
            conn.terminate()  # nothing to say to the server, and no await to be cut short
            return None
        return PgJobLock(conn)

    async def schema_version(self) -> int:
        return int(await self._conn.fetchval("SELECT version FROM schema_version"))

    async def close(self) -> None:
        self._closed = True
        await self._conn.close()

    @asynccontextmanager
    async def transaction(self, *, write: bool, what: str = "database") -> AsyncIterator[Conn]:
        async with self._lock:
            try:
                conn = await self._usable()
                isolation = "read_committed" if write else "repeatable_read"
                async with conn.transaction(isolation=isolation):
                    if write:
                        # Waits at most lock_timeout ([database] busy_timeout_ms), like
                        # SQLite's busy_timeout.
                        await conn.execute("SELECT pg_advisory_xact_lock($1)", WRITE_LOCK)
                    yield PgConn(conn)
            except _ERRORS as exc:
                self._drop_if_broken(exc)
                raise StoreError(f"{what}: {exc}") from exc

    def _drop_if_broken(self, exc: BaseException) -> None:
        """After an error of the connection itself (not of a statement), drop it so that
        the next transaction connects again instead of reusing a half-dead session."""
        sqlstate = getattr(exc, "sqlstate", None) or ""
        statement_error = isinstance(exc, asyncpg.PostgresError) and not (
            # 08: connection exception; 57: operator intervention (shutdown, terminated);
            # 25006: read-only transaction, the server no longer takes writes (demoted, or
            # made read-only by an operator): connect again and look for the primary.
            isinstance(exc, asyncpg.PostgresConnectionError)
            or sqlstate[:2] in ("08", "57")
            or sqlstate == READ_ONLY_SQLSTATE
        )
        if sqlstate == READ_ONLY_SQLSTATE:
            log.warning(
                "%s refused a write: it is read-only now; looking for the primary",
                shown_url(self._url),
            )
        if not statement_error and not self._conn.is_closed():
            self._conn.terminate()


class PgListener:
    """The LISTEN connection of ``PgDatabase.listen``."""

    what: str = "the LISTEN connection"

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def probe(self, within: float) -> None:
        """A round trip, or ``StoreError``: a half-open connection delivers nothing and
        would otherwise never say so."""
        try:
            async with asyncio.timeout(within):
                await self._conn.execute("SELECT 1")
        except _ERRORS as exc:
            raise StoreError(f"{self.what} is lost ({exc!r})") from exc

    async def fetch(self, sql: str, parameters: Sequence[object], within: float) -> list[Row]:
        """One statement on this connection, in a transaction of its own (autocommit), given
        ``within`` seconds; ``StoreError`` otherwise. Outside the store's connection and its
        write lock: for the cluster's heartbeat, which must not queue behind the node's
        writes (docs/multi-node.md, "Leases renewed on their own rhythm")."""
        try:
            async with asyncio.timeout(within):
                return cast(list[Row], await self._conn.fetch(numbered(sql), *parameters))
        except _ERRORS as exc:
            raise StoreError(f"{self.what}: {exc!r}") from exc

    def close(self) -> None:
        self._conn.terminate()


class PgJobLock(PgListener):
    """The connection of ``PgDatabase.try_job_lock``: the lock is held while it lives.
    ``probe`` is a round trip on it; ``close`` ends the session, which releases the lock."""

    what = "the job lock's connection"

    def __init__(self, conn: asyncpg.Connection) -> None:
        super().__init__(conn)
        # Set when the server ends the session (an administrator, a shutdown): the lock
        # is gone at once, and the holder must not wait for its next probe to know it.
        self.lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: self.lost.set())


# What a connection can raise: statement errors (PostgresError), a broken or busy client
# state (InterfaceError, InternalClientError), the network (OSError, TimeoutError).
_ERRORS: Final = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)


async def _connect(
    url: str, lock_timeout_ms: int, settings: dict[str, str] | None = None
) -> asyncpg.Connection:
    return (await _connect_first(url, lock_timeout_ms, settings))[0]


async def _connect_first(
    url: str, lock_timeout_ms: int, settings: dict[str, str] | None = None
) -> tuple[asyncpg.Connection, str]:
    """A connection to a host of the URL that accepts writes, and that host; else
    ``DatabaseUnusable`` saying what each host answered.

    Hosts are tried in the URL's order, as libpq does with several hosts, but staggered
    rather than one after the other: the next host is tried as soon as the one before it
    failed, or after ``HOST_STAGGER_SECONDS`` without an answer, and the earlier attempts go
    on meanwhile. So a host that answers nothing at all (a dead machine does not refuse)
    delays a reconnection by half a second, not by its ``connect_timeout``. The first
    writable answer wins; a writable server found later is closed at once (with a
    synchronous standby there is one primary: the order matters only for who is asked
    first)."""
    attrs = target_session_attrs(url)
    seconds = connect_timeout(url)
    hosts = host_urls(url)
    answers: dict[int, str] = {}
    trying: dict[asyncio.Task[asyncpg.Connection], int] = {}
    found: tuple[asyncpg.Connection, str] | None = None

    def ask_next() -> None:
        index = len(answers) + len(trying)
        connecting = _connect_one(hosts[index][1], attrs, seconds, lock_timeout_ms, settings)
        trying[asyncio.create_task(connecting)] = index

    ask_next()
    try:
        while found is None and trying:
            more = len(answers) + len(trying) < len(hosts)
            done, _ = await asyncio.wait(
                trying, timeout=HOST_STAGGER_SECONDS if more else None,
                return_when=asyncio.FIRST_COMPLETED,
            )  # fmt: skip
            failed = False
            for task in done:
                index = trying.pop(task)
                error = task.exception()
                if error is not None:
                    answers[index] = _answer(hosts[index][0], attrs, error)
                    failed = True
                elif found is None:
                    found = (task.result(), hosts[index][0])
                else:
                    task.result().terminate()
            # The next host, when one before it failed or none has answered in time.
            if found is None and more and (failed or not done):
                ask_next()
    finally:
        await _abandon(trying, found[0] if found is not None else None)
    if found is not None:
        return found
    said = [answers[i] for i in sorted(answers)]
    if len(said) == 1:
        problem = f"cannot connect ({said[0]})"
    else:
        problem = "cannot connect to a host that accepts writes (" + "; ".join(said) + ")"
    raise DatabaseUnusable(shown_url(url), problem, _FIX)


async def _connect_one(
    url: str, attrs: str, seconds: float, lock_timeout_ms: int, settings: dict[str, str] | None
) -> asyncpg.Connection:
    return await asyncpg.connect(
        url,
        timeout=seconds,
        target_session_attrs=attrs,
        server_settings={
            # Shown to a second serve refused by the engine lock (claim_engine).
            "application_name": _who()[:NAMEDATALEN],
            "lock_timeout": str(int(lock_timeout_ms)),
            **(settings or {}),
        },
    )


def _answer(host: str, attrs: str, error: BaseException) -> str:
    if isinstance(error, asyncpg.TargetServerAttributeNotMatched):
        # asyncpg read the server's in_hot_standby / default_transaction_read_only,
        # reported at startup (PostgreSQL 14+): a standby, or read-only by setting.
        return f"{host} is read-only (a standby, or not {attrs})"
    if isinstance(error, (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)):
        return f"{host}: {type(error).__name__}: {error}"
    raise error  # a bug of ours, not an answer of the host's


async def _abandon(
    trying: dict[asyncio.Task[asyncpg.Connection], int], found: asyncpg.Connection | None
) -> None:
    """Stop the attempts still under way; close what any of them connected meanwhile.
    The closing is a done callback, not code after the wait: when the caller itself is
    cancelled during the wait, an attempt that connected just before its cancel arrived
    is still closed when it ends; and the connection ``found`` is then nobody's, so it
    is closed too."""
    for task in trying:
        task.add_done_callback(_terminate_if_connected)
        task.cancel()
    try:
        if trying:
            await asyncio.wait(trying)
    except BaseException:
        if found is not None:
            found.terminate()
        raise


def _terminate_if_connected(task: asyncio.Task[asyncpg.Connection]) -> None:
    if not task.cancelled() and task.exception() is None:
        task.result().terminate()


_FIX: Final = (
    "check [database] url, that PostgreSQL runs, accepts this user, and that one host is the "
    "primary"
)
