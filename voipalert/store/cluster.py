"""Several active nodes on one PostgreSQL database (docs/multi-node.md).

Work is claimed, never assumed. Each ``serve`` registers a row in ``nodes`` and renews
its heartbeat every ``lease_seconds / 3``; the engine plans and dials only for the alerts
whose lease it holds (``alerts.lease_node``/``lease_until``, server time). The leases are
taken in the engine's snapshot (``leased_snapshot``: a dead node's expired leases at once,
shared over the live nodes; new alerts no more than the node has free call lines for),
renewed with every heartbeat (on a connection of its own,
so that a loaded node's queued writes never delay it) and every tick, and released when
an alert settles or the node stops cleanly. A node that
dies stops renewing: ``lease_seconds`` later its leases have expired and the next tick of
another node takes them (woken at least every heartbeat), marks the dead node's calls
``interrupted`` and re-plans.

An attempt key is dialled once at most, whatever the nodes do: ``start_attempt`` moves it
``pending`` -> ``in_flight`` under the write lock, only for the lease holder, and the
forward-only state trigger refuses any second start. The known exception: a call cut by a
node's death (or by a node that lost its lease) may have rung; the re-plan may ring that
person again under a *new* key. ``Lease.interrupted_on_takeover`` counts those
(``voipalert_cluster_takeover_interrupted`` in /metrics).

Acks and resolves reach the node holding the call through ``LISTEN/NOTIFY``: schema 12's
trigger notifies ``voipalert_alert`` in the transaction that changed the alert, and every
node listens on a connection of its own (``ClusterNode``).

The jobs that must run on one node at a time (the Alertmanager silencer, the status
webhook sender, the IMAP poller) run under ``SingleWriter``: only on the node whose
dedicated connection holds the job's session advisory lock.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import os
import socket
import uuid
from collections.abc import Callable, Coroutine, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from voipalert.store import alert_sql
from voipalert.store.alert_sql import ALERT_SELECT
from voipalert.store.db import to_db
from voipalert.store.errors import StoreError
from voipalert.store.sql import Conn, Row

if TYPE_CHECKING:
    from voipalert.store.pg import PgDatabase, PgJobLock, PgListener

log = logging.getLogger("voipalert.cluster")

CHANNEL: Final = "voipalert_alert"
DEFAULT_TAKE_BATCH: Final = 50
LISTEN_RETRY_SECONDS: Final = 1.0
REGISTER_SECONDS: Final = 60.0
PEERS_SHOWN_LEASES: Final = 4  # /metrics lists the nodes heard from within this many leases


@dataclass(slots=True)
class Lease:
    """This node's identity and lease rules, held by the store once it joined."""

    node: str
    seconds: float
    take_batch: int = DEFAULT_TAKE_BATCH
    stopping: bool = False
    # Called when a snapshot took a full batch: more alerts wait, tick again at once.
    more: Callable[[], None] | None = None
    interrupted_on_takeover: int = 0  # the known exception: calls cut by a node's end
    adopted: int = 0  # expired leases (a dead or cut-off node's escalations) adopted here
    # The engine's free call lines and its escalations not due soon (LineBudget): a
    # snapshot takes no more new alerts than the node can dial (a dead node's expired
    # leases are adopted whatever the lines). None: take_batch alone.
    lines: Callable[[], LineBudget] | None = None
    held: int = 0  # alerts leased after the last snapshot


@dataclass(frozen=True, slots=True)
class LineBudget:
    """What the engine can dial, as a snapshot's take sees it (``_take_limit``)."""

    free: int  # max_concurrent_calls less the calls in progress (waiting for a line too)
    # Held alerts whose next step the engine planned for later than a ring timeout from
    # now (engine.LINE_WANTED_WITHIN_SECONDS: a repeat minutes away): not counted as
    # wanting a line.
    not_due_soon: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class Peer:
    """A node of the database as this node's last heartbeat saw it (for /metrics)."""

    id: str
    host: str
    pid: int
    heartbeat_age: float  # seconds, by the database server's clock
    stopping: bool


