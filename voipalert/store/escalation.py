"""The engine's statements: load what needs work, commit call intents before dialling,
record outcomes, move escalations on, and recover after a crash.

Every change is conditional on the state the engine planned from (``WHERE state =
'pending'``, ``WHERE esc_step = ?``...), so an ack or resolve that lands between the plan and
the write wins, and the engine simply re-plans.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from voipalert.clock import Clock, LoopSlices
from voipalert.domain.alert import (
    Alert,
    AlertId,
    Attempt,
    AttemptId,
    AttemptOutcome,
    AttemptResult,
    Position,
)
from voipalert.domain.policy import PlaceCall
from voipalert.store import alert_sql
from voipalert.store.alert_sql import ALERT_SELECT, WANTS_CALLS, Note, quality_json, update_audited
from voipalert.store.cluster import Lease, leased_snapshot
from voipalert.store.db import to_db
from voipalert.store.sql import Conn, Database, Row

log = logging.getLogger("voipalert.store")


class EscalationStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        # Set when this process is one of several nodes on a PostgreSQL database: the
        # engine then works only the alerts it holds a lease on (store.cluster).
        self._lease: Lease | None = None
        self._adopted: frozenset[int] = frozenset()

    def adopted_alerts(self) -> frozenset[int]:
        """The alerts the last snapshot adopted from expired leases (another node's
        escalations, under way): their calls go first in the engine's line queue. Always
        empty on one engine."""
        return self._adopted

    async def engine_snapshot(self) -> list[tuple[Alert, list[Attempt]]]:
        """Every alert the engine still has work for, with all its attempts (one read).
        On a node of several: only the alerts whose lease it holds or could take."""
        if self._lease is not None:
            return await self._leased_snapshot(self._lease)
        async with self._db.transaction(write=False) as conn:
            alert_rows = await conn.execute_fetchall(
                f"{ALERT_SELECT} WHERE a.engine_active = 1 ORDER BY a.id"
            )
            rows = await conn.execute_fetchall(
                "SELECT * FROM attempts WHERE alert_id IN "
                "(SELECT id FROM alerts WHERE engine_active = 1) ORDER BY alert_id, id"
            )
        return await _snapshot_objects(alert_rows, rows)

    async def _leased_snapshot(self, lease: Lease) -> list[tuple[Alert, list[Attempt]]]:
        now = self._clock.now_utc()
        # A write transaction: taking leases is a write, and under the write lock the two
        # reads after it see one state, as the read transaction above does.
        async with self._db.transaction(write=True, what="engine snapshot") as conn:
            got = await leased_snapshot(conn, lease, now)
        self._adopted = frozenset(got.adopted)
        for attempt_id in got.interrupted:
            log.warning("attempt %s was in flight on a node that died: interrupted", attempt_id)
        snapshot = await _snapshot_objects(got.alerts, got.attempts)
        # The alerts just taken first: the engine reconciles in this order (before the ones
        # it has plans for), so a take-over is dialled before the rest is re-planned.
        taken = set(got.taken)
        return sorted(snapshot, key=lambda item: item[0].id not in taken)

    async def record_intent(self, call: PlaceCall) -> Attempt | None:
        """Commit the intent to make ``call`` (state pending). None when that key exists
        already or the alert no longer wants calls: then nothing may be dialled."""
        now = self._clock.now_utc()
        key = call.key
        async with self._db.transaction(write=True) as conn:
            rows = list(
                await conn.execute_fetchall(
                    "INSERT INTO attempts (alert_id, esc_repeat, esc_step, person_name, "
                    "attempt_no, person_id, contact_index, contact_kind, contact_address, "
                    "language, ring_timeout_seconds, state, created_at, method, rule_index) "
                    # Typed: PostgreSQL cannot infer a bare parameter's type in a SELECT list.
                    "SELECT CAST(? AS INTEGER), CAST(? AS INTEGER), CAST(? AS INTEGER), "
                    "CAST(? AS TEXT), CAST(? AS INTEGER), (SELECT id FROM people WHERE name = ?), "
                    "CAST(? AS INTEGER), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), "
                    "CAST(? AS INTEGER), 'pending', CAST(? AS TEXT), CAST(? AS TEXT), "
                    "CAST(? AS INTEGER) WHERE EXISTS "
                    f"(SELECT 1 FROM alerts WHERE id = ? AND {WANTS_CALLS}) "
                    "ON CONFLICT DO NOTHING RETURNING *",
                    (
                        key.alert,
                        key.repeat,
                        key.step,
                        key.person,
                        key.number,
                        key.person,
                        call.contact_index,
                        call.contact.kind.value,
                        call.contact.address,
                        call.person.language,
                        call.ring_timeout_seconds,
                        to_db(now),
                        call.method.value,
                        call.rule,
                        key.alert,
                    ),
                )
            )
            if not rows:
                return None
            attempt = alert_sql.attempt_from_row(rows[0])
            await alert_sql.audit(
                conn,
                now,
                "engine",
                "attempt.intent",
                alert_id=key.alert,
                attempt_id=attempt.id,
                key=str(key),
            )
            return attempt

    async def start_attempt(self, attempt_id: AttemptId) -> bool:
        """pending → in_flight, just before dialling; False means do not dial (it was
        cancelled, or its alert was handled meanwhile)."""
        now = self._clock.now_utc()
        lease = self._lease
        # On a node of several, only while this node holds the alert's lease: an attempt
        # is dialled by the lease holder, once (docs/multi-node.md).
        held = "" if lease is None else " AND alerts.lease_node = ?"
        node: tuple[str, ...] = () if lease is None else (lease.node,)
        async with self._db.transaction(write=True) as conn:
            rows = await update_audited(
                conn,
                "UPDATE attempts SET state = 'in_flight', started_at = ? "
                "WHERE id = ? AND state = 'pending' AND EXISTS "
                f"(SELECT 1 FROM alerts WHERE alerts.id = attempts.alert_id AND {WANTS_CALLS}"
                f"{held}) RETURNING alert_id",
                (to_db(now), attempt_id, *node),
                now,
                lambda row: Note("engine", "attempt.dialling", row["alert_id"], attempt_id),
            )
            if rows and lease is not None:
                await conn.execute(
                    "UPDATE attempts SET node = ? WHERE id = ?", (lease.node, attempt_id)
                )
            return bool(rows)

    async def finish_attempt(self, attempt_id: AttemptId, result: AttemptResult) -> bool:
        """in_flight → done with ``result``. A key press acknowledges the alert through this
        attempt (and cancels calls not dialled yet). Returns whether it acknowledged.

        An attempt already recorded ``cancelled`` (the alert was handled elsewhere while the
        call went on) keeps its outcome; the call's facts (answered, SIP status, when it
        really ended) are filled in, once."""
        now = self._clock.now_utc()
        async with self._db.transaction(write=True) as conn:
            ended = {
                "outcome": result.outcome.value,
                "sip_status": result.sip_status,
                "digit": result.digit,
            }
            rows = await update_audited(
                conn,
                "UPDATE attempts SET state = 'done', outcome = ?, sip_status = ?, "
                "sip_reason = ?, digit = ?, answered_at = ?, ended_at = ?, detail = ?, "
                "quality = ? "
                "WHERE id = ? AND state = 'in_flight' RETURNING alert_id, person_name",
                (
                    result.outcome.value,
                    result.sip_status,
                    result.sip_reason,
                    result.digit,
                    to_db(result.answered_at) if result.answered_at else None,
                    to_db(result.ended_at),
                    result.detail,
                    quality_json(result.quality),
                    attempt_id,
                ),
                now,
                lambda row: Note("engine", "attempt.ended", row["alert_id"], attempt_id, ended),
            )
            if not rows:
                await _fill_cancelled(conn, attempt_id, result)
                return False
            if result.outcome is not AttemptOutcome.ACKNOWLEDGED:
                return False
            # The engine runs this itself: no need to wake it.
            cancelled = await alert_sql.acknowledge(
                conn, now, rows[0]["alert_id"], rows[0]["person_name"], via="call",
                attempt_id=attempt_id, wake_engine=False,
            )  # fmt: skip
            return cancelled is not None

    async def cancel_attempts(self, ids: list[AttemptId], reason: str) -> list[AttemptId]:
        """Mark live attempts cancelled (their call tasks are cancelled by the engine)."""
        async with self._db.transaction(write=True) as conn:
            return await alert_sql.cancel_live(conn, ids, self._clock.now_utc(), reason)

    async def interrupt_in_flight(self) -> list[Attempt]:
        """At start-up: attempts a dead process left in flight become interrupted (they may
        have rung; they are never dialled again) and their alerts are re-evaluated.

        Not on a node of several: the other nodes' calls are theirs, and a dead node's
        are interrupted by the node that takes its leases over (store.cluster)."""
        if self._lease is not None:
            return []
        now = self._clock.now_utc()
        async with self._db.transaction(write=True) as conn:
            rows = await update_audited(
                conn,
                "UPDATE attempts SET state = 'interrupted', ended_at = ?, "
                "detail = 'the process ended during the call' "
                "WHERE state = 'in_flight' RETURNING *",
                (to_db(now),),
                now,
                lambda row: Note("engine", "attempt.interrupted", row["alert_id"], row["id"]),
            )
            attempts = [alert_sql.attempt_from_row(r) for r in rows]
            await conn.execute(
                f"UPDATE alerts SET engine_active = 1 WHERE id IN {conn.dialect.json_ints}",
                (json.dumps(sorted({a.key.alert for a in attempts})),),
            )
            return attempts

    async def interrupt_attempt(
        self, attempt_id: AttemptId, facts: AttemptResult | None = None
    ) -> bool:
        """An attempt in flight that no running call owns any more (``facts`` None), or a
        call ended by a shutdown without a key (``facts``: what the call saw): interrupted,
        so the alert is re-planned. An attempt already cancelled keeps its outcome and gets
        the facts."""
        now = self._clock.now_utc()
        detail = "the call task ended without an outcome"
        if facts is not None:
            detail = f"voipalert stopped during the call ({facts.detail or 'no detail'})"
        async with self._db.transaction(write=True) as conn:
            rows = await update_audited(
                conn,
                "UPDATE attempts SET state = 'interrupted', ended_at = ?, detail = ?, "
                "sip_status = ?, sip_reason = ?, answered_at = ? "
                "WHERE id = ? AND state = 'in_flight' RETURNING alert_id",
                (
                    to_db(facts.ended_at if facts else now),
                    detail,
                    facts.sip_status if facts else None,
                    facts.sip_reason if facts else None,
                    to_db(facts.answered_at) if facts and facts.answered_at else None,
                    attempt_id,
                ),
                now,
                lambda row: Note("engine", "attempt.interrupted", row["alert_id"], attempt_id),
            )
            if not rows and facts is not None:
                await _fill_cancelled(conn, attempt_id, facts)
            return bool(rows)

    async def advance_escalation(
        self, alert_id: AlertId, expected: Position, to: Position, reason: str
    ) -> bool:
        """Move a triggered alert to the next step (or pass), if it is still where the plan
        saw it."""
        now = self._clock.now_utc()
        async with self._db.transaction(write=True) as conn:
            moved = {
                "repeat": to.repeat,
                "step": to.step,
                "since": to_db(to.since),
                "reason": reason,
            }
            rows = await update_audited(
                conn,
                "UPDATE alerts SET esc_repeat = ?, esc_step = ?, esc_since = ? "
                "WHERE id = ? AND status = 'triggered' "
                "AND esc_repeat = ? AND esc_step = ? AND esc_since = ? "
                "RETURNING id",
                (
                    to.repeat,
                    to.step,
                    to_db(to.since),
                    alert_id,
                    expected.repeat,
                    expected.step,
                    to_db(expected.since),
                ),
                now,
                lambda _: Note("engine", "escalation.advanced", alert_id, detail=moved),
            )
            return bool(rows)

    async def close_unacknowledged(self, alert_id: AlertId, reason: str) -> bool:
        """Give up on a triggered alert nobody acknowledged (policy exhausted)."""
        now = self._clock.now_utc()
        async with self._db.transaction(write=True) as conn:
            rows = await update_audited(
                conn,
                "UPDATE alerts SET status = 'closed_unacknowledged', closed_at = ?, "
                "close_reason = ? WHERE id = ? AND status = 'triggered' RETURNING id",
                (to_db(now), reason, alert_id),
                now,
                lambda _: Note(
                    "engine", "alert.closed_unacknowledged", alert_id, detail={"reason": reason}
                ),
            )
            return bool(rows)

    async def settle(self, alert_id: AlertId) -> bool:
        """The engine has nothing more to do for this alert: stop loading it each tick."""
        async with self._db.transaction(write=True) as conn:
            rows = list(
                await conn.execute_fetchall(
                    "UPDATE alerts SET engine_active = 0 WHERE id = ? AND engine_active = 1 "
                    "AND NOT (kind = 'escalation' AND status = 'triggered') "
                    "AND NOT EXISTS (SELECT 1 FROM attempts WHERE alert_id = alerts.id "
                    "AND state IN ('pending', 'in_flight')) RETURNING id",
                    (alert_id,),
                )
            )
            return bool(rows)


async def _fill_cancelled(conn: Conn, attempt_id: int, result: AttemptResult) -> None:
    """The facts of a call whose attempt was recorded cancelled while it went on. The
    outcome stays ``cancelled`` (one terminal outcome per attempt); a key pressed after the
    alert was handled is kept in ``detail`` only."""
    await conn.execute(
        "UPDATE attempts SET sip_status = ?, sip_reason = ?, answered_at = ?, ended_at = ?, "
        "detail = coalesce(detail, '') || ?, digit = NULL, quality = ? "
        "WHERE id = ? AND state = 'cancelled' AND sip_status IS NULL",
        (
            result.sip_status,
            result.sip_reason,
            to_db(result.answered_at) if result.answered_at else None,
            to_db(result.ended_at),
            f"; call: {result.detail}" if result.detail else "",
            quality_json(result.quality),
            attempt_id,
        ),
    )


async def _snapshot_objects(
    alert_rows: Iterable[Row], attempt_rows: Iterable[Row]
) -> list[tuple[Alert, list[Attempt]]]:
    """Rows become objects on the loop (about 0.1 ms each): in slices, after the read
    transaction has ended, so thousands of open alerts never hold the loop long."""
    slices = LoopSlices()
    alerts: list[Alert] = []
    for row in alert_rows:
        alerts.append(alert_sql.alert_from_row(row))
        await slices.pause()
    attempts: dict[int, list[Attempt]] = {}
    for row in attempt_rows:
        attempts.setdefault(row["alert_id"], []).append(alert_sql.attempt_from_row(row))
        await slices.pause()
    return [(alert, attempts.get(alert.id, [])) for alert in alerts]
