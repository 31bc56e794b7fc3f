"""Alert, attempt and audit rows: conversions and the statements both the trigger side and
the engine share. Every function runs inside the caller's transaction."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from voipalert.domain.alert import (
    Alert,
    AlertId,
    AlertKind,
    AlertStatus,
    Attempt,
    AttemptId,
    AttemptKey,
    AttemptOutcome,
    AttemptState,
    CallQualityRecord,
    Position,
    Severity,
)
from voipalert.domain.rota import (
    Contact,
    ContactKind,
    NotifyMethod,
    PersonName,
    PolicyName,
    TeamName,
)
from voipalert.store.db import from_db, from_db_opt, to_db
from voipalert.store.sql import Conn, Row

ALERT_SELECT: Final = (
    "SELECT a.*, p.name AS policy_name, t.name AS team_name FROM alerts a "
    "LEFT JOIN policies p ON p.id = a.policy_id LEFT JOIN teams t ON t.id = a.team_id"
)
# Alerts that still want calls placed: open escalations, and mass alerts until resolved.
WANTS_CALLS: Final = "(status = 'triggered' OR (kind = 'mass' AND status = 'acknowledged'))"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    alert_id: AlertId | None
    attempt_id: AttemptId | None
    detail: Mapping[str, object]


def alert_from_row(row: Row) -> Alert:
    return Alert(
        id=AlertId(row["id"]),
        kind=AlertKind(row["kind"]),
        status=AlertStatus(row["status"]),
        severity=Severity(row["severity"]),
        summary=row["summary"],
        source=row["source"],
        dedup_key=row["dedup_key"],
        fields=json.loads(row["fields"]),
        labels=json.loads(row["labels"]),
        policy=PolicyName(row["policy_name"]) if row["policy_name"] else None,
        team=TeamName(row["team_name"]) if row["team_name"] else None,
        occurrences=row["occurrences"],
        created_at=from_db(row["created_at"]),
        last_seen_at=from_db(row["last_seen_at"]),
        position=Position(row["esc_repeat"], row["esc_step"], from_db(row["esc_since"])),
        acked_by=row["acked_by"],
        acked_via=row["acked_via"],
        acked_at=from_db_opt(row["acked_at"]),
        ack_attempt=AttemptId(row["ack_attempt_id"]) if row["ack_attempt_id"] else None,
        resolved_by=row["resolved_by"],
        resolved_at=from_db_opt(row["resolved_at"]),
        closed_at=from_db_opt(row["closed_at"]),
        close_reason=row["close_reason"],
    )


def attempt_from_row(row: Row) -> Attempt:
    return Attempt(
        id=AttemptId(row["id"]),
        key=AttemptKey(
            AlertId(row["alert_id"]),
            row["esc_repeat"],
            row["esc_step"],
            PersonName(row["person_name"]),
            row["attempt_no"],
        ),
        contact_index=row["contact_index"],
        contact=Contact(ContactKind(row["contact_kind"]), row["contact_address"]),
        language=row["language"],
        ring_timeout_seconds=row["ring_timeout_seconds"],
        state=AttemptState(row["state"]),
        created_at=from_db(row["created_at"]),
        outcome=AttemptOutcome(row["outcome"]) if row["outcome"] else None,
        sip_status=row["sip_status"],
        sip_reason=row["sip_reason"],
        digit=row["digit"],
        started_at=from_db_opt(row["started_at"]),
        answered_at=from_db_opt(row["answered_at"]),
        ended_at=from_db_opt(row["ended_at"]),
        detail=row["detail"],
        method=NotifyMethod(row["method"]),
        rule=row["rule_index"],
        quality=json.loads(row["quality"]) if row["quality"] else None,
    )


def quality_json(quality: CallQualityRecord | None) -> str | None:
    """An answered call's quality as the ``attempts.quality`` column keeps it (JSON)."""
    return json.dumps(dict(quality), sort_keys=True) if quality is not None else None


def audit_from_row(row: Row) -> AuditEntry:
    return AuditEntry(
        id=row["id"],
        at=from_db(row["at"]),
        actor=row["actor"],
        action=row["action"],
        alert_id=AlertId(row["alert_id"]) if row["alert_id"] is not None else None,
        attempt_id=AttemptId(row["attempt_id"]) if row["attempt_id"] is not None else None,
        detail=json.loads(row["detail"]),
    )


async def audit(
    conn: Conn,
    now: datetime,
    actor: str,
    action: str,
    *,
    alert_id: int | None = None,
    attempt_id: int | None = None,
    **detail: object,
) -> None:
    await conn.execute(
        "INSERT INTO audit_log (at, actor, action, alert_id, attempt_id, detail) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (to_db(now), actor, action, alert_id, attempt_id, json.dumps(detail, default=str)),
    )


