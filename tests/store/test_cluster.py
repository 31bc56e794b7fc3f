"""Several nodes on one PostgreSQL database (store.cluster, docs/multi-node.md), at the unit
level: two ``Store`` connections in one process are two nodes, each with its own engine,
on a real PostgreSQL 15 (tests/store/conftest.py). The calls are scripted; what is real is
the database: leases, SKIP LOCKED, the heartbeat, LISTEN/NOTIFY.

Escalation times come from a fake clock shared by both engines; leases use the database
server's clock (real time), so the take-over tests use leases of about a second.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass, field
from functools import partial

import asyncpg
import pytest
from pydantic import ValidationError

from tests.store.conftest import PgServer, new_pg_database
from tests.test_engine import ROTA, START
from voipalert.app.housekeeping import Housekeeping
from voipalert.clock import FakeClock
from voipalert.domain.alert import AlertStatus, AttemptOutcome, NewAlert
from voipalert.engine import PASS_BUDGET_SECONDS, Engine, EngineConfig
from voipalert.ingest.metrics import IngestMetrics
from voipalert.notify import Notification, NotifyResult, StopReason, StopRequest
from voipalert.rotafile.parse import parse_rota
from voipalert.settings import Settings
from voipalert.store import Store
from voipalert.store.cluster import ClusterNode, Lease
from voipalert.store.errors import StoreError
from voipalert.store.pg import WRITE_LOCK

# Take-over bounds (lease fractions) that a concurrent test's load would stretch.
pytestmark = pytest.mark.alone

NO_ANSWER = NotifyResult(AttemptOutcome.NO_ANSWER, 487, "Request Terminated", None, 30.0)
CANCELLED = NotifyResult(AttemptOutcome.CANCELLED, 487, "Request Terminated")


class Phone:
    """Records every attempt key it is asked to dial. ``hold``: calls ring until asked to
    stop (or ``release`` is set), as a phone nobody answers for a long time."""

    def __init__(self, *, hold: bool = False, hold_only: str | None = None) -> None:
        self.keys: list[str] = []
        self.stops: list[tuple[str, StopReason]] = []
        self.hold = hold
        self.hold_only = hold_only  # hold only the calls for alerts with this summary
        self.release = asyncio.Event()

    async def notify(self, notification: Notification, stop: StopRequest) -> NotifyResult:
        self.keys.append(notification.attempt_key)
        held = self.hold_only is None or notification.fields["summary"] == self.hold_only
        if not self.hold or not held:
            await asyncio.sleep(0)
            return NO_ANSWER
        stopped = asyncio.Event()

        def on_stop(reason: StopReason) -> None:
            self.stops.append((notification.attempt_key, reason))
            stopped.set()

        stop.subscribe(on_stop)
        waits = [asyncio.ensure_future(stopped.wait()), asyncio.ensure_future(self.release.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        return CANCELLED if stopped.is_set() else NO_ANSWER


@dataclass
class Node:
    store: Store
    engine: Engine
    phone: Phone
    cluster: ClusterNode
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def kill(self) -> None:
        """As SIGKILL would: the engine and the heartbeat stop, nothing is released."""
        for task in self.tasks:
            task.cancel()


@pytest.fixture
async def url(pg_server: PgServer) -> str:
    return await new_pg_database(pg_server)


@pytest.fixture
async def nodes(url: str) -> AsyncIterator[Callable[..., Awaitable[Node]]]:
    clock = FakeClock(START)
    async with AsyncExitStack() as stack:
        first = await Store.open(url, clock)
        stack.push_async_callback(first.close)
        await first.replace_rota(parse_rota(ROTA))
        started: list[Node] = []

        async def start(
            lease: float = 5.0,
            *,
            hold: bool = False,
            hold_only: str | None = None,
            take_batch: int = 50,
            engine: bool = True,
            lines: int = 50,
        ) -> Node:
            store = await Store.open(url, clock)
            stack.push_async_callback(store.close)
            phone = Phone(hold=hold, hold_only=hold_only)
            config = EngineConfig(idle_poll_seconds=3600, max_concurrent_calls=lines)
            eng = Engine(store, phone, clock, config)
            cluster = await store.join_cluster(lease, eng.wake, take_batch, eng.line_budget)
            assert cluster is not None
            node = Node(store, eng, phone, cluster)
            if engine:
                node.tasks.append(asyncio.create_task(eng.run()))
            node.tasks.append(asyncio.create_task(cluster.run()))
            started.append(node)
            return node

        try:
            yield start
        finally:
            for node in started:
                node.kill()
                for task in node.tasks:
                    with suppress(asyncio.CancelledError):
                        await task
        # Exposed for the tests through the fixture's closure only.
        del first


async def eventually(check: Callable[[], Awaitable[bool]], what: str, seconds: float) -> None:
    async with asyncio.timeout(seconds):
        while not await check():  # noqa: ASYNC110 - polls the database
            await asyncio.sleep(0.02)
    del what


async def rows(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def test_sqlite_has_no_cluster(tmp_path: object) -> None:
    store = await Store.open(f"{tmp_path}/v.db", FakeClock(START))
    try:
        assert await store.join_cluster(15.0, lambda: None) is None
        assert await store.prune_nodes(0) == []  # no nodes on SQLite, and no error
    finally:
        await store.close()


async def test_two_engines_dial_every_key_once(
    nodes: Callable[..., Awaitable[Node]], url: str
) -> None:
    """Two nodes over 40 alerts, through the whole policy (alice, bob, twice): every
    attempt key is dialled exactly once, by one node or the other, and both worked."""
    a = await nodes(take_batch=7)
    b = await nodes(take_batch=7)
    count = 40
    for n in range(count):
        await (a.store if n % 2 else b.store).create_or_join_alert(NewAlert(f"disk {n}"))
    a.engine.wake()
    b.engine.wake()

    async def all_closed() -> bool:
        got = await rows(url, "SELECT count(*) FROM alerts WHERE status = 'triggered'")
        return int(got[0][0]) == 0

    clock = a.store._clock
    assert isinstance(clock, FakeClock)
    async with asyncio.timeout(60):
        while not await all_closed():
            ta, tb = a.engine.ticks, b.engine.ticks
            clock.advance(100)
            a.engine.wake()
            b.engine.wake()
            # Both engines ticked at the new time and their calls ended.
            while (  # noqa: ASYNC110 - engine counters, no event to wait on
                a.engine.ticks <= ta
                or b.engine.ticks <= tb
                or a.engine.calls_in_progress
                or b.engine.calls_in_progress
            ):
                await asyncio.sleep(0.01)
    dialled = a.phone.keys + b.phone.keys
    assert [k for k, n in Counter(dialled).items() if n > 1] == []
    stored = await rows(
        url, "SELECT alert_id, esc_repeat, esc_step, person_name, node FROM attempts"
    )
    assert len(dialled) == len(stored) >= 2 * count
    assert a.phone.keys and b.phone.keys, "both nodes took a share of the alerts"
    by_node = Counter(r["node"] for r in stored)
    assert by_node == {a.cluster.id: len(a.phone.keys), b.cluster.id: len(b.phone.keys)}
    assert a.cluster.lease.interrupted_on_takeover == b.cluster.lease.interrupted_on_takeover == 0


async def test_a_dead_nodes_alerts_are_taken_over(
    nodes: Callable[..., Awaitable[Node]], url: str
) -> None:
    """Node A dies with five calls ringing: node B takes its alerts once A's leases expire,
    marks A's calls interrupted (counted: the known exception) and rings again under new
    keys; no key is dialled twice."""
    lease = 1.0
    a = await nodes(lease, hold=True)
    for n in range(5):
        await a.store.create_or_join_alert(NewAlert(f"disk {n}"))
    a.engine.wake()

    async def ringing(phone: Phone, n: int) -> bool:
        return len(phone.keys) >= n

    await eventually(lambda: ringing(a.phone, 5), "node A rings five times", 20)
    a.kill()
    died = asyncio.get_running_loop().time()
    b = await nodes(lease, hold=True)
    await eventually(lambda: ringing(b.phone, 5), "node B rings again", 20)
    took = asyncio.get_running_loop().time() - died
    assert not set(a.phone.keys) & set(b.phone.keys)
    assert b.cluster.lease.interrupted_on_takeover == 5
    interrupted = await rows(
        url, "SELECT node, detail FROM attempts WHERE state = 'interrupted' ORDER BY id"
    )
    assert [r["node"] for r in interrupted] == [a.cluster.id] * 5
    assert all(b.cluster.id in r["detail"] for r in interrupted)
    leases = await rows(url, "SELECT DISTINCT lease_node FROM alerts")
    assert [r["lease_node"] for r in leases] == [b.cluster.id]
    # The bound of docs/multi-node.md, with slack for a busy 2-core machine.
    assert took < lease * 4 / 3 + 10, took


async def test_an_ack_on_another_node_stops_the_call_at_once(
    nodes: Callable[..., Awaitable[Node]], url: str
) -> None:
    """Node A holds a ringing call; the ack arrives at node B (its store, as B's API would
    write it). B's transaction NOTIFYs; A's listener wakes A's engine, which asks the call
    to stop. A's heartbeat and idle poll are far away: only the notification can do it."""
    a = await nodes(60.0, hold=True)
    b = await nodes(60.0, engine=False)
    alert, _ = await a.store.create_or_join_alert(NewAlert("database down"))
    a.engine.wake()  # as A's intake does after storing an alert
    await eventually(lambda: _ringing(a.phone), "node A rings", 20)
    await asyncio.wait_for(a.cluster.listening.wait(), 20)
    acked = asyncio.get_running_loop().time()
    result = await b.store.ack_alert(alert.id, "bob", "api")
    assert result.changed
    async with asyncio.timeout(5):
        while not a.phone.stops:  # noqa: ASYNC110 - the phone's stop is what is awaited
            await asyncio.sleep(0.01)
    stopped = asyncio.get_running_loop().time() - acked
    print(f"ack on node B to stop on node A: {stopped * 1000:.0f} ms")
    assert a.phone.stops == [(a.phone.keys[0], StopReason.HANDLED)]
    assert a.cluster.notifications >= 1
    assert stopped < 5
    fresh = await b.store.get_alert(alert.id)
    assert fresh is not None and fresh.status is AlertStatus.ACKNOWLEDGED


