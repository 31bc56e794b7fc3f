"""Group commit: writes that arrive together share one transaction (docs/database.md,
"Group commit").

Every write transaction takes the database's one write lock and ends with a commit that
waits for the disk (SQLite ``synchronous = FULL``) or for PostgreSQL's WAL flush, and on
PostgreSQL with several nodes, for the lock to be handed from one node's session to
another's: about 2.8 ms an alert measured with three nodes on two cores
(benchmarks/README.md). A burst of alerts paid that once per alert, one after the other.

``WriteBatcher.run(work)`` queues ``work`` (a coroutine function of the connection). When
no batch is under way it starts one at once, so a lone write waits for nothing; while one
is under way, what arrives meanwhile waits and goes together into the next: one
transaction, one lock, one commit for all of it. Each piece of work runs in a savepoint of
its own, so one that fails (an unknown team, a constraint) is rolled back alone and its
caller gets its exception; the others commit. Every caller learns its result only after
the commit, so what the intake answers 202 is on disk, as before. When the transaction
itself fails (the database is gone, the commit failed), every caller of the batch gets
that error and nothing of the batch is stored.

A caller cancelled while its work waits in the queue is taken out; once its batch runs,
the work commits with the others (its caller had no answer yet, as with a client that
disconnects just after a commit).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

import asyncpg

from voipalert.store.errors import StoreError
from voipalert.store.sql import Conn, Database

T = TypeVar("T")

MAX_BATCH: Final = 64  # a commit covers at most this many pieces of work


@dataclass(slots=True)
class _Work(Generic[T]):
    work: Callable[[Conn], Awaitable[T]]
    future: asyncio.Future[T]


class WriteBatcher:
    """Runs queued write work in shared transactions; one per ``Database``."""

    def __init__(self, db: Database, what: str, max_batch: int = MAX_BATCH) -> None:
        self._db = db
        self._what = what
        self._max = max_batch
        self._queue: list[_Work[Any]] = []
        self._runner: asyncio.Task[None] | None = None
        self.batches = 0  # transactions committed or failed, for tests and benchmarks
        self.largest = 0  # the most pieces of work one transaction carried

    async def run(self, work: Callable[[Conn], Awaitable[T]]) -> T:
        """``work(conn)``'s result once its transaction committed, or its exception."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        item = _Work(work, future)
        self._queue.append(item)
        if self._runner is None:
            self._runner = asyncio.create_task(self._drain(), name=f"batch: {self._what}")
        try:
            return await future
        except asyncio.CancelledError:
            if item in self._queue:
                self._queue.remove(item)  # not started: nothing of it is written
            raise

    async def close(self) -> None:
        """Let the batch under way and what waits for it commit (the store closes next)."""
        runner = self._runner
        if runner is not None:
            await asyncio.wait([runner])

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[: self._max], self._queue[self._max :]
                await self._commit([item for item in batch if not item.future.done()])
        finally:
            self._runner = None
            if self._queue:  # the drain was cancelled (closing): say so to those waiting
                for item in self._queue:
                    _fail(item, StoreError(f"{self._what}: the store is closing"))
                self._queue.clear()

    async def _commit(self, batch: list[_Work[Any]]) -> None:
        if not batch:
            return
        self.batches += 1
        self.largest = max(self.largest, len(batch))
        outcomes: list[tuple[bool, Any]] = []
        try:
            async with self._db.transaction(write=True, what=self._what) as conn:
                if len(batch) == 1:
                    # Alone: the transaction is the work's, and its error rolls it back.
                    outcomes.append((True, await batch[0].work(conn)))
                else:
                    for n, item in enumerate(batch):
                        outcomes.append(await _in_savepoint(conn, n, item))
        except asyncio.CancelledError:
            for item in batch:
                _fail(item, StoreError(f"{self._what}: the store is closing"))
            raise
        except Exception as exc:  # the transaction failed: nothing of the batch is stored
            for item in batch:
                _fail(item, exc)
            return
        for item, outcome in zip(batch, outcomes, strict=True):
            _settle(item, outcome)


async def _in_savepoint(conn: Conn, n: int, item: _Work[Any]) -> tuple[bool, Any]:
    """Run one piece of work so that its failure undoes only its own statements."""
    name = f"voipalert_work_{n}"
    await conn.execute(f"SAVEPOINT {name}")
    try:
        value = await item.work(conn)
    except Exception as exc:
        # If the rollback itself fails, the connection is unusable: that error ends the
        # whole transaction (every caller of the batch gets it).
        await conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
        await conn.execute(f"RELEASE SAVEPOINT {name}")
        return False, _as_store_error(exc)
    await conn.execute(f"RELEASE SAVEPOINT {name}")
    return True, value


def _as_store_error(exc: Exception) -> Exception:
    # Alone, a statement's error leaves the transaction and becomes a StoreError there;
    # inside a batch the transaction goes on, so the same conversion is made here.
    if isinstance(exc, (sqlite3.Error, asyncpg.PostgresError)):
        return StoreError(str(exc))
    return exc


def _settle(item: _Work[Any], outcome: tuple[bool, Any]) -> None:
    if item.future.done():
        return  # its caller was cancelled meanwhile
    ok, value = outcome
    if ok:
        item.future.set_result(value)
    else:
        item.future.set_exception(value)


def _fail(item: _Work[Any], exc: BaseException) -> None:
    if not item.future.done():
        item.future.set_exception(exc)
