"""The escalation engine: a level-triggered loop over the store.

Each tick loads every alert that still needs work, asks the pure planner what to do at
``now``, and does it: persist a step change, commit each call's intent (a unique key) and
only then start the call, cancel calls of alerts handled meanwhile, close exhausted alerts.
``wake()`` only shortens the wait before the next tick, so a lost wake-up costs at most
``idle_poll_seconds``, and a restart re-plans from the database (GoAlert's model;
docs/architecture.md §10).

Calls run as tasks of the engine's TaskGroup, at most ``max_concurrent_calls`` dialling at
once; a call task never raises (a notifier bug is recorded as FAILED). Each tick runs under
``asyncio.timeout``; one alert that fails to reconcile is logged and the others go on; a tick
slower than ``slow_tick_seconds`` is logged (docs/architecture.md §10).

At start-up, attempts left in flight by a dead process become ``interrupted`` (never
re-dialled under the same key) and their alerts are re-planned; attempts committed but never
dialled (``pending``) are dialled now, under their own key.

A call is never cancelled as a task: the engine asks it to stop (``StopRequest``, idempotent:
an ack, a resolve and a shutdown may all ask at once), the call says its last phrase, hangs
up, releases its media and returns a result with the facts (answered or not, SIP status,
when it ended), which is stored on the attempt — also on one already recorded ``cancelled``.
``shutdown()`` asks every call to end and waits for them, so a key pressed just before a
SIGTERM still acknowledges.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from voipalert.clock import LOOP_SLICE_SECONDS, Clock, LoopSlices
from voipalert.domain.alert import (
    Alert,
    Attempt,
    AttemptId,
    AttemptOutcome,
    AttemptResult,
    AttemptState,
    Position,
)
from voipalert.domain.policy import (
    Action,
    AdvanceStep,
    AwaitCalls,
    CancelCalls,
    CloseUnacknowledged,
    PlaceCall,
    Settled,
    WaitUntil,
    plan,
)
from voipalert.domain.rota import NotifyMethod, Rota
from voipalert.logs import log_context
from voipalert.notify import (
    AckMenu,
    Notification,
    Notifier,
    NotifyResult,
    StopReason,
    StopRequest,
)
from voipalert.store.cluster import LineBudget
from voipalert.store.errors import DatabaseUnusable
from voipalert.store.ports import EngineStore

log = logging.getLogger("voipalert.engine")

MIN_WAIT_SECONDS: Final = 0.001
ERROR_BACKOFF_SECONDS: Final = 1.0
SHUTDOWN_GRACE_SECONDS: Final = 20.0  # under the unit's TimeoutStopSec
# A pass over the held alerts stops after this long and the next one starts at once, with
# a fresh snapshot (new leases taken, acks seen): docs/multi-node.md, "A pass under load".
PASS_BUDGET_SECONDS: Final = 2.0
_NEVER_PLANNED: Final = datetime.min.replace(tzinfo=UTC)
# An escalation whose next step is due later than this (a usual ring timeout) is not
# counted against the new alerts a snapshot may take (LineBudget, docs/multi-node.md):
# a new alert's call started now delays that step by its length less the wait at worst,
# where leaving the new alert untaken delays it until some line frees, the line the
# waiting step will take included.
LINE_WANTED_WITHIN_SECONDS: Final = 30.0


@dataclass(frozen=True, slots=True)
class EngineConfig:
    max_concurrent_calls: int = 8  # the PBX's channel limit is the real bound
    tick_timeout_seconds: float = 30.0
    slow_tick_seconds: float = 2.0
    idle_poll_seconds: float = 30.0  # longest wait between ticks without a wake-up
    mass_ring_timeout_seconds: int = 45
    ack_menu: AckMenu = field(default_factory=AckMenu)
    loop_slice_seconds: float = LOOP_SLICE_SECONDS
    """Longest stretch of a tick's planning between two yields to the event loop."""
    pass_budget_seconds: float = PASS_BUDGET_SECONDS
    """A pass stops reconciling after this long; the rest goes on in the next pass."""