async def _ringing(phone: Phone) -> bool:
    return bool(phone.keys)


async def test_stopping_hands_over_then_leave_releases(
    nodes: Callable[..., Awaitable[Node]], url: str
) -> None:
    """At SIGTERM a node hands over at once the alerts without a call of its own in flight,
    takes no new ones, and releases the rest once its calls ended."""
    a = await nodes(60.0, hold=True, hold_only="ringing")
    ringing, _ = await a.store.create_or_join_alert(NewAlert("ringing"))
    a.engine.wake()
    # An alert whose calls ended (alice, then bob: no answer): A holds its lease while it
    # waits for the next pass, with no call in flight.
    quiet, _ = await a.store.create_or_join_alert(NewAlert("quiet"))
    a.engine.wake()

    async def both_dialled() -> bool:
        done = await rows(url, "SELECT count(*) FROM attempts WHERE state = 'done'")
        return len(a.phone.keys) == 3 and int(done[0][0]) == 2

    await eventually(both_dialled, "node A rang for both, the quiet one's calls ended", 20)
    await a.cluster.begin_stopping()
    held = await rows(url, "SELECT id, lease_node FROM alerts ORDER BY id")
    assert [(r["id"], r["lease_node"]) for r in held] == [
        (ringing.id, a.cluster.id),
        (quiet.id, None),
    ]
    stopping = await rows(url, "SELECT stopping FROM nodes WHERE id = $1", a.cluster.id)
    assert stopping[0]["stopping"] is True
    await a.engine.shutdown(grace=5)
    await a.cluster.leave()
    held = await rows(url, "SELECT lease_node FROM alerts WHERE lease_node IS NOT NULL")
    assert held == []


