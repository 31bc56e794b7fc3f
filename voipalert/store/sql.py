"""The seam between the store's statements and a database backend (docs/database.md).

Every store module writes its SQL once, with ``?`` placeholders, against ``Conn``: the
subset of a connection it uses inside a transaction. SQLite (``SqliteConn`` over aiosqlite)
and PostgreSQL (``store.pg.PgConn`` over asyncpg) implement it. The statements are written
in the SQL both dialects agree on (``INSERT ... RETURNING``, ``ON CONFLICT``, ``UPDATE ...
RETURNING``, ``CAST``, ``COALESCE``, ``TRUE``); the few places where they differ take a
fragment from ``conn.dialect``, whose two versions sit side by side below.

Rows come back as ``Row``: read by column name (``row["id"]``) or position, which both
``sqlite3.Row`` and asyncpg's ``Record`` do.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol, cast

import aiosqlite


class Row(Protocol):
    def __getitem__(self, key: str | int, /) -> Any: ...


@dataclass(frozen=True, slots=True)
class Dialect:
    """SQL fragments that differ between the backends."""

    name: str
    # A subquery over the JSON array bound to one ``?``: its values as integers / text,
    # for ``x IN <fragment>`` (one parameter whatever the length of the list).
    json_ints: str
    json_texts: str


SQLITE = Dialect(
    name="sqlite",
    json_ints="(SELECT value FROM json_each(?))",
    json_texts="(SELECT value FROM json_each(?))",
)
POSTGRESQL = Dialect(
    name="postgresql",
    json_ints="(SELECT CAST(value AS BIGINT) FROM json_array_elements_text(CAST(? AS json)))",
    json_texts="(SELECT value FROM json_array_elements_text(CAST(? AS json)))",
)


class Conn(Protocol):
    """A connection inside one transaction (``Database.transaction``)."""

    @property
    def dialect(self) -> Dialect: ...

    async def execute(self, sql: str, parameters: Sequence[object] = ()) -> None: ...

    async def execute_fetchall(
        self, sql: str, parameters: Sequence[object] = ()
    ) -> Sequence[Row]: ...

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None: ...


class Database(Protocol):
    """One database, whichever backend: short transactions, the server secret, close."""

    @property
    def server_key(self) -> bytes: ...

    def transaction(
        self, *, write: bool, what: str = "database"
    ) -> AbstractAsyncContextManager[Conn]: ...

    async def claim_engine(self) -> None:
        """Make this process the database's one engine, or raise ``EngineLockHeld``."""

    async def close(self) -> None: ...


class SqliteConn:
    """``Conn`` over an aiosqlite connection (the transaction is the caller's)."""

    dialect = SQLITE

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, parameters: Sequence[object] = ()) -> None:
        await self._conn.execute(sql, parameters)

    async def execute_fetchall(self, sql: str, parameters: Sequence[object] = ()) -> list[Row]:
        return cast(list[Row], list(await self._conn.execute_fetchall(sql, parameters)))

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        await self._conn.executemany(sql, rows)
