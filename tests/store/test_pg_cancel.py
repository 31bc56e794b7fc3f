"""Cancelled at any moment, the PostgreSQL store leaves no connection behind.

A node stops (SIGTERM, a test's teardown) while its tasks are inside the store's own
connections: the single-writer job trying its lock every few tenths of a second, the
listener connecting again, a reconnection asking several hosts. Each of those opens a
connection of its own that nobody else holds; a cancel that arrives between the connect
and the first statement used to drop it unclosed (asyncpg warns "unclosed connection"
when it is collected, and until then the server keeps the session, and with it any
advisory lock it took). Each operation here is cancelled at offsets from 0 to 20 ms,
which span its connect and its first round trip on loopback; after each sweep nothing
is left unclosed on our side (no ResourceWarning at a full collection) or on the
server's (pg_stat_activity is back to what it was).
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Awaitable, Callable
from contextlib import suppress

import asyncpg
import pytest

from tests.store.conftest import PgServer, new_pg_database
from voipalert.store.cluster import job_key
from voipalert.store.pg import PgDatabase, PgJobLock, PgListener, _connect_first

OFFSETS_MS = [i / 2 for i in range(41)]  # 0, 0.5, ... 20 ms


async def _backends(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        return int(count)
    finally:
        await conn.close()


async def _closed(result: object) -> None:
    """Whatever the operation returned when the cancel came too late."""
    if isinstance(result, (PgJobLock, PgListener)):
        result.close()
    elif isinstance(result, PgDatabase):
        await result.close()
    elif isinstance(result, tuple):
        result[0].terminate()


async def _sweep(url: str, operation: Callable[[], Awaitable[object]]) -> int:
    """Cancel ``operation`` at each offset; how many times the cancel reached it."""
    cut = 0
    for offset in OFFSETS_MS:
        task = asyncio.ensure_future(operation())
        await asyncio.sleep(offset / 1000)
        task.cancel()
        try:
            await _closed(await task)
        except asyncio.CancelledError:
            cut += 1
    return cut


@pytest.mark.parametrize("what", ["job lock", "listen", "session", "open", "reconnect"])
async def test_cancelled_at_any_moment_nothing_is_left_open(pg_server: PgServer, what: str) -> None:
    url = await new_pg_database(pg_server)
    db = await PgDatabase.open(url, None)
    try:
        before = await _backends(url)
        operations: dict[str, Callable[[], Awaitable[object]]] = {
            "job lock": lambda: db.try_job_lock(job_key("cancelled"), idle_seconds=5),
            "listen": lambda: db.listen("cancelled", lambda _payload: None),
            "session": lambda: db.session("cancelled"),
            "open": lambda: PgDatabase.open(url, None),
            "reconnect": lambda: _connect_first(url, 5000),
        }
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            cut = await _sweep(url, operations[what])
            gc.collect()
        unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
        assert unclosed == []
        # The sweep did cancel the operation mid-way, and some offsets were past its end:
        # otherwise it tested only one side.
        assert 0 < cut < len(OFFSETS_MS), cut
        async with asyncio.timeout(5):
            # The server sees each end a moment after the client's.
            while (now := await _backends(url)) != before:  # noqa: ASYNC110 - polls the server
                await asyncio.sleep(0.02)
        assert now == before
    finally:
        with suppress(Exception):
            await db.close()