async def test_heartbeat_renews_the_leases(nodes: Callable[..., Awaitable[Node]], url: str) -> None:
    a = await nodes(60.0, hold=True)
    await a.store.create_or_join_alert(NewAlert("disk"))
    a.engine.wake()
    await eventually(lambda: _ringing(a.phone), "node A rings", 20)
    before = await rows(url, "SELECT heartbeat_at FROM nodes WHERE id = $1", a.cluster.id)
    until = await rows(url, "SELECT lease_until FROM alerts")
    assert await a.cluster.heartbeat() == 1
    after = await rows(url, "SELECT heartbeat_at FROM nodes WHERE id = $1", a.cluster.id)
    renewed = await rows(url, "SELECT lease_until FROM alerts")
    assert after[0][0] > before[0][0]
    assert renewed[0][0] > until[0][0]


async def test_any_notification_only_wakes(nodes: Callable[..., Awaitable[Node]], url: str) -> None:
    """Anyone with the database's credentials can NOTIFY the channel: a payload is never
    parsed (a wake-up is all it does), so garbage, a huge payload or a burst changes nothing
    but a few extra engine passes; the node still works afterwards."""
    a = await nodes(60.0, hold=True)
    await asyncio.wait_for(a.cluster.listening.wait(), 20)
    conn = await asyncpg.connect(url)
    try:
        for payload in ["", "not a number", "-1", "9" * 100, "x" * 7000, "'; DROP TABLE alerts"]:
            await conn.execute("SELECT pg_notify('voipalert_alert', $1)", payload)
        for _ in range(200):
            await conn.execute("NOTIFY voipalert_alert")
    finally:
        await conn.close()

    async def heard() -> bool:
        return a.cluster.notifications >= 206

    await eventually(heard, "every notification heard", 20)
    await a.store.create_or_join_alert(NewAlert("still working"))
    a.engine.wake()
    await eventually(lambda: _ringing(a.phone), "node A still rings", 20)