async def fetch_alert(conn: Conn, alert_id: int) -> Alert | None:
    rows = list(await conn.execute_fetchall(f"{ALERT_SELECT} WHERE a.id = ?", (alert_id,)))
    return alert_from_row(rows[0]) if rows else None


async def fetch_attempts(conn: Conn, alert_id: int) -> list[Attempt]:
    rows = await conn.execute_fetchall(
        "SELECT * FROM attempts WHERE alert_id = ? ORDER BY id", (alert_id,)
    )
    return [attempt_from_row(r) for r in rows]


@dataclass(frozen=True, slots=True)
class Note:
    """One audit entry, as ``audit`` writes it."""

    actor: str
    action: str
    alert_id: int | None = None
    attempt_id: int | None = None
    detail: Mapping[str, object] = field(default_factory=dict)


async def update_audited(
    conn: Conn,
    sql: str,
    parameters: Sequence[object],
    now: datetime,
    note: Callable[[Row], Note],
) -> list[Row]:
    """Run one ``UPDATE ... RETURNING`` and write the audit entry ``note`` makes of each row
    it changed, in the caller's transaction: a change and its audit entry commit together
    or not at all. A row the ``WHERE`` skipped (the state moved on meanwhile) leaves no
    entry. ``RETURNING`` on UPDATE means the same on SQLite (3.35 and later) and
    PostgreSQL, so this is the one way the store writes "change, then say who did it"."""
    rows = list(await conn.execute_fetchall(sql, parameters))
    for row in rows:
        entry = note(row)
        await audit(
            conn, now, entry.actor, entry.action, alert_id=entry.alert_id,
            attempt_id=entry.attempt_id, **entry.detail,
        )  # fmt: skip
    return rows


async def acknowledge(
    conn: Conn,
    now: datetime,
    alert_id: int,
    by: str,
    *,
    via: str,
    attempt_id: int | None,
    wake_engine: bool,
    **detail: object,
) -> list[AttemptId] | None:
    """triggered → acknowledged by ``by`` (a person, or a token's name) ``via`` a call, the
    API, an e-mail link or reply, ...; None when the alert was not triggered any more.
    An escalation's calls not dialled yet are cancelled here and returned (a mass alert goes
    on calling the others); the engine cancels those in flight. ``wake_engine`` marks the
    alert for the engine's next tick: every path but the engine's own sets it."""
    wake = ", engine_active = 1" if wake_engine else ""
    rows = await update_audited(
        conn,
        "UPDATE alerts SET status = 'acknowledged', acked_by = ?, acked_via = ?, "
        f"acked_at = ?, ack_attempt_id = ?{wake} WHERE id = ? AND status = 'triggered' "
        "RETURNING kind",
        (by, via, to_db(now), attempt_id, alert_id),
        now,
        lambda _: Note(by, "alert.acknowledged", alert_id, attempt_id, {"via": via, **detail}),
    )
    if not rows:
        return None
    if rows[0]["kind"] != AlertKind.ESCALATION.value:
        return []
    return await cancel_pending(conn, alert_id, now, by, "acknowledged")


async def cancel_pending(
    conn: Conn, alert_id: int, now: datetime, actor: str, reason: str
) -> list[AttemptId]:
    """Cancel the attempts not dialled yet; the engine cancels those in flight."""
    rows = await update_audited(
        conn,
        "UPDATE attempts SET state = 'cancelled', outcome = 'cancelled', ended_at = ?, "
        "detail = ? WHERE alert_id = ? AND state = 'pending' RETURNING id",
        (to_db(now), reason, alert_id),
        now,
        lambda row: Note(actor, "attempt.cancelled", alert_id, row["id"], {"reason": reason}),
    )
    return [AttemptId(r["id"]) for r in rows]


async def cancel_live(
    conn: Conn, ids: list[AttemptId], now: datetime, reason: str
) -> list[AttemptId]:
    rows = await update_audited(
        conn,
        "UPDATE attempts SET state = 'cancelled', outcome = 'cancelled', ended_at = ?, detail = ? "
        f"WHERE id IN {conn.dialect.json_ints} AND state IN ('pending', 'in_flight') "
        "RETURNING id, alert_id",
        (to_db(now), reason, json.dumps(ids)),
        now,
        lambda row: Note(
            "engine", "attempt.cancelled", row["alert_id"], row["id"], {"reason": reason}
        ),
    )
    return [AttemptId(r["id"]) for r in rows]
