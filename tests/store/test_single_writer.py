"""Single-writer jobs across nodes on a real PostgreSQL (docs/multi-node.md, "Single-writer
jobs"): two nodes' status webhook senders over one outbox send each delivery exactly once
(a real aiohttp receiver on loopback counts them); the holder of the job's lock killed
(its tasks cancelled) or cut off (its lock connection terminated by the server), the
other node takes the job over within the bound; a stale sender's late result is not
recorded over the new holder's."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass, field

import asyncpg
import pytest

from tests.ingest.conftest import sample_rota
from tests.ingest.status_receiver import Receiver, receiving
from tests.store.conftest import PgServer, new_pg_database
from voipalert.clock import SystemClock
from voipalert.domain.alert import NewAlert
from voipalert.ingest.config import OutboundConfig, RetryPolicy, StatusTarget
from voipalert.ingest.status_format import EVENT_ID_HEADER
from voipalert.ingest.status_hooks import StatusSender
from voipalert.store import Store
from voipalert.store.cluster import ClusterNode, Lease, SingleWriter, job_key
from voipalert.store.db import StoreConfig
from voipalert.store.errors import StoreError
from voipalert.store.pg import WRITE_LOCK, PgDatabase

# The hand-over bound that a concurrent test's load would stretch.
pytestmark = pytest.mark.alone

LEASE = 0.6  # heartbeat, lock retry and probe every 0.2 s
BOUND = 4 / 3 * LEASE + 2.0  # the documented bound, plus room for a busy machine
FAST = RetryPolicy(max_tries=4, first_seconds=0.05, max_seconds=0.2, jitter=0.5)


@dataclass
class Node:
    store: Store
    cluster: ClusterNode
    sender: StatusSender
    writer: SingleWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def kill(self) -> None:
        """As SIGKILL would, seen from the database: the tasks end, and with them the
        lock's connection (closed by the writer, as the kernel would close it)."""
        for task in self.tasks:
            task.cancel()

    async def wait_killed(self) -> None:
        for task in self.tasks:
            with suppress(asyncio.CancelledError):
                await task


@pytest.fixture
async def url(pg_server: PgServer) -> str:
    return await new_pg_database(pg_server)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving(Receiver()) as got:
        yield got


@pytest.fixture
async def nodes(url: str, receiver: Receiver) -> AsyncIterator[Callable[[], Awaitable[Node]]]:
    clock = SystemClock()
    target = StatusTarget("siem", receiver.url, "json")
    config = OutboundConfig(targets=(target,), retry=FAST, poll_seconds=0.05)
    async with AsyncExitStack() as stack:
        first = await Store.open(url, clock)
        stack.push_async_callback(first.close)
        await first.replace_rota(sample_rota())
        started: list[Node] = []

        async def start() -> Node:
            store = await Store.open(url, clock)
            stack.push_async_callback(store.close)
            cluster = await store.join_cluster(LEASE, lambda: None)
            assert cluster is not None
            sender = StatusSender(store, clock, config)
            await sender.start()
            writer = cluster.single_writer("status-webhooks", sender.run)
            node = Node(store, cluster, sender, writer)
            node.tasks.append(asyncio.create_task(writer.run()))
            started.append(node)
            return node

        try:
            yield start
        finally:
            for node in started:
                node.kill()
                await node.wait_killed()


async def _alerts(store: Store, n: int, prefix: str) -> None:
    for i in range(n):
        await store.create_or_join_alert(
            NewAlert(f"disk full {prefix}{i}", dedup_key=f"{prefix}{i}")
        )