def test_lease_seconds_are_bounded() -> None:
    assert Settings.model_validate({"cluster": {"lease_seconds": 3}}).cluster.lease_seconds == 3
    for bad in (0, 0.5, -1, 601, "soon"):
        with pytest.raises(ValidationError, match="lease_seconds"):
            Settings.model_validate({"cluster": {"lease_seconds": bad}})
    assert Settings().cluster.node_retention_hours == 24
    for bad in (0, 0.5, -1, 10_000, "a day"):
        with pytest.raises(ValidationError, match="node_retention_hours"):
            Settings.model_validate({"cluster": {"node_retention_hours": bad}})


async def test_metrics_show_leases_and_takeovers(tmp_path: object) -> None:
    metrics = IngestMetrics(FakeClock(START))
    lease = Lease("n1", 15.0, held=3, interrupted_on_takeover=2, adopted=5)
    metrics.count_cluster(lease)
    text = metrics.render().decode()
    assert "voipalert_cluster_leases 3.0" in text
    assert "voipalert_cluster_takeover_interrupted_total 2.0" in text
    assert "voipalert_cluster_adopted_total 5.0" in text


async def test_a_node_that_lost_a_lease_stops_its_call(
    nodes: Callable[..., Awaitable[Node]], url: str
) -> None:
    """A node that stalled past its lease finds, at its next pass, that another node took
    the alert (and interrupted its attempt): it asks its own call to stop."""
    a = await nodes(60.0, hold=True)
    b = await nodes(60.0, engine=False)
    await a.store.create_or_join_alert(NewAlert("disk"))
    a.engine.wake()
    await eventually(lambda: _ringing(a.phone), "node A rings", 20)
    await rows(url, "UPDATE alerts SET lease_node = $1", b.cluster.id)
    a.engine.wake()

    async def stopped() -> bool:
        return bool(a.phone.stops)

    await eventually(stopped, "node A stops its call", 10)
    assert a.phone.stops == [(a.phone.keys[0], StopReason.HANDLED)]


async def test_acks_still_reach_the_node_after_its_connections_were_cut(
    nodes: Callable[..., Awaitable[Node]], url: str
) -> None:
    """Every connection to the database is cut (as a failover or a restart does): the
    nodes' store connections reconnect at their next transaction, and the listener notices
    at its next probe and LISTENs again; an ack on node B then still stops A's call."""
    a = await nodes(3.0, hold=True)
    b = await nodes(3.0, engine=False)
    alert, _ = await a.store.create_or_join_alert(NewAlert("database down"))
    a.engine.wake()
    await eventually(lambda: _ringing(a.phone), "node A rings", 20)
    await asyncio.wait_for(a.cluster.listening.wait(), 20)
    await rows(
        url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )  # fmt: skip

    async def listening_again() -> bool:
        return a.cluster.listens >= 2

    await eventually(listening_again, "node A's listener saw the cut and listens again", 20)
    for _ in range(3):  # the first transaction on a cut connection fails (the API's 503)
        try:
            result = await b.store.ack_alert(alert.id, "bob", "api")
            break
        except StoreError:
            continue
    assert result.changed

    async def stopped() -> bool:
        return bool(a.phone.stops)

    await eventually(stopped, "node A stops its call", 10)
    assert a.phone.stops == [(a.phone.keys[0], StopReason.HANDLED)]


async def test_leases_outlive_a_busy_store_connection(
    nodes: Callable[..., Awaitable[Node]], url: str
) -> None:
    """The heartbeat renews the leases on a connection of its own: a node whose store
    connection is busy for three leases (as a loaded node's is, its writes queued behind
    each other) keeps its alert, and the other node takes nothing and interrupts nothing.
    With the renewal on the store's connection, B took A's alert here after one lease."""
    lease = 1.0
    a = await nodes(lease, hold=True)
    await a.store.create_or_join_alert(NewAlert("disk"))
    a.engine.wake()
    await eventually(lambda: _ringing(a.phone), "node A rings", 20)
    b = await nodes(lease, hold=True)
    beats = a.cluster.beats
    # A's store connection is taken (one long transaction: every other one of A's waits
    # for it, the heartbeat included if it were on it).
    async with a.store._db.transaction(write=False) as conn:
        for _ in range(30):
            await conn.execute("SELECT pg_sleep(0.1)")
        # B's engine had its passes meanwhile (woken by its heartbeat).
        assert b.engine.ticks > 2
    assert a.cluster.beats >= beats + 6, "A's heartbeat went on while its store was busy"
    assert b.phone.keys == []
    assert b.cluster.lease.interrupted_on_takeover == 0
    held = await rows(url, "SELECT lease_node FROM alerts")
    assert [r["lease_node"] for r in held] == [a.cluster.id]
    assert a.phone.stops == []