@dataclass(frozen=True, slots=True)
class LeasedRows:
    alerts: Sequence[Row]
    attempts: Sequence[Row]
    interrupted: list[int] = field(default_factory=list)
    taken: list[int] = field(default_factory=list)  # the alerts this snapshot took
    adopted: list[int] = field(default_factory=list)  # of those, the ones of expired leases


# Lease times are the *statement's* start, never ``now()``: ``now()`` is the transaction's
# start, and the engine's snapshot begins its transaction before it waits (up to the lock
# timeout) for the write lock. Renewed from ``now()``, a lease that waited 3 s for the lock
# was set 3 s short, into the past with a 1 s lease, and another node took it from a live
# node (tests/store/test_cluster.py::test_leases_outlive_a_held_write_lock).
LEASE_NOW: Final = "statement_timestamp()"


def _interval() -> str:
    return f"{LEASE_NOW} + make_interval(secs => CAST(? AS DOUBLE PRECISION))"


async def leased_snapshot(conn: Conn, lease: Lease, now: datetime) -> LeasedRows:
    """Inside one write transaction: renew this node's leases, release those of settled
    alerts, adopt its share of the expired leases (whatever its free lines), take free
    ones up to its free lines, interrupt the in-flight calls other nodes left on the
    alerts taken, and read the alerts held (docs/multi-node.md, "How work is claimed")."""
    me = lease.node
    await conn.execute(
        f"UPDATE alerts SET lease_until = {_interval()} WHERE lease_node = ? AND engine_active = 1",
        (lease.seconds, me),
    )
    await conn.execute(
        "UPDATE alerts SET lease_node = NULL, lease_until = NULL "
        "WHERE lease_node = ? AND engine_active = 0",
        (me,),
    )
    adopted: list[int] = []
    interrupted: list[int] = []
    taken: list[int] = []
    if not lease.stopping:
        # (a) Expired leases first, whatever the free lines: adopting is not dialling.
        adopted = await _adopt_expired(conn, lease)
        interrupted += await _interrupt_others(conn, lease, adopted, now)
        # (b) Alerts nobody has taken yet: no more than the node can dial. Counted after
        # the adoption, so an adopted escalation that wants a line is one line less here.
        limit = await _take_limit(conn, lease)
        if limit > 0:
            # SKIP LOCKED: rows another transaction is changing are left to the next tick
            # instead of waiting for them (the write lock orders the nodes' snapshots
            # anyway; this keeps a take from queueing behind an unrelated long update).
            rows = await conn.execute_fetchall(
                f"UPDATE alerts SET lease_node = ?, lease_until = {_interval()} "
                "WHERE id IN (SELECT id FROM alerts WHERE engine_active = 1 "
                "AND lease_node IS NULL ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED) RETURNING id",
                (me, lease.seconds, limit),
            )
            taken = sorted(int(r["id"]) for r in rows)
            # A lease released by a node that stopped may leave a call of its own behind
            # (cut after the shutdown's grace): the same rule as for a take-over.
            interrupted += await _interrupt_others(conn, lease, taken, now)
            if len(taken) >= lease.take_batch and lease.more is not None:
                lease.more()
    lease.interrupted_on_takeover += len(interrupted)
    lease.adopted += len(adopted)
    alerts = await conn.execute_fetchall(
        f"{ALERT_SELECT} WHERE a.engine_active = 1 AND a.lease_node = ? ORDER BY a.id", (me,)
    )
    attempts = await conn.execute_fetchall(
        "SELECT * FROM attempts WHERE alert_id IN (SELECT id FROM alerts "
        "WHERE engine_active = 1 AND lease_node = ?) ORDER BY alert_id, id",
        (me,),
    )
    lease.held = len(alerts)
    return LeasedRows(alerts, attempts, interrupted, adopted + taken, adopted)