async def _pending(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(
            await conn.fetchval("SELECT COUNT(*) FROM status_deliveries WHERE state <> 'done'")
        )
    finally:
        await conn.close()


async def _all_sent(url: str, receiver: Receiver, seconds: float) -> None:
    async with asyncio.timeout(seconds):
        while await _pending(url):  # noqa: ASYNC110 - polls the database
            await asyncio.sleep(0.02)


def _sent_twice(receiver: Receiver) -> list[int]:
    counts = Counter(int(r.headers[EVENT_ID_HEADER]) for r in receiver.got)
    return [event for event, n in counts.items() if n > 1]


async def _holder(*nodes: Node) -> Node:
    async with asyncio.timeout(BOUND):
        while True:
            holding = [node for node in nodes if node.writer.held.is_set()]
            if holding:
                assert len(holding) == 1, "two nodes run the same single-writer job"
                return holding[0]
            await asyncio.sleep(0.01)


async def test_two_senders_send_each_delivery_once(
    nodes: Callable[[], Awaitable[Node]], url: str, receiver: Receiver
) -> None:
    a, b = await nodes(), await nodes()
    holder = await _holder(a, b)
    other = b if holder is a else a
    # Both nodes queue and both wake their sender, as the API of each would.
    await asyncio.gather(_alerts(a.store, 20, "a"), _alerts(b.store, 20, "b"))
    a.sender.wake()
    b.sender.wake()
    await _all_sent(url, receiver, 20)
    assert len(receiver.got) == 40  # one "created" per alert
    assert _sent_twice(receiver) == []
    assert not other.writer.held.is_set()
    assert other.writer.takes == 0


async def test_the_holders_death_hands_the_job_over(
    nodes: Callable[[], Awaitable[Node]], url: str, receiver: Receiver
) -> None:
    a, b = await nodes(), await nodes()
    holder = await _holder(a, b)
    other = b if holder is a else a
    await _alerts(holder.store, 10, "x")
    await _all_sent(url, receiver, 20)
    holder.kill()
    await holder.wait_killed()
    loop = asyncio.get_running_loop()
    killed_at = loop.time()
    await _alerts(other.store, 10, "y")
    assert await _holder(other) is other
    took = loop.time() - killed_at
    await _all_sent(url, receiver, 20)
    assert len(receiver.got) == 20
    assert _sent_twice(receiver) == []
    assert took < BOUND, took


async def test_a_holder_cut_off_stops_and_the_other_takes_over(
    nodes: Callable[[], Awaitable[Node]], url: str, receiver: Receiver
) -> None:
    a, b = await nodes(), await nodes()
    holder = await _holder(a, b)
    key = holder.writer.key
    conn = await asyncpg.connect(url)
    try:
        # The server ends the holder's lock session, as a failover or a network cut
        # followed by idle_session_timeout would.
        ended = await conn.fetchval(
            "SELECT bool_or(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = "
            "'advisory' AND granted AND classid = $1 AND objid = $2 AND objsubid = 1",
            (key >> 32) & 0xFFFFFFFF,
            key & 0xFFFFFFFF,
        )
        assert ended
    finally:
        await conn.close()
    # The holder hears of it at once (the server's termination message) and stops its
    # job; one node (either) takes the lock again, and only one.
    async with asyncio.timeout(BOUND):
        while not _settled(a, b, holder):  # noqa: ASYNC110 - polls two nodes' state
            await asyncio.sleep(0.01)
    again = await _holder(a, b)
    await _alerts(again.store, 5, "z")
    await _all_sent(url, receiver, 20)
    assert len(receiver.got) == 5
    assert _sent_twice(receiver) == []


def _settled(a: Node, b: Node, old: Node) -> bool:
    """The lock was taken again, and the old holder no longer runs its first turn."""
    retaken = a.writer.takes + b.writer.takes >= 2
    return retaken and not (old.writer.held.is_set() and old.writer.takes < 2)


async def test_a_stale_result_is_not_recorded(
    nodes: Callable[[], Awaitable[Node]], url: str, receiver: Receiver
) -> None:
    """A sender that lost the job while its request was out: the row it read has been
    recorded since by the new holder; its late "done" or "failed" changes nothing."""
    a = await nodes()
    a.kill()
    await a.wait_killed()
    await _alerts(a.store, 1, "s")
    delivery = await a.store.next_delivery("siem")
    assert delivery is not None
    assert await a.store.delivery_failed(delivery, "HTTP 503", None) is True  # the new holder
    assert await a.store.delivery_done(delivery) is False  # the stale one, too late
    assert await a.store.delivery_failed(delivery, "late", None) is False
    rows = await a.store.deliveries_of(delivery.alert_id)
    assert [(r.state, r.tries, r.last_error) for r in rows] == [("dead", 1, "HTTP 503")]


def test_job_keys_differ_per_job() -> None:
    keys = {job_key(name) for name in ("silencer", "status-webhooks", "imap")}
    assert len(keys) == 3
    assert all(-(2**63) <= key < 2**63 for key in keys)


async def test_a_node_waits_to_register_while_the_write_lock_is_busy(url: str) -> None:
    """A node restarted under load (the chaos test: a burst of 300 alerts) may wait for
    the write lock longer than the lock timeout: it tries again instead of exiting."""
    store = await Store.open(url, SystemClock(), StoreConfig(busy_timeout_ms=100))
    holder = await asyncpg.connect(url)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", WRITE_LOCK)  # as a long writer
        joining = asyncio.create_task(store.join_cluster(LEASE, lambda: None))
        await asyncio.sleep(0.5)  # several lock timeouts
        assert not joining.done()
        await holder.execute("SELECT pg_advisory_unlock($1)", WRITE_LOCK)
        async with asyncio.timeout(10):
            assert await joining is not None
        await holder.execute("SELECT pg_advisory_lock($1)", WRITE_LOCK)
        db = await PgDatabase.open(url, None, lock_timeout_ms=100)
        try:
            node = ClusterNode(db, Lease(ClusterNode.new_id(), LEASE), lambda: None)
            with pytest.raises(StoreError):  # ... but not for ever
                await node.register(within=0.3)
        finally:
            await db.close()
    finally:
        await holder.close()
        await store.close()