async def test_the_alerts_just_taken_come_first(
    nodes: Callable[..., Awaitable[Node]], url: str
) -> None:
    """The snapshot lists the alerts it just took before those the node held already, so a
    pass cut by its budget (engine.PASS_BUDGET_SECONDS) reconciles a take-over first."""
    a = await nodes(60.0, engine=False)
    first, _ = await a.store.create_or_join_alert(NewAlert("held already"))
    assert [alert.id for alert, _ in await a.store.engine_snapshot()] == [first.id]
    later = [(await a.store.create_or_join_alert(NewAlert(f"new {n}")))[0].id for n in range(2)]
    snapshot = await a.store.engine_snapshot()
    assert [alert.id for alert, _ in snapshot] == [*later, first.id]
    # Once held, the usual order again.
    snapshot = await a.store.engine_snapshot()
    assert [alert.id for alert, _ in snapshot] == [first.id, *later]


async def test_a_node_takes_no_more_alerts_than_it_can_dial(
    nodes: Callable[..., Awaitable[Node]], url: str
) -> None:
    """Two lines per node, six alerts stored through node A (which wakes only its own
    engine): A takes the two it can dial, B the next two, two wait unleased for a free
    line. (A dead node's escalations are another matter: adopted whatever the lines,
    test_a_dead_nodes_escalations_are_adopted_with_every_line_busy.)"""
    lease = 1.0
    a = await nodes(lease, hold=True, lines=2)
    b = await nodes(lease, hold=True, lines=2)
    for n in range(6):
        await a.store.create_or_join_alert(NewAlert(f"disk {n}"))
    a.engine.wake()

    async def dialled(count: int) -> bool:
        return len(a.phone.keys) + len(b.phone.keys) >= count

    await eventually(lambda: dialled(4), "both nodes ring twice", 20)
    # A few more passes of both: nobody takes what it cannot dial.
    ticks = a.engine.ticks, b.engine.ticks
    await eventually(lambda: _ticked_past(a, b, ticks), "both engines had more passes", 20)
    assert (len(a.phone.keys), len(b.phone.keys)) == (2, 2)
    held = Counter(r["lease_node"] for r in await rows(url, "SELECT lease_node FROM alerts"))
    assert held == {a.cluster.id: 2, b.cluster.id: 2, None: 2}


async def test_an_escalation_waiting_for_its_repeat_leaves_its_line_to_a_new_alert(
    nodes: Callable[..., Awaitable[Node]], url: str
) -> None:
    """One node, one line. Its first alert rang alice, then bob, unanswered, and waits 60 s
    for its repeat: the line is idle, and a new alert is taken and rung at once. Before,
    the waiting escalation counted as wanting the line and the new alert stayed untaken
    until the first one ended, however long its repeats took. Once the repeat is due
    within a ring timeout (engine.LINE_WANTED_WITHIN_SECONDS) it counts again: a third
    alert then waits."""
    a = await nodes(1.0, lines=1)
    await a.store.create_or_join_alert(NewAlert("first"))
    a.engine.wake()

    async def waits(count: int) -> bool:  # unanswered calls recorded, no call left
        done = await rows(url, "SELECT count(*) FROM attempts WHERE state = 'done'")
        return len(a.phone.keys) == count and int(done[0][0]) == count

    await eventually(partial(waits, 2), "alice and bob rang for the first alert", 20)
    second, _ = await a.store.create_or_join_alert(NewAlert("second"))
    a.engine.wake()
    await eventually(partial(waits, 4), "the second alert rang at once", 20)
    assert {int(key.split("/")[0]) for key in a.phone.keys[2:]} == {second.id}
    assert await _lessees(url, [second.id]) == {second.id: a.cluster.id}

    clock = a.store._clock
    assert isinstance(clock, FakeClock)
    clock.advance(45)  # the first alert's repeat is now 15 s away, the second's 60 s
    third, _ = await a.store.create_or_join_alert(NewAlert("third"))
    ticks = a.engine.ticks
    a.engine.wake()
    await eventually(lambda: _ticked_past(a, a, (ticks, ticks)), "more passes", 20)
    assert await _lessees(url, [third.id]) == {third.id: None}
    assert len(a.phone.keys) == 4


# The take-over bound of docs/multi-node.md ("Bounds"): the dead node's leases expire at
# most a lease after its death, a live node's heartbeat wakes its engine within a third of
# a lease, and its pass (at most PASS_BUDGET_SECONDS) takes them; slack for a busy machine.
def _adoption_bound(lease: float) -> float:
    return lease * 4 / 3 + PASS_BUDGET_SECONDS + 3.0