async def _adopt_expired(conn: Conn, lease: Lease) -> list[int]:
    """Take this node's share of the expired leases (a dead or cut-off node's escalations,
    under way): ``ceil(expired / live nodes)``, ``take_batch`` at most, by id, whatever
    the node's free lines. An escalation waiting minutes for its next step, or whose next
    step is a text, needs no line now, and one that needs a call is first in the line
    queue (engine.py): held by a busy node it resumes at the first free line, left
    unleased it would wait for any node's line to free before anyone even looked at it
    (docs/multi-node.md, "How work is claimed"). Shared over the live nodes so that the
    first to look does not take all; while some remain after its share, the other nodes
    are woken (NOTIFY) to take the next shares at once rather than at their heartbeat."""
    counts = await conn.execute_fetchall(
        # Live: a heartbeat younger than a lease by the server's clock, not stopping (a
        # stopping node adopts nothing); this node counts whatever its row says.
        "SELECT (SELECT 1 + count(*) FROM nodes WHERE id <> ? AND NOT stopping "
        f"AND heartbeat_at > {LEASE_NOW} - make_interval(secs => CAST(? AS DOUBLE PRECISION))"
        ") AS live, (SELECT count(*) FROM alerts WHERE engine_active = 1 "
        f"AND lease_node IS NOT NULL AND lease_until < {LEASE_NOW}) AS expired",
        (lease.node, lease.seconds),
    )
    live, expired = max(1, int(counts[0]["live"])), int(counts[0]["expired"])
    if expired == 0:
        return []
    share = min(lease.take_batch, math.ceil(expired / live))
    rows = await conn.execute_fetchall(
        f"UPDATE alerts SET lease_node = ?, lease_until = {_interval()} "
        "WHERE id IN (SELECT id FROM alerts WHERE engine_active = 1 "
        f"AND lease_node IS NOT NULL AND lease_until < {LEASE_NOW} "
        "ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED) RETURNING id",
        (lease.node, lease.seconds, share),
    )
    adopted = sorted(int(r["id"]) for r in rows)
    if adopted and len(adopted) < expired:
        # Delivered at commit to every node listening; the payload names this node, whose
        # listener ignores it (ClusterNode._notified): woken by its own call, this node
        # would take the next share too before the others had looked.
        await conn.execute("SELECT pg_notify(?, ?)", (CHANNEL, lease.node))
        if len(adopted) >= lease.take_batch and lease.more is not None:
            lease.more()  # its share was cut by the batch: more is its own to take
    if adopted:
        log.info("adopted %d expired lease(s) of %d (%d live node(s))", len(adopted), expired, live)
    return adopted


async def _interrupt_others(conn: Conn, lease: Lease, taken: list[int], now: datetime) -> list[int]:
    """Calls in flight under another node on alerts just taken: that node is dead (or cut
    off from the database and no longer renewing). The call may have rung; it is never
    dialled again under its key (docs/multi-node.md, "The known exception")."""
    if not taken:
        return []
    me = lease.node
    rows = await conn.execute_fetchall(
        "UPDATE attempts SET state = 'interrupted', ended_at = ?, "
        "detail = 'the node dialling it stopped renewing its lease: taken over by ' || ? "
        f"WHERE alert_id IN {conn.dialect.json_ints} AND state = 'in_flight' "
        "AND node IS DISTINCT FROM ? RETURNING id, alert_id, node",
        (to_db(now), me, json.dumps(taken), me),
    )
    interrupted: list[int] = []
    for row in rows:
        interrupted.append(int(row["id"]))
        await alert_sql.audit(
            conn, now, "engine", "attempt.interrupted",
            alert_id=row["alert_id"], attempt_id=row["id"],
            node=row["node"], taken_over_by=me,
        )  # fmt: skip
    return interrupted


