"""The outbox of outgoing status webhooks (docs/outbound.md).

Rows are queued by the trigger of migration 0008 on the audit trail, inside the
transaction that creates, escalates, acknowledges or closes the alert or ends a call; this
module keeps the table of targets in step with the configuration, hands the sender
(``ingest.status_hooks``) what is due, and records what happened.

Per target, the deliveries of one alert go out in order: a delivery waits while an
earlier one of the same alert to the same target is still pending (retrying), so a
receiver never hears "resolved" before "created". Other alerts are not held up by it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from voipalert.clock import Clock
from voipalert.domain.alert import AlertId
from voipalert.store.db import from_db, to_db
from voipalert.store.sql import Database

DeliveryState = Literal["pending", "done", "dead", "cancelled"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event to send to one target, with the snapshot the trigger took."""

    id: int
    event_id: int
    alert_id: AlertId
    target: str
    event: str
    at: datetime
    tries: int
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    id: int
    event_id: int
    event: str
    target: str
    state: DeliveryState
    tries: int
    due_at: datetime
    last_error: str | None
    sent_at: datetime | None = None
    at: datetime | None = None
    """When the event happened (the row was queued)."""


# A delivery goes only when no earlier one of its alert to its target is still pending.
_FIRST_OF_ALERT = """NOT EXISTS (SELECT 1 FROM status_deliveries p WHERE p.target = d.target
    AND p.alert_id = d.alert_id AND p.state = 'pending' AND p.id < d.id)"""
_NEXT = f"""
SELECT d.id, d.event_id, d.alert_id, d.target, d.tries, e.event, e.at, e.payload
FROM status_deliveries d JOIN status_events e ON e.id = d.event_id
WHERE d.target = ? AND d.state = 'pending' AND d.due_at <= ? AND {_FIRST_OF_ALERT}
ORDER BY d.id LIMIT 1
"""


class StatusOutboxStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def set_status_targets(self, targets: Mapping[str, Sequence[str]]) -> int:
        """Make the targets table say ``targets`` (name -> events); the pending deliveries
        of a target no longer configured are cancelled. How many were cancelled."""
        async with self._db.transaction(write=True, what="set the status targets") as conn:
            names = json.dumps(sorted(targets))
            rows = await conn.execute_fetchall(
                "UPDATE status_deliveries SET state = 'cancelled', last_error = "
                "'target removed from the configuration' WHERE state = 'pending' AND "
                f"target NOT IN {conn.dialect.json_texts} RETURNING id",
                (names,),
            )
            await conn.execute(
                f"DELETE FROM status_targets WHERE name NOT IN {conn.dialect.json_texts}",
                (names,),
            )
            await conn.executemany(
                "INSERT INTO status_targets (name, events) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET events = excluded.events",
                [(name, json.dumps(list(events))) for name, events in sorted(targets.items())],
            )
        return len(list(rows))

    async def next_delivery(self, target: str) -> Delivery | None:
        """The oldest delivery due to ``target`` whose alert has no earlier one pending."""
        now = to_db(self._clock.now_utc())
        async with self._db.transaction(write=False) as conn:
            rows = list(await conn.execute_fetchall(_NEXT, (target, now)))
        if not rows:
            return None
        r = rows[0]
        return Delivery(
            id=r["id"],
            event_id=r["event_id"],
            alert_id=AlertId(r["alert_id"]),
            target=r["target"],
            event=r["event"],
            at=from_db(r["at"]),
            tries=r["tries"],
            payload=json.loads(r["payload"]),
        )

    async def next_delivery_due(self, target: str) -> datetime | None:
        async with self._db.transaction(write=False) as conn:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT MIN(d.due_at) AS due FROM status_deliveries d "
                    f"WHERE d.target = ? AND d.state = 'pending' AND {_FIRST_OF_ALERT}",
                    (target,),
                )
            )
        due = rows[0]["due"] if rows else None
        return from_db(due) if due else None

    # The results below are recorded only over the row the sender read (still pending,
    # the same number of tries): a sender that lost its job lock while its request was
    # out cannot overwrite what the node that took the job over recorded since
    # (docs/multi-node.md, "Single-writer jobs"). Each says whether it recorded.

    async def delivery_done(self, delivery: Delivery) -> bool:
        now = to_db(self._clock.now_utc())
        async with self._db.transaction(write=True, what="record a status delivery") as conn:
            rows = await conn.execute_fetchall(
                "UPDATE status_deliveries SET state = 'done', tries = tries + 1, sent_at = ?, "
                "last_error = NULL WHERE id = ? AND state = 'pending' AND tries = ? RETURNING id",
                (now, delivery.id, delivery.tries),
            )
        return bool(list(rows))

    async def delivery_failed(
        self, delivery: Delivery, error: str, due_at: datetime | None
    ) -> bool:
        """One try failed: try again at ``due_at``, or give up (None: the row is dead)."""
        state = "pending" if due_at is not None else "dead"
        async with self._db.transaction(write=True, what="record a status failure") as conn:
            rows = await conn.execute_fetchall(
                "UPDATE status_deliveries SET state = ?, tries = tries + 1, last_error = ?, "
                "due_at = COALESCE(?, due_at) WHERE id = ? AND state = 'pending' AND tries = ? "
                "RETURNING id",
                (state, error[:300], to_db(due_at) if due_at else None, delivery.id,
                 delivery.tries),
            )  # fmt: skip
        return bool(list(rows))

    async def deliveries_of(self, alert_id: int) -> list[DeliveryRow]:
        """An alert's deliveries, oldest first (for tests and inspection)."""
        async with self._db.transaction(write=False) as conn:
            rows = await conn.execute_fetchall(
                "SELECT d.*, e.event, e.at FROM status_deliveries d "
                "JOIN status_events e ON e.id = d.event_id WHERE d.alert_id = ? ORDER BY d.id",
                (alert_id,),
            )
        return [
            DeliveryRow(
                r["id"],
                r["event_id"],
                r["event"],
                r["target"],
                r["state"],
                r["tries"],
                from_db(r["due_at"]),
                r["last_error"],
                from_db(r["sent_at"]) if r["sent_at"] else None,
                from_db(r["at"]),
            )
            for r in rows
        ]

    async def prune_sent(self, before: datetime) -> int:
        """Forget the status webhook rows finished (done, dead, cancelled) before
        ``before``, and their events once no delivery is left; text replies and wrong
        call-in PINs of that age too. How many deliveries went. Pending rows stay."""
        cut = to_db(before)
        async with self._db.transaction(write=True, what="prune sent rows") as conn:
            gone = await conn.execute_fetchall(
                "DELETE FROM status_deliveries WHERE state IN ('done', 'dead', 'cancelled') "
                "AND COALESCE(sent_at, due_at) < ? RETURNING id",
                (cut,),
            )
            await conn.execute(
                "DELETE FROM status_events WHERE at < ? AND NOT EXISTS "
                "(SELECT 1 FROM status_deliveries d WHERE d.event_id = status_events.id)",
                (cut,),
            )
            await conn.execute("DELETE FROM text_replies WHERE received_at < ?", (cut,))
            await conn.execute("DELETE FROM callin_pin_failures WHERE at < ?", (cut,))
        return len(list(gone))

    async def delivery_counts(self) -> dict[tuple[str, str], int]:
        """Deliveries by (target, state), for /metrics."""
        async with self._db.transaction(write=False) as conn:
            rows = await conn.execute_fetchall(
                "SELECT target, state, COUNT(*) AS n FROM status_deliveries GROUP BY target, state"
            )
        return {(r["target"], r["state"]): r["n"] for r in rows}