async def _lessees(url: str, ids: Sequence[int]) -> dict[int, str | None]:
    got = await rows(
        url, "SELECT id, lease_node FROM alerts WHERE id = ANY($1::bigint[])", list(ids)
    )
    return {int(r["id"]): r["lease_node"] for r in got}


async def test_a_dead_nodes_escalations_are_adopted_with_every_line_busy(
    nodes: Callable[..., Awaitable[Node]], url: str
) -> None:
    """Node A holds three escalations: two ringing, one waiting a minute for its repeat.
    Nodes B and C have two lines each, every one ringing (calls that ring until stopped),
    and two new alerts wait unleased. A dies: once its leases expire, B and C adopt all
    three within the bound, whatever their lines, shared between them (ceil(3 / 2) at
    most per snapshot: neither takes all), the waiting one included; they take no new
    alert and start no call beyond their lines. Once lines free, each adopted call is the
    first to start; no key is dialled twice. Before (the take bounded by free lines), A's
    alerts stayed unleased until a line freed somewhere."""
    lease = 1.0
    # Two lines: both ring, and the quiet escalation, waiting longer than a ring timeout,
    # wants none (engine.LINE_WANTED_WITHIN_SECONDS); with a third line free, A would take
    # one of B's busy alerts below.
    a = await nodes(lease, hold=True, hold_only="ring", lines=2)
    quiet, _ = await a.store.create_or_join_alert(NewAlert("quiet"))
    a.engine.wake()

    async def quiet_waits() -> bool:  # alice, then bob, no answer: the repeat is 60 s away
        done = await rows(url, "SELECT count(*) FROM attempts WHERE state = 'done'")
        return len(a.phone.keys) == 2 and int(done[0][0]) == 2

    await eventually(quiet_waits, "node A rang for the quiet alert, which now waits", 20)
    ringing = [(await a.store.create_or_join_alert(NewAlert("ring")))[0].id]
    ringing.append((await a.store.create_or_join_alert(NewAlert("ring", dedup_key="2")))[0].id)
    a.engine.wake()
    await eventually(lambda: _dialled(a, 4), "node A rings for both", 20)

    b = await nodes(lease, hold=True, lines=2)
    c = await nodes(lease, hold=True, lines=2)
    for n in range(4):
        await b.store.create_or_join_alert(NewAlert(f"busy {n}"))
    b.engine.wake()
    c.engine.wake()
    await eventually(lambda: _dialled(b, 2), "node B rings twice", 20)
    await eventually(lambda: _dialled(c, 2), "node C rings twice", 20)
    new = [(await b.store.create_or_join_alert(NewAlert(f"new {n}")))[0].id for n in range(2)]
    b.engine.wake()
    c.engine.wake()

    dead = [quiet.id, *ringing]
    a.kill()
    loop = asyncio.get_running_loop()
    died = loop.time()

    async def all_adopted() -> bool:
        held = await _lessees(url, dead)
        return all(node in (b.cluster.id, c.cluster.id) for node in held.values())

    await eventually(all_adopted, "B and C adopt A's escalations", _adoption_bound(lease))
    took = loop.time() - died
    print(f"node A's 3 escalations adopted {took:.2f} s after its death (lease {lease} s)")
    held = Counter((await _lessees(url, dead)).values())
    assert set(held) == {b.cluster.id, c.cluster.id}, "shared: neither node took all"
    assert max(held.values()) <= 2
    # More passes of both: still no new alert taken, no call beyond the lines.
    ticks = b.engine.ticks, c.engine.ticks
    await eventually(lambda: _ticked_past(b, c, ticks), "both engines had more passes", 20)
    assert await _lessees(url, new) == {n: None for n in new}
    assert (len(b.phone.keys), len(c.phone.keys)) == (2, 2)
    assert b.cluster.lease.interrupted_on_takeover + c.cluster.lease.interrupted_on_takeover == 2
    assert b.cluster.lease.adopted + c.cluster.lease.adopted == 3  # voipalert_cluster_adopted

    # The lines free: on each node the call of the ringing escalation it adopted (if it
    # adopted one) starts first.
    adopted = await _lessees(url, ringing)
    b.phone.release.set()
    c.phone.release.set()
    for node in (b, c):
        mine = [alert for alert, holder in adopted.items() if holder == node.cluster.id]
        await eventually(partial(_dialled, node, 2 + len(mine)), "lines freed", 20)
        first = [int(key.split("/")[0]) for key in node.phone.keys[2 : 2 + len(mine)]]
        assert sorted(first) == sorted(mine), (node.phone.keys, mine)
    dialled = a.phone.keys + b.phone.keys + c.phone.keys
    assert [k for k, n in Counter(dialled).items() if n > 1] == []