async def _take_limit(conn: Conn, lease: Lease) -> int:
    """How many alerts nobody has taken yet this snapshot may take: ``take_batch``, and
    no more than the node can dial. Its free lines, less the alerts it holds already
    without a call that may want a line soon: the ones just adopted or taken and not yet
    planned, and the ones whose next step is due within a ring timeout. A burst of new
    alerts spreads over the nodes with free lines instead of queueing behind the calls
    of the first one to tick; an escalation waiting minutes for its repeat does not keep
    a line from a new alert (docs/multi-node.md, "The take respects free lines")."""
    if lease.lines is None:
        return lease.take_batch
    budget = lease.lines()
    if budget.free <= 0:
        return 0
    rows = await conn.execute_fetchall(
        "SELECT count(*) AS n FROM alerts WHERE lease_node = ? AND engine_active = 1 "
        "AND NOT EXISTS (SELECT 1 FROM attempts WHERE attempts.alert_id = alerts.id "
        "AND attempts.state IN ('pending', 'in_flight')) "
        f"AND id NOT IN {conn.dialect.json_ints}",
        (lease.node, json.dumps(sorted(budget.not_due_soon))),
    )
    return max(0, min(lease.take_batch, budget.free - int(rows[0]["n"])))


async def prune_nodes(conn: Conn, silent_seconds: float) -> list[str]:
    """Delete the rows of nodes silent for ``silent_seconds`` (each start is a new node:
    the table would grow with every restart). Never a node that still matters: one whose
    name is on a lease (its alerts not yet taken over), or on an attempt still pending or
    in flight, or on any attempt of an alert the engines still work (the take-over reads
    ``attempts.node``). The attempts of settled alerts lose their ``node`` (the schema's
    ``ON DELETE SET NULL``); the audit trail keeps the node ids it named."""
    rows = await conn.execute_fetchall(
        "DELETE FROM nodes WHERE heartbeat_at < now() - make_interval(secs => "
        "CAST(? AS DOUBLE PRECISION)) "
        "AND NOT EXISTS (SELECT 1 FROM alerts WHERE alerts.lease_node = nodes.id) "
        "AND NOT EXISTS (SELECT 1 FROM attempts t WHERE t.node = nodes.id "
        "AND (t.state IN ('pending', 'in_flight') "
        "OR t.alert_id IN (SELECT id FROM alerts WHERE engine_active = 1))) RETURNING id",
        (silent_seconds,),
    )
    return [str(r["id"]) for r in rows]


