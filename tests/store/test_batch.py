"""Group commit of the intake (store/batch.py, docs/database.md "Group commit"), on both
backends: alerts posted together share one transaction, each in its own savepoint; a
failing one fails alone; a caller learns its result only after the commit; a failed
transaction loses the whole batch and tells every caller; a caller cancelled while queued
writes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.store.conftest import PgServer, Raw, new_pg_database
from tests.stores import opened_store
from tests.test_engine import START
from voipalert.clock import FakeClock
from voipalert.domain.alert import NewAlert
from voipalert.domain.rota import TeamName
from voipalert.store import Store, StoreError
from voipalert.store.errors import UnknownReference
from voipalert.store.sql import Conn

ROTA = """
people:
  - {name: alice, contacts: [{extension: "201"}]}
teams:
  - {name: ops, members: [alice]}
policies:
  - name: default
    steps: [{targets: [{person: alice}], timeout: 300}]
routes:
  - {name: rest, default: true, policy: default, team: ops}
"""


@pytest.fixture
async def store(database: str, tmp_path: Path) -> AsyncIterator[Store]:
    async with opened_store(database, FakeClock(START), ROTA, tmp_path / "secret") as opened:
        yield opened


async def _count(raw: Raw, sql: str = "SELECT count(*) FROM alerts") -> int:
    return int((await raw.execute(sql))[0][0])


async def test_alerts_posted_together_share_transactions_and_dedup_still_joins(
    store: Store, raw: Raw
) -> None:
    """60 posts at once, 30 dedup keys each posted twice: 30 alerts, each created once and
    joined once (the second sees the first inside the same transaction), in fewer
    transactions than posts."""
    posts = [NewAlert(f"disk {n % 30}", dedup_key=f"k{n % 30}") for n in range(60)]
    results = await asyncio.gather(*(store.create_or_join_alert(p) for p in posts))
    created = [alert.id for alert, new in results if new]
    joined = [alert.id for alert, new in results if not new]
    assert len(created) == 30 and len(set(created)) == 30
    assert sorted(joined) == sorted(created)
    assert await _count(raw) == 30
    assert await _count(raw, "SELECT count(*) FROM audit_log WHERE action = 'alert.created'") == 30
    batches = store._alert_writes
    assert batches.largest > 1 and batches.batches < 60, (batches.batches, batches.largest)


async def test_one_failing_alert_in_a_batch_fails_alone(store: Store, raw: Raw) -> None:
    posts = [NewAlert(f"ok {n}") for n in range(10)]
    bad = NewAlert("routed nowhere", team=TeamName("no-such-team"))
    results = await asyncio.gather(
        *(store.create_or_join_alert(p) for p in posts[:5]),
        store.create_or_join_alert(bad),
        *(store.create_or_join_alert(p) for p in posts[5:]),
        return_exceptions=True,
    )
    assert isinstance(results[5], UnknownReference)
    assert all(isinstance(r, tuple) for i, r in enumerate(results) if i != 5)
    assert await _count(raw) == 10
    assert store._alert_writes.largest > 1, "the failing alert shared a batch"
    summaries = {row[0] for row in await raw.execute("SELECT summary FROM alerts")}
    assert summaries == {f"ok {n}" for n in range(10)}


async def test_a_caller_cancelled_while_queued_writes_nothing(store: Store, raw: Raw) -> None:
    """While one batch holds the transaction, three more posts queue; one of them is
    cancelled (its HTTP client went away) before its batch starts: the two others are
    stored, it is not."""
    gate = asyncio.Event()
    entered = asyncio.Event()

    async def held(conn: Conn) -> None:
        entered.set()
        await gate.wait()  # the transaction stays open: what comes now queues

    first = asyncio.create_task(store._alert_writes.run(held))
    await entered.wait()
    queued = [asyncio.create_task(store.create_or_join_alert(NewAlert(f"q{n}"))) for n in range(3)]
    await asyncio.sleep(0)  # each is in the queue
    queued[1].cancel()
    gate.set()
    await first
    done = await asyncio.gather(*queued, return_exceptions=True)
    assert isinstance(done[1], asyncio.CancelledError)
    assert {row[0] for row in await raw.execute("SELECT summary FROM alerts")} == {"q0", "q2"}


async def test_a_lost_connection_fails_the_whole_batch_and_stores_none(
    pg_server: PgServer, tmp_path: Path
) -> None:
    """PostgreSQL: the store's session is terminated while a batch of three is under way
    (a database restart, a network cut) after its first alert's statements ran. Every
    caller of that batch gets an error, none an alert, and none of the batch is on disk;
    the next post reconnects and is stored."""
    url = await new_pg_database(pg_server)
    raw = Raw(url)
    async with opened_store(url, FakeClock(START), ROTA, tmp_path / "secret") as store:
        writes = store._alert_writes
        blocker_in, blocker_go = asyncio.Event(), asyncio.Event()
        first_in, first_go = asyncio.Event(), asyncio.Event()

        async def blocker(conn: Conn) -> None:
            blocker_in.set()
            await blocker_go.wait()

        async def first(conn: Conn) -> None:
            await store._create_or_join(conn, NewAlert("first of the batch"), None, START)
            first_in.set()
            await first_go.wait()

        holding = asyncio.create_task(writes.run(blocker))
        await blocker_in.wait()
        batch = [
            asyncio.create_task(writes.run(first)),
            asyncio.create_task(store.create_or_join_alert(NewAlert("second"))),
            asyncio.create_task(store.create_or_join_alert(NewAlert("third"))),
        ]
        await asyncio.sleep(0)  # all three queued behind the blocker: the next batch
        blocker_go.set()
        await holding
        await first_in.wait()
        assert writes.largest == 3
        admin = await asyncpg.connect(url)
        try:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await admin.close()
        first_go.set()
        outcomes = await asyncio.gather(*batch, return_exceptions=True)
        assert all(isinstance(o, StoreError) for o in outcomes), outcomes
        assert await _count(raw) == 0
        _, created = await store.create_or_join_alert(NewAlert("after the cut"))
        assert created and await _count(raw) == 1
    await raw.close()