async def test_an_adopted_call_goes_before_calls_queued_earlier(
    nodes: Callable[..., Awaitable[Node]], url: str
) -> None:
    """One line per node. A rings alice for the older alert, B for the newer one; both
    steps time out, and each node's call to bob waits for its line behind alice's. A
    dies: B adopts the older escalation although its line is busy, and A's call to bob
    (committed, never dialled) queues on B after B's own. When B's line frees, the adopted
    call starts first: asyncio.Semaphore (first come, first served) started B's own."""
    lease = 1.0
    a = await nodes(lease, hold=True, lines=1)
    older, _ = await a.store.create_or_join_alert(NewAlert("older"))
    a.engine.wake()
    await eventually(lambda: _dialled(a, 1), "node A rings alice", 20)
    b = await nodes(lease, hold=True, lines=1)
    newer, _ = await b.store.create_or_join_alert(NewAlert("newer"))
    b.engine.wake()
    await eventually(lambda: _dialled(b, 1), "node B rings alice", 20)
    assert await _lessees(url, [older.id, newer.id]) == {
        older.id: a.cluster.id,
        newer.id: b.cluster.id,
    }
    clock = a.store._clock
    assert isinstance(clock, FakeClock)
    clock.advance(300)  # step 1's timeout: on to bob
    a.engine.wake()
    b.engine.wake()

    async def queued(node: Node, calls: int) -> bool:
        return node.engine.calls_in_progress == calls

    await eventually(lambda: queued(a, 2), "A's call to bob waits for its line", 20)
    await eventually(lambda: queued(b, 2), "B's call to bob waits for its line", 20)
    a.kill()
    loop = asyncio.get_running_loop()
    died = loop.time()

    async def adopted() -> bool:
        return (await _lessees(url, [older.id]))[older.id] == b.cluster.id

    await eventually(adopted, "B adopts the older escalation", _adoption_bound(lease))
    print(f"adopted {loop.time() - died:.2f} s after A's death, B's line busy")
    await eventually(lambda: queued(b, 3), "the adopted call waits for B's line too", 20)
    assert len(b.phone.keys) == 1
    b.phone.release.set()
    await eventually(lambda: _dialled(b, 3), "B's line frees", 20)
    assert b.phone.keys[1:] == [f"{older.id}/0/1/bob/1", f"{newer.id}/0/1/bob/1"]
    assert not set(a.phone.keys) & set(b.phone.keys)


async def test_a_stopping_node_adopts_nothing(
    nodes: Callable[..., Awaitable[Node]], url: str
) -> None:
    """A node that is stopping (SIGTERM) adopts no expired lease: the live nodes do."""
    lease = 1.0
    a = await nodes(lease, hold=True)
    alert, _ = await a.store.create_or_join_alert(NewAlert("disk"))
    a.engine.wake()
    await eventually(lambda: _dialled(a, 1), "node A rings", 20)
    b = await nodes(lease, hold=True)
    await b.cluster.begin_stopping()
    a.kill()
    await asyncio.sleep(2 * lease)  # A's lease has expired, B's heartbeat woke its engine
    ticks = b.engine.ticks
    b.engine.wake()
    await eventually(lambda: _b_ticked(b, ticks + 1), "B had a pass after the expiry", 20)
    assert await _lessees(url, [alert.id]) == {alert.id: a.cluster.id}
    assert b.phone.keys == []
    c = await nodes(lease, hold=True)

    async def adopted() -> bool:
        return (await _lessees(url, [alert.id]))[alert.id] == c.cluster.id

    await eventually(adopted, "C adopts it", _adoption_bound(lease))


async def _dialled(node: Node, count: int) -> bool:
    return len(node.phone.keys) >= count


async def _ticked_past(one: Node, two: Node, ticks: tuple[int, int]) -> bool:
    return one.engine.ticks > ticks[0] + 1 and two.engine.ticks > ticks[1] + 1