class ClusterNode:
    """This process as a node: its row, its heartbeat (which also renews its leases), and
    its LISTEN connection. ``run()`` until cancelled; ``begin_stopping()`` at SIGTERM,
    ``leave()`` once the calls ended."""

    def __init__(self, db: PgDatabase, lease: Lease, wake: Callable[[], None]) -> None:
        self._db = db
        self.lease = lease
        self._wake = wake
        self.notifications = 0  # received, for tests and metrics
        self.listening = asyncio.Event()  # set while the LISTEN connection is up
        self.listens = 0  # LISTEN connections made: 1, and one more per reconnection
        self.jobs: list[SingleWriter] = []
        self.beats = 0  # heartbeats recorded, for tests
        self.peers: list[Peer] = []  # the nodes alive lately, as of the last heartbeat
        self._session: PgListener | None = None  # the heartbeat's own connection

    @property
    def id(self) -> str:
        return self.lease.node

    @property
    def heartbeat_seconds(self) -> float:
        return self.lease.seconds / 3

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    async def register(self, within: float = REGISTER_SECONDS) -> None:
        """Add this node's row. Tried again for ``within`` seconds: a node restarted
        while the others take a burst of alerts may wait for the write lock longer than
        the lock timeout, and that is no reason to exit (measured by the chaos test,
        tests/e2e/test_nodes_chaos_load.py: "lock timeout" at a restart under 300 alerts)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            try:
                async with self._db.transaction(write=True, what="register this node") as conn:
                    await conn.execute(
                        "INSERT INTO nodes (id, host, pid) VALUES (?, ?, ?)",
                        (self.id, _host(), os.getpid()),
                    )
                break
            except StoreError as exc:
                if loop.time() >= deadline:
                    raise
                log.warning("cannot register this node yet (%s); trying again", exc)
                await asyncio.sleep(LISTEN_RETRY_SECONDS)
        log.info("node %s registered (lease %.1f s)", self.id, self.lease.seconds)

    async def heartbeat(self) -> int:
        """Say this node is alive and renew its leases; returns how many it holds.

        On a connection of its own, and without the store's write lock: on the store's
        connection the heartbeat queued behind every write of a loaded node (its intake,
        its calls' outcomes, the engine's pass), and under a 300-alert burst live nodes
        lost leases they were still working (docs/multi-node.md, "Leases renewed on their
        own rhythm"). The write lock is not needed: the statement only touches rows this
        node leases, and PostgreSQL's row locks order it against a taker's
        ``FOR UPDATE SKIP LOCKED`` (whichever commits first wins; the loser re-checks
        ``lease_node`` and renews nothing, or skips the row)."""
        if self._session is None:
            self._session = await self._db.session("the heartbeat connection")
        try:
            rows = await self._session.fetch(
                # One statement, so one implicit transaction: the node's row and its leases
                # are renewed together or not at all.
                # The row is written again if it went: pruned while this node was frozen
                # for longer than the retention (Store.prune_nodes), its leases need it.
                "WITH beat AS (INSERT INTO nodes (id, host, pid) VALUES (?, ?, ?) "
                f"ON CONFLICT (id) DO UPDATE SET heartbeat_at = {LEASE_NOW} RETURNING id) "
                f"UPDATE alerts SET lease_until = {_interval()} "
                "WHERE lease_node = ? AND engine_active = 1 RETURNING id",
                (self.id, _host(), os.getpid(), self.lease.seconds, self.id),
                self.heartbeat_seconds,
            )
            # The nodes seen alive lately, for /metrics: a dead node stays listed until its
            # heartbeat is PEERS_SHOWN_LEASES leases old, then drops out (it is pruned
            # from the table only a day later, store.Store.prune_nodes).
            peers = await self._session.fetch(
                "SELECT id, host, pid, stopping, "
                "EXTRACT(EPOCH FROM now() - heartbeat_at)::float8 AS age FROM nodes "
                f"WHERE heartbeat_at > now() - make_interval(secs => {PEERS_SHOWN_LEASES} * "
                "CAST(? AS DOUBLE PRECISION)) ORDER BY started_at, id",
                (self.lease.seconds,),
                self.heartbeat_seconds,
            )
        except StoreError:
            self._session.close()
            self._session = None
            raise
        self.peers = [
            Peer(r["id"], r["host"], int(r["pid"]), max(0.0, float(r["age"])), r["stopping"])
            for r in peers
        ]
        self.beats += 1
        return len(rows)

    async def run(self) -> None:
        """The heartbeat and the listener, until cancelled."""
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._beat(), name="node heartbeat")
                group.create_task(self._listen(), name="node listen")
        finally:
            if self._session is not None:
                self._session.close()
                self._session = None

    async def _beat(self) -> None:
        while True:
            try:
                await self.heartbeat()
            except StoreError as exc:
                log.warning("node heartbeat failed: %s", exc)
            # Wake the engine too: leases of other nodes may have expired since its last
            # tick, and taking them is its job (the take-over bound, docs/multi-node.md).
            self._wake()
            await asyncio.sleep(self.heartbeat_seconds)

    async def _listen(self) -> None:
        while True:
            try:
                listener = await self._db.listen(CHANNEL, self._notified)
            except StoreError as exc:
                log.warning("cannot LISTEN for acks from other nodes: %s", exc)
                await asyncio.sleep(LISTEN_RETRY_SECONDS)
                continue
            self.listens += 1
            self.listening.set()
            self._wake()  # whatever was notified while not listening
            try:
                while True:
                    await asyncio.sleep(self.heartbeat_seconds)
                    await listener.probe(self.heartbeat_seconds)
            except StoreError as exc:
                log.warning("%s: connecting again", exc)
            finally:
                self.listening.clear()
                listener.close()

    def single_writer(
        self, name: str, job: Callable[[], Coroutine[Any, Any, None]]
    ) -> SingleWriter:
        """``job`` run on one node of the database at a time, handed over within a
        heartbeat when its node dies (docs/multi-node.md, "Single-writer jobs")."""
        writer = SingleWriter(self._db, name, job, self.heartbeat_seconds)
        self.jobs.append(writer)
        return writer

    def _notified(self, payload: str) -> None:
        self.notifications += 1
        # Never parsed (anyone with the database's credentials may NOTIFY): compared only,
        # to skip this node's own "expired leases remain" (store.cluster._adopt_expired).
        if payload != self.id:
            self._wake()

    async def begin_stopping(self) -> None:
        """At SIGTERM: take no new alerts, and hand over at once those without a call of
        this node in flight (another node picks them up at its next tick)."""
        self.lease.stopping = True
        async with self._db.transaction(write=True, what="hand over leases") as conn:
            await conn.execute("UPDATE nodes SET stopping = TRUE WHERE id = ?", (self.id,))
            rows = await conn.execute_fetchall(
                "UPDATE alerts SET lease_node = NULL, lease_until = NULL "
                "WHERE lease_node = ? AND NOT EXISTS (SELECT 1 FROM attempts WHERE "
                "alert_id = alerts.id AND state = 'in_flight' AND node = ?) RETURNING id",
                (self.id, self.id),
            )
            if rows:
                await conn.execute("SELECT pg_notify(?, '')", (CHANNEL,))
        log.info("node %s stopping: %d alert(s) handed over", self.id, len(rows))

    async def leave(self) -> None:
        """After the calls ended: release every lease (the others take them at once)."""
        self.lease.stopping = True
        async with self._db.transaction(write=True, what="release leases") as conn:
            await conn.execute("UPDATE nodes SET stopping = TRUE WHERE id = ?", (self.id,))
            await conn.execute(
                "UPDATE alerts SET lease_node = NULL, lease_until = NULL WHERE lease_node = ?",
                (self.id,),
            )
            await conn.execute("SELECT pg_notify(?, '')", (CHANNEL,))
        log.info("node %s left: its leases are released", self.id)


def _host() -> str:
    return socket.gethostname()[:255]


def job_key(name: str) -> int:
    """The advisory lock key of a single-writer job: a signed 64-bit number drawn from
    its name (the keys of ``store.pg`` spell words; these need only differ from them)."""
    digest = hashlib.blake2b(f"voipalert job {name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class SingleWriter:
    """Run ``job`` only while this node holds the job's lock (docs/multi-node.md,
    "Single-writer jobs"). The lock is a session-level ``pg_try_advisory_lock`` on a
    connection of its own: PostgreSQL releases it when that connection ends, so the
    holder's death hands the job over; the nodes without it try again every
    ``every`` seconds. The holder probes its connection as often and cancels its job
    the moment the probe fails (it may have lost the lock): the job stops here before
    the server lets another node take it."""

    def __init__(
        self,
        db: PgDatabase,
        name: str,
        job: Callable[[], Coroutine[Any, Any, None]],
        every: float,
    ) -> None:
        self._db = db
        self.name = name
        self._job = job
        self.every = every
        self.key = job_key(name)
        self.held = asyncio.Event()  # set while this node runs the job
        self.takes = 0  # times this node took the lock

    async def run(self) -> None:
        while True:
            try:
                # Quiet for 3 probe periods: the holder is gone (or cut off), and the
                # server ends its session, which releases the lock.
                lock = await self._db.try_job_lock(self.key, idle_seconds=3 * self.every)
            except StoreError as exc:
                log.warning("job %s: cannot try its lock: %s", self.name, exc)
                lock = None
            if lock is None:
                await asyncio.sleep(self.every)
                continue
            self.takes += 1
            self.held.set()
            log.info("job %s runs on this node (it holds the job's lock)", self.name)
            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(self._job(), name=self.name)
                    group.create_task(self._hold(lock), name=f"{self.name} lock")
            except* StoreError as errors:
                log.warning("job %s stopped on this node: %s", self.name, errors.exceptions[0])
            finally:
                self.held.clear()
                lock.close()

    async def _hold(self, lock: PgJobLock) -> None:
        while True:
            with suppress(TimeoutError):
                async with asyncio.timeout(self.every):
                    await lock.lost.wait()
            await lock.probe(self.every)  # raises once the connection is gone