@dataclass(slots=True)
class TickStats:
    """Where the last pass's time went (the slow-pass log line, tests, profiling): the
    snapshot (a write transaction on a node of several), the planning (CPU on the loop),
    and the rest of the reconciling, which is the store's writes and their waits."""

    alerts: int = 0  # in the snapshot
    planned: int = 0  # reconciled this pass
    writes: int = 0  # actions that commit a transaction (an intent, a step, a cancel...)
    snapshot_seconds: float = 0.0
    plan_seconds: float = 0.0
    write_seconds: float = 0.0
    cut: bool = False  # the pass ran out of its budget; the rest comes next pass

    def __str__(self) -> str:
        return (
            f"{self.planned}/{self.alerts} alert(s), snapshot {self.snapshot_seconds:.2f} s, "
            f"planning {self.plan_seconds:.2f} s, {self.writes} write(s) "
            f"{self.write_seconds:.2f} s" + (", cut at its budget" if self.cut else "")
        )


class CallLines:
    """The engine's call lines (PBX channels): a counting semaphore whose waiters are
    served by priority, then in the order they came. ``asyncio.Semaphore`` serves its
    waiters first come, first served: an escalation adopted from a dead node, planned
    after this node's own calls queued for a line, would wait behind all of them, though
    it was under way first (docs/multi-node.md, "How work is claimed")."""

    ADOPTED: Final = 0  # a call of an escalation just adopted from an expired lease
    NORMAL: Final = 1

    def __init__(self, lines: int) -> None:
        self._free = lines
        self._order = itertools.count()
        # (priority, arrival, waiter); a waiter cancelled while queued stays until popped.
        # Invariant: no live waiter while a line is free (a release hands it on at once).
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []

    @property
    def waiting(self) -> int:
        return sum(not w.done() for _, _, w in self._waiters)

    async def acquire(self, priority: int = NORMAL) -> None:
        if self._free > 0:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._order), waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a line, then cancelled: pass it on
            raise

    def release(self) -> None:
        self._free += 1
        while self._waiters and self._free > 0:
            _, _, waiter = heapq.heappop(self._waiters)
            if not waiter.done():
                self._free -= 1
                waiter.set_result(None)

    @asynccontextmanager
    async def line(self, priority: int = NORMAL) -> AsyncIterator[None]:
        await self.acquire(priority)
        try:
            yield
        finally:
            self.release()


@dataclass(slots=True)
class _Applied:
    position: Position
    due: datetime | None = None
    cancelled: set[AttemptId] = field(default_factory=set)


@dataclass(slots=True)
class _Running:
    """A call in progress: its task and the one way to ask it to end."""

    task: asyncio.Task[None]
    stop: StopRequest
    alert: int


def alert_fields(alert: Alert) -> dict[str, str]:
    """What the notifier's templates may say about an alert (the words are theirs)."""
    fields = {k: str(v) for k, v in alert.fields.items()}
    fields |= {
        "alert_id": str(alert.id),
        "summary": alert.summary,
        "severity": alert.severity.value,
        "source": alert.source,
    }
    return fields