async def test_metrics_show_jobs_held_and_live_nodes(
    nodes: Callable[..., Awaitable[Node]], url: str
) -> None:
    """/metrics of a node: which single-writer jobs it runs (1) or not (0), the nodes heard
    from lately with their heartbeat's age, and how many are live."""
    a = await nodes(60.0, engine=False)
    b = await nodes(60.0, engine=False)
    started = asyncio.Event()

    async def job() -> None:
        started.set()
        await asyncio.Event().wait()

    writers = [node.cluster.single_writer("silencer", job) for node in (a, b)]
    tasks = [asyncio.create_task(w.run()) for w in writers]
    try:
        await asyncio.wait_for(started.wait(), 20)
        holder, other = (a, b) if writers[0].held.is_set() else (b, a)
        # A third node, silent for 70 s: past its lease (60 s), still listed a while.
        await rows(
            url, "INSERT INTO nodes (id, host, pid, heartbeat_at) "
            "VALUES ('gone', 'h', 1, now() - interval '70 seconds')",
        )  # fmt: skip
        await holder.cluster.heartbeat()
        await other.cluster.heartbeat()
        for node, held in ((holder, 1.0), (other, 0.0)):
            metrics = IngestMetrics(FakeClock(START))
            metrics.count_cluster(node.cluster.lease, node.cluster)
            text = metrics.render().decode()
            assert f'voipalert_cluster_job_held{{job="silencer"}} {held}' in text
            assert "voipalert_cluster_nodes_live 2.0" in text
            for peer in (a, b):
                assert f'node="{peer.cluster.id}"' in text
            ages = [
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("voipalert_cluster_node_heartbeat_age_seconds{")
            ]
            assert len(ages) == 3 and max(ages) >= 70, ages  # the silent one, shown
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_housekeeping_prunes_only_nodes_that_no_longer_matter(
    nodes: Callable[..., Awaitable[Node]], url: str
) -> None:
    """Rows of nodes silent for longer than the retention go, unless the node still holds
    a lease, or an attempt pending, in flight, or of an alert the engines still work."""
    a = await nodes(60.0, hold=True)
    alert, _ = await a.store.create_or_join_alert(NewAlert("disk"))
    a.engine.wake()
    await eventually(lambda: _ringing(a.phone), "node A rings", 20)
    a.kill()  # its lease and its call in flight stay behind
    b = await nodes(60.0, engine=False)
    await rows(
        url, "INSERT INTO nodes (id, host, pid, heartbeat_at) VALUES "
        "('old', 'h', 1, now() - interval '25 hours'), "
        "('recent', 'h', 2, now() - interval '23 hours')",
    )  # fmt: skip
    await rows(url, "UPDATE nodes SET heartbeat_at = now() - interval '2 days' WHERE id = $1",
               a.cluster.id)  # fmt: skip
    keeper = Housekeeping(b.store, FakeClock(START), 30, node_retention_hours=24)

    async def left() -> set[str]:
        return {r["id"] for r in await rows(url, "SELECT id FROM nodes")}

    await keeper.once()
    assert await left() == {a.cluster.id, b.cluster.id, "recent"}  # "old" went
    # A's lease released (taken over), its attempt ended: the alert is still open.
    await rows(url, "UPDATE alerts SET lease_node = NULL")
    await rows(url, "UPDATE attempts SET state = 'done', outcome = 'no_answer', ended_at = '1'")
    await keeper.once()
    assert a.cluster.id in await left()
    # The alert settled: nothing of A matters any more.
    await rows(url, "UPDATE alerts SET status = 'resolved', engine_active = 0")
    await keeper.once()
    assert await left() == {b.cluster.id, "recent"}
    dialled = await rows(url, "SELECT node FROM attempts WHERE alert_id = $1", alert.id)
    assert [r["node"] for r in dialled] == [None]
    # A node whose row went all the same (frozen for longer than the retention) writes it
    # again at its next heartbeat: its leases need the row.
    await rows(url, "DELETE FROM nodes WHERE id = $1", b.cluster.id)
    await b.cluster.heartbeat()
    assert b.cluster.id in await left()


async def test_leases_outlive_a_held_write_lock(
    nodes: Callable[..., Awaitable[Node]], url: str
) -> None:
    """The heartbeat takes no write lock: while another session holds the database's
    write lock for three leases (every node's writes wait), node A's heartbeat goes on and
    its lease with it; once the lock is free, B still finds nothing to take."""
    lease = 1.0
    a = await nodes(lease, hold=True)
    await a.store.create_or_join_alert(NewAlert("disk"))
    a.engine.wake()
    await eventually(lambda: _ringing(a.phone), "node A rings", 20)
    b = await nodes(lease, hold=True)
    beats = a.cluster.beats
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", WRITE_LOCK)
            await asyncio.sleep(3 * lease)
    finally:
        await conn.close()
    assert a.cluster.beats >= beats + 6, "A's heartbeat went on under the write lock"
    ticks = b.engine.ticks
    await eventually(lambda: _b_ticked(b, ticks + 2), "B had passes after the lock", 20)
    assert b.phone.keys == []
    assert b.cluster.lease.interrupted_on_takeover == 0
    assert a.phone.stops == []


async def _b_ticked(node: Node, ticks: int) -> bool:
    return node.engine.ticks >= ticks