class Engine:
    """Run with ``await engine.run()`` inside the application's TaskGroup; stop by
    cancelling that task. Call ``wake()`` after storing or changing an alert."""

    def __init__(
        self,
        store: EngineStore,
        notifier: Notifier,
        clock: Clock,
        config: EngineConfig | None = None,
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._clock = clock
        self._config = config or EngineConfig()
        self._wake = asyncio.Event()
        self._slots = CallLines(self._config.max_concurrent_calls)
        # Alerts adopted from an expired lease and not reconciled here yet: their calls
        # go first in the line queue (CallLines).
        self._adopted: set[int] = set()
        self._calls: dict[AttemptId, _Running] = {}
        self._stopping = False
        self._group: asyncio.TaskGroup | None = None
        self._rota: tuple[tuple[int, int], Rota] | None = None
        self.ticks = 0  # completed ticks, for tests and metrics
        self._database_down = False  # the last tick found no usable database
        self.last_tick_yields = 0  # how often the last tick gave the loop back
        self.last_tick = TickStats()  # where the last pass's time went
        self._due: dict[int, datetime] = {}  # per alert: when its last plan said it is due

    def wake(self) -> None:
        """Tick again now rather than at the next planned time."""
        self._wake.set()

    @property
    def calls_in_progress(self) -> int:
        return len(self._calls)

    def free_lines(self) -> int:
        """Calls this engine could start now (``max_concurrent_calls`` less the calls in
        progress, those waiting for a line included): a node of several takes no more new
        alerts than this (store.cluster)."""
        return max(0, self._config.max_concurrent_calls - len(self._calls))

    def line_budget(self) -> LineBudget:
        """The free lines, and the held alerts planned for later than
        ``LINE_WANTED_WITHIN_SECONDS`` from now: a snapshot's take counts the others
        without a call as wanting a line (store.cluster._take_limit). Without it a node
        whose lines were all "wanted" by escalations waiting minutes for their repeat took
        no new alert at all, however idle its lines."""
        soon = self._clock.now_utc() + timedelta(seconds=LINE_WANTED_WITHIN_SECONDS)
        later = frozenset(alert for alert, due in self._due.items() if due > soon)
        return LineBudget(self.free_lines(), later)

    async def shutdown(self, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Start no more calls; ask every call in progress to say goodbye and hang up, and
        wait up to ``grace`` seconds for their results to be stored. Then cancel ``run``.
        A call that acknowledged is stored as such; the others become ``interrupted``
        and are re-planned at the next start."""
        self._stopping = True
        running = list(self._calls.values())
        for call in running:
            call.stop.request(StopReason.SHUTDOWN)
        if running:
            log.info("waiting for %d call(s) to end", len(running))
            _, late = await asyncio.wait([c.task for c in running], timeout=grace)
            if late:
                log.warning("%d call(s) still running after %.0f s: cut", len(late), grace)

    async def run(self) -> None:
        interrupted = await self._store.interrupt_in_flight()
        for attempt in interrupted:
            log.warning("call %s was in flight when the process ended: interrupted", attempt.key)
        async with asyncio.TaskGroup() as group:
            self._group = group
            try:
                while True:
                    self._wake.clear()
                    due = await self._guarded_tick()
                    await self._sleep_until(due)
            finally:
                self._group = None

    async def _guarded_tick(self) -> datetime | None:
        started = self._clock.monotonic()
        due: datetime | None
        try:
            async with asyncio.timeout(self._config.tick_timeout_seconds):
                due = await self.tick()
        except TimeoutError:
            log.error("engine tick exceeded %.1f s: abandoned", self._config.tick_timeout_seconds)
            due = self._clock.now_utc() + timedelta(seconds=ERROR_BACKOFF_SECONDS)
        except DatabaseUnusable as exc:
            # A database outage (a PostgreSQL failover, docs/database-failover.md): the store
            # logs it once and every 30 s; a traceback per tick would bury that line.
            if not self._database_down:
                log.warning("engine waits for the database: %s", exc.problem)
            self._database_down = True
            due = self._clock.now_utc() + timedelta(seconds=ERROR_BACKOFF_SECONDS)
        except Exception:
            log.exception("engine tick failed")
            due = self._clock.now_utc() + timedelta(seconds=ERROR_BACKOFF_SECONDS)
        else:
            if self._database_down:
                log.warning("engine: the database is back")
                self._database_down = False
        self.ticks += 1
        elapsed = self._clock.monotonic() - started
        if elapsed > self._config.slow_tick_seconds:
            log.warning(
                "slow engine tick: %.2f s (%s)", elapsed, self.last_tick,
                extra={"tick_seconds": elapsed},
            )  # fmt: skip
        return due

    async def _sleep_until(self, due: datetime | None) -> None:
        timeout = self._config.idle_poll_seconds
        if due is not None:
            remaining = (due - self._clock.now_utc()).total_seconds()
            timeout = min(timeout, max(remaining, MIN_WAIT_SECONDS))
        try:
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        except TimeoutError:
            pass

    async def _current_rota(self) -> Rota:
        # Reloaded when the rota is imported or a live source's copy changes; schedules
        # with a source carry its last good copy (docs/rota-sources.md).
        version = await self._store.rota_key()
        if self._rota is None or self._rota[0] != version:
            self._rota = (version, (await self._store.load_rota_with_feeds())[0])
        return self._rota[1]

    async def tick(self) -> datetime | None:
        """One reconciliation pass; returns when the next one is due (None: on a wake-up).

        The pass is bounded by ``pass_budget_seconds``: the alerts most in need go first
        (those this engine has not planned yet, such as the ones a node just took over from
        a dead one, then by the time their plan said they were due), and once the budget
        is spent the rest wait for the next pass, which starts at once. Under a burst each
        write waits for the database's write lock, and a pass over every held alert grew
        past its 30 s timeout (docs/multi-node.md, "A pass under load")."""
        now = self._clock.now_utc()
        started = self._clock.monotonic()
        stats = TickStats()
        self.last_tick = stats
        rota = await self._current_rota()
        due: datetime | None = None
        snapshot = await self._store.engine_snapshot()
        stats.alerts = len(snapshot)
        stats.snapshot_seconds = self._clock.monotonic() - started
        held: set[int] = {alert.id for alert, _ in snapshot}
        self._adopted = (self._adopted | self._store.adopted_alerts()) & held
        self._stop_unheld(held)
        self._due = {k: v for k, v in self._due.items() if k in held}
        # Stable: the store lists the alerts it just took first, and an alert never planned
        # here has no due time yet, so those come before every known one.
        snapshot.sort(key=lambda item: self._due.get(item[0].id) or _NEVER_PLANNED)
        slices = LoopSlices(self._config.loop_slice_seconds)
        # The budget is for the reconciling; at least twice the snapshot's time, so that a
        # large snapshot (thousands of open alerts on one node) is never most of the work.
        reconciling = max(self._config.pass_budget_seconds, 2 * stats.snapshot_seconds)
        deadline = started + stats.snapshot_seconds + reconciling
        for alert, attempts in snapshot:
            if stats.planned and self._clock.monotonic() >= deadline:
                stats.cut = True
                due = now  # the rest now, in a new pass (after a new snapshot)
                self.wake()
                break
            # Planning is CPU on the loop (about 0.2 ms an alert): an alert storm must not
            # hold every call's audio for the whole pass.
            await slices.pause()
            stats.planned += 1
            with log_context(alert_id=alert.id):
                try:
                    wait = await self._reconcile(alert, attempts, rota, now, stats)
                except DatabaseUnusable:
                    raise  # no database: no use trying the other alerts (one line, above)
                except Exception:
                    log.exception("alert %s could not be reconciled; the others go on", alert.id)
                    wait = now + timedelta(seconds=ERROR_BACKOFF_SECONDS)
            self._due[alert.id] = wait or now
            self._adopted.discard(alert.id)  # its first plan here is made: calls now wait in turn
            if wait is not None and (due is None or wait < due):
                due = wait
        self.last_tick_yields = slices.yields
        return due

    def _stop_unheld(self, held: set[int]) -> None:
        """A call for an alert the snapshot no longer holds: on one of several nodes, its
        lease went to another node (this one stopped renewing it in time), which has
        interrupted the attempt and re-plans; this call must end (docs/multi-node.md). With
        one engine it cannot happen: an alert with a call in progress stays in the
        snapshot until its attempt is recorded."""
        for running in self._calls.values():
            if running.alert not in held and running.stop.request(StopReason.HANDLED):
                log.warning("call for alert %s: its lease is lost, asked to stop", running.alert)

    async def _reconcile(
        self, alert: Alert, attempts: Sequence[Attempt], rota: Rota, now: datetime,
        stats: TickStats,
    ) -> datetime | None:  # fmt: skip
        planning = self._clock.monotonic()
        actions = plan(
            alert,
            rota,
            attempts,
            now,
            mass_ring_timeout_seconds=self._config.mass_ring_timeout_seconds,
        )
        writing = self._clock.monotonic()
        stats.plan_seconds += writing - planning
        stats.writes += sum(not isinstance(a, WaitUntil | AwaitCalls) for a in actions)
        try:
            return await self._apply_planned(alert, attempts, actions)
        finally:
            stats.write_seconds += self._clock.monotonic() - writing

    async def _apply_planned(
        self, alert: Alert, attempts: Sequence[Attempt], actions: Sequence[Action]
    ) -> datetime | None:
        applied = await self._apply(alert, actions)
        for attempt in attempts:
            running = self._calls.get(attempt.id)
            if running is not None and attempt.state is AttemptState.CANCELLED:
                # Recorded cancelled (by an ack or resolve from outside, or a tick that timed
                # out): asking again is harmless, the first reason stands.
                running.stop.request(StopReason.HANDLED)
            if running is not None or attempt.id in applied.cancelled:
                continue
            if attempt.state is AttemptState.PENDING:
                self._start_call(alert, attempt)  # committed before a crash, never dialled
            elif attempt.state is AttemptState.IN_FLIGHT:
                # No task of ours owns it: its task died without recording an outcome.
                await self._store.interrupt_attempt(attempt.id)
                self.wake()
        return applied.due

    async def _apply(self, alert: Alert, actions: Sequence[Action]) -> _Applied:
        applied = _Applied(alert.position)
        for action in actions:
            match action:
                case AdvanceStep():
                    if not await self._advance(alert, action, applied):
                        break
                case PlaceCall():
                    await self._place(alert, action)
                case CancelCalls():
                    await self._cancel(action, applied)
                case WaitUntil(at):
                    applied.due = at
                case CloseUnacknowledged(reason):
                    await self._close(alert, reason)
                case Settled():
                    await self._store.settle(alert.id)
                case AwaitCalls():
                    pass
        return applied

    async def _advance(self, alert: Alert, action: AdvanceStep, applied: _Applied) -> bool:
        to = action.position
        if not await self._store.advance_escalation(alert.id, applied.position, to, action.reason):
            self.wake()  # changed under us (an ack, a resolve): plan again
            return False
        log.info("alert %s: pass %d step %d (%s)", alert.id, to.repeat, to.step, action.reason)
        applied.position = to
        return True

    async def _place(self, alert: Alert, action: PlaceCall) -> None:
        if self._stopping:
            return  # planned again at the next start
        # The intent is committed before the dial; an existing key means it was made already.
        attempt = await self._store.record_intent(action)
        if attempt is not None:
            self._start_call(alert, attempt)

    async def _close(self, alert: Alert, reason: str) -> None:
        if await self._store.close_unacknowledged(alert.id, reason):
            log.warning("alert %s closed unacknowledged: %s", alert.id, reason)
            self.wake()

    async def _cancel(self, action: CancelCalls, applied: _Applied) -> None:
        # Recorded first, so the cancelled task's late result cannot overwrite it.
        await self._store.cancel_attempts(list(action.attempts), action.reason)
        for attempt_id in action.attempts:
            applied.cancelled.add(attempt_id)
            running = self._calls.get(attempt_id)
            if running is not None and running.stop.request(StopReason.HANDLED):
                log.info("call %s: asked to stop (%s)", attempt_id, action.reason)

    def _start_call(self, alert: Alert, attempt: Attempt) -> None:
        if self._group is None:
            raise RuntimeError("calls are started only while Engine.run() is running")
        if self._stopping:
            return
        notification = Notification(
            alert_id=alert.id,
            attempt_id=attempt.id,
            attempt_key=str(attempt.key),
            person=attempt.key.person,
            contact=attempt.contact,
            language=attempt.language,
            fields=alert_fields(alert),
            menu=self._config.ack_menu,
            ring_timeout_seconds=attempt.ring_timeout_seconds,
            method=attempt.method,
        )
        stop = StopRequest()
        priority = CallLines.ADOPTED if alert.id in self._adopted else CallLines.NORMAL
        task = self._group.create_task(
            self._call(attempt, notification, stop, priority), name=f"call {attempt.key}"
        )
        self._calls[attempt.id] = _Running(task, stop, alert.id)

    async def _call(
        self, attempt: Attempt, notification: Notification, stop: StopRequest, priority: int
    ) -> None:
        try:
            with log_context(
                alert_id=attempt.key.alert, call_id=str(attempt.key), person=attempt.key.person
            ):
                # A slot is a PBX channel: texts and e-mails use none and never wait for one.
                slot: AbstractAsyncContextManager[None] = nullcontext()
                if attempt.method is NotifyMethod.CALL:
                    slot = self._slots.line(priority)
                async with slot:
                    if stop.reason is not None or not await self._store.start_attempt(attempt.id):
                        return
                    started = self._clock.now_utc()
                    log.info(
                        "%s %s (%s)", "calling" if attempt.method is NotifyMethod.CALL
                        else f"sending a {attempt.method.value} to", attempt.key.person,
                        attempt.contact.kind.value, extra={"person": attempt.key.person},
                    )  # fmt: skip
                    try:
                        result = await self._notifier.notify(notification, stop)
                    except Exception as exc:
                        log.exception("notifier failed")
                        result = NotifyResult(
                            AttemptOutcome.FAILED, detail=f"notifier error: {exc!r}"
                        )
                # The call has hung up: its line is free now. Recording the outcome is a
                # commit that waits behind the other calls' writes under load (0.6 s at 30
                # calls on 2 busy cores), and holding the line meanwhile left every channel
                # idle that long between calls of a mass alert (docs/capacity.md).
                await self._record(attempt, result, started, stop.reason)
        except Exception:
            # The store failed: the attempt stays in flight and the next tick interrupts it.
            log.exception("call %s: outcome not recorded", attempt.key)
        finally:
            self._calls.pop(attempt.id, None)
            self.wake()

    async def _record(
        self, attempt: Attempt, result: NotifyResult, started: datetime, stopped: StopReason | None
    ) -> None:
        outcome = self._result(result, started)
        log.info(
            "call to %s ended: %s (SIP %s, %.1f s)%s", attempt.key.person, result.outcome.value,
            result.sip_status, (outcome.ended_at - started).total_seconds(),
            f", stopped: {stopped.value}" if stopped else "",
            extra={"person": attempt.key.person, "outcome": result.outcome.value,
                   "sip_status": result.sip_status},
        )  # fmt: skip
        if stopped is StopReason.SHUTDOWN and result.outcome is not AttemptOutcome.ACKNOWLEDGED:
            await self._store.interrupt_attempt(attempt.id, outcome)
        else:
            await self._store.finish_attempt(attempt.id, outcome)

    def _result(self, result: NotifyResult, started: datetime) -> AttemptResult:
        answered = None
        # The call's durations count from its dial, which a turn under the call rate (or a
        # failed trunk) may have put after the attempt's start.
        dialled = started + timedelta(seconds=result.dial_delay_seconds)
        if result.ring_seconds is not None and result.talk_seconds is not None:
            answered = dialled + timedelta(seconds=result.ring_seconds)
        ended = self._clock.now_utc()
        if result.duration_seconds is not None:
            ended = dialled + timedelta(seconds=result.duration_seconds)
        return AttemptResult(
            outcome=result.outcome,
            ended_at=ended,
            sip_status=result.sip_status,
            sip_reason=result.sip_reason,
            digit=result.digit,
            answered_at=answered,
            detail=result.detail,
            quality=asdict(result.quality) if result.quality is not None else None,
        )
