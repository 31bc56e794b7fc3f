"""The store's public face for the trigger side (webhooks, API, e-mail, CLI): the rota,
alerts and their history. Each method is one short transaction and returns domain values.

After a method that changes what should be called (a new alert, an ack, a resolve), the
caller wakes the engine; the engine's own statements live in ``store.escalation``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final

from voipalert.clock import Clock
from voipalert.domain.alert import (
    Alert,
    AlertDetail,
    AlertId,
    AlertKind,
    AlertStatus,
    AttemptId,
    NewAlert,
)
from voipalert.domain.rota import Rota, Route
from voipalert.domain.routing import route
from voipalert.store import alert_sql, rota_sql
from voipalert.store.ack_links import AckLinkStore
from voipalert.store.alert_sql import ALERT_SELECT, AuditEntry
from voipalert.store.am_outbox import AmLink, OutboxStore, save_link
from voipalert.store.batch import WriteBatcher
from voipalert.store.callin import CallinStore
from voipalert.store.cluster import (
    DEFAULT_TAKE_BATCH,
    ClusterNode,
    Lease,
    LineBudget,
    prune_nodes,
)
from voipalert.store.db import SqliteDatabase, StoreConfig, to_db
from voipalert.store.errors import AlertNotFound, UnknownReference
from voipalert.store.escalation import EscalationStore
from voipalert.store.feeds import FeedStore
from voipalert.store.heartbeat import HeartbeatStore
from voipalert.store.overrides import OverrideStore, check_kept_edits, drop_duplicated_edits
from voipalert.store.pg import PgDatabase, is_postgresql_url
from voipalert.store.sql import Conn, Database
from voipalert.store.status_outbox import StatusOutboxStore
from voipalert.store.texts import TextStore
from voipalert.store.tokens import TokenStore

MAX_PAGE_SIZE: Final = 500


@dataclass(frozen=True, slots=True)
class AlertFilter:
    statuses: frozenset[AlertStatus] = frozenset()  # empty: any
    since: datetime | None = None  # created at or after
    team: str | None = None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """Newest first; pass the previous page's ``next_before_id`` to get the next one."""

    limit: int = 50
    before_id: int | None = None


@dataclass(frozen=True, slots=True)
class AlertPage:
    alerts: tuple[Alert, ...]
    next_before_id: int | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    """The alert after an ack or resolve; ``changed`` is False when it was already past that
    state (an ack of a resolved alert, a second resolve)."""

    alert: Alert
    changed: bool
    cancelled_attempts: tuple[AttemptId, ...] = field(default=())


class Store(
    EscalationStore,
    TokenStore,
    OutboxStore,
    HeartbeatStore,
    OverrideStore,
    StatusOutboxStore,
    TextStore,
    AckLinkStore,
    FeedStore,
    CallinStore,
):
    """voipalert's database. Open with ``await Store.open(path, clock)``; close with
    ``await store.close()`` (or ``async with``)."""

    def __init__(self, db: Database, clock: Clock) -> None:
        EscalationStore.__init__(self, db, clock)
        self._routes: tuple[int, tuple[Route, ...]] | None = None
        self._alert_writes = WriteBatcher(db, "store the alert")

    @classmethod
    async def open(cls, path: Path | str, clock: Clock, config: StoreConfig | None = None) -> Store:
        """Open (creating if needed) and migrate the database at ``path``: a SQLite file,
        or a ``postgresql://`` URL (docs/database.md)."""
        if is_postgresql_url(path):
            config = config or StoreConfig()
            database = await PgDatabase.open(str(path), config.secret_file, config.busy_timeout_ms)
            return cls(database, clock)
        return cls(await SqliteDatabase.open(path, config), clock)

    async def close(self) -> None:
        await self._alert_writes.close()
        await self._db.close()

    async def claim_engine(self) -> None:
        """Be the one engine of this database (``EngineLockHeld`` when another is); for
        SQLite the lock file (``store.engine_lock``) does it, taken earlier by ``serve``."""
        await self._db.claim_engine()

    async def join_cluster(
        self,
        lease_seconds: float,
        wake: Callable[[], None],
        take_batch: int = DEFAULT_TAKE_BATCH,
        lines: Callable[[], LineBudget] | None = None,
    ) -> ClusterNode | None:
        """On PostgreSQL, register this process as one of the database's nodes: from now
        on the engine works only the alerts it leases (store.cluster). None on SQLite,
        where one engine per file holds (store.engine_lock). ``lines``: the engine's free
        call lines and its escalations not due soon, which bound the alerts a snapshot
        takes."""
        if not isinstance(self._db, PgDatabase):
            return None
        lease = Lease(ClusterNode.new_id(), lease_seconds, take_batch, more=wake, lines=lines)
        node = ClusterNode(self._db, lease, wake)
        await node.register()
        self._lease = lease
        return node

    async def prune_nodes(self, silent_seconds: float) -> list[str]:
        """The ids of the nodes' rows deleted (``store.cluster.prune_nodes``); none on
        SQLite, which has no nodes."""
        if not isinstance(self._db, PgDatabase):
            return []
        async with self._db.transaction(write=True, what="prune nodes") as conn:
            return await prune_nodes(conn, silent_seconds)

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ---------------------------------------------------------------- rota

    async def replace_rota(
        self, rota: Rota, actor: str = "cli", source: str = "", *, keep_overrides: bool = False
    ) -> int:
        """Replace the whole rota in one transaction: all of it or nothing. With
        ``keep_overrides`` the overrides made one at a time stay (``OverridesOrphaned``, and
        nothing imported, when one names a schedule or person ``rota`` drops); returns how
        many stayed."""
        async with self._db.transaction(write=True, what="import rota") as conn:
            kept = await check_kept_edits(conn, rota) if keep_overrides else []
            await rota_sql.save_rota(conn, rota, keep_edits=keep_overrides)
            duplicated = await drop_duplicated_edits(conn, rota) if keep_overrides else 0
            await alert_sql.audit(
                conn,
                self._clock.now_utc(),
                actor,
                "rota.imported",
                source=source,
                people=len(rota.people),
                schedules=len(rota.schedules),
                policies=len(rota.policies),
                kept_overrides=len(kept) - duplicated,
            )
        return len(kept) - duplicated

    async def load_rota(self) -> Rota:
        async with self._db.transaction(write=False) as conn:
            return await rota_sql.load_rota(conn)

    async def rota_version(self) -> int:
        """A counter bumped by every import (also by another process's)."""
        async with self._db.transaction(write=False) as conn:
            return await rota_sql.rota_version(conn)

    # ---------------------------------------------------------------- alerts

    async def _resolve_targets(
        self, conn: Conn, new: NewAlert
    ) -> tuple[str | None, str | None, str]:
        if new.policy is not None or new.team is not None:
            rows = await conn.execute_fetchall(
                "SELECT EXISTS (SELECT 1 FROM policies WHERE name = ?) AS policy, "
                "EXISTS (SELECT 1 FROM teams WHERE name = ?) AS team",
                (new.policy, new.team),
            )
            found = next(iter(rows))
            if new.policy is not None and not found["policy"]:
                raise UnknownReference(f"no escalation policy named {new.policy!r}")
            if new.team is not None and not found["team"]:
                raise UnknownReference(f"no team named {new.team!r}")
            return new.policy, new.team, "given"
        # Routes change only with an import (maybe by another process): cache per version.
        version = await rota_sql.rota_version(conn)
        if self._routes is None or self._routes[0] != version:
            self._routes = (version, tuple(await rota_sql.load_routes(conn)))
        chosen = route(
            self._routes[1],
            source=new.source,
            severity=new.severity.value,
            summary=new.summary,
            labels=new.labels,
        )
        if chosen is None:
            return None, None, "no route"
        return chosen.policy, chosen.team, chosen.name

    async def _join(self, conn: Conn, new: NewAlert, now: datetime) -> int | None:
        """Count ``new`` on the open alert with its dedup key (refreshing what it says when
        ``new.refresh``); the alert's id, or None when none is open."""
        rows = list(
            await conn.execute_fetchall(
                "SELECT id, summary FROM alerts WHERE dedup_key = ? "
                "AND status IN ('triggered', 'acknowledged')",
                (new.dedup_key,),
            )
        )
        if not rows:
            return None
        alert_id, before = rows[0]["id"], rows[0]["summary"]
        await conn.execute(
            "UPDATE alerts SET occurrences = occurrences + 1, last_seen_at = ? WHERE id = ?",
            (to_db(now), alert_id),
        )
        changed = new.refresh and new.summary != before
        if new.refresh:
            # No new call: the escalation goes on where it is, later calls say the new text.
            await conn.execute(
                "UPDATE alerts SET summary = ?, severity = ?, fields = ?, labels = ? WHERE id = ?",
                (
                    new.summary,
                    new.severity.value,
                    json.dumps(dict(new.fields), default=str),
                    json.dumps(dict(new.labels)),
                    alert_id,
                ),
            )
        if changed:
            await alert_sql.audit(
                conn, now, new.source, "alert.updated", alert_id=alert_id, summary=new.summary
            )
        else:
            await alert_sql.audit(conn, now, new.source, "alert.repeated", alert_id=alert_id)
        return int(alert_id)

    async def create_or_join_alert(
        self, new: NewAlert, link: AmLink | None = None
    ) -> tuple[Alert, bool]:
        """Store a new alert, or count a repeat of an open alert with the same dedup key.
        Returns the alert and whether it was created. Committed when this returns.
        ``link``: the Alertmanager that silences the alert when it is acknowledged."""
        if new.kind is AlertKind.MASS and new.team is None:
            raise UnknownReference("a mass alert needs a team")
        now = self._clock.now_utc()
        # Alerts arriving together share one transaction and one commit (store.batch): a
        # burst no longer pays a commit and a write lock per alert. Each is in its own
        # savepoint, so one alert's error is its own; each caller returns after the commit.
        return await self._alert_writes.run(lambda conn: self._create_or_join(conn, new, link, now))

    async def _create_or_join(
        self, conn: Conn, new: NewAlert, link: AmLink | None, now: datetime
    ) -> tuple[Alert, bool]:
        if new.dedup_key is not None:
            joined = await self._join(conn, new, now)
            if joined is not None:
                if link is not None:
                    await save_link(conn, joined, link)
                alert = await alert_sql.fetch_alert(conn, joined)
                assert alert is not None
                return alert, False
        policy, team, how = await self._resolve_targets(conn, new)
        inserted = await conn.execute_fetchall(
            "INSERT INTO alerts (kind, status, severity, summary, source, dedup_key, fields, "
            "labels, policy_id, team_id, created_at, last_seen_at, esc_since) VALUES "
            "(?, 'triggered', ?, ?, ?, ?, ?, ?, (SELECT id FROM policies WHERE name = ?), "
            "(SELECT id FROM teams WHERE name = ?), ?, ?, ?) RETURNING id",
            (
                new.kind.value,
                new.severity.value,
                new.summary,
                new.source,
                new.dedup_key,
                json.dumps(dict(new.fields), default=str),
                json.dumps(dict(new.labels)),
                policy,
                team,
                to_db(now),
                to_db(now),
                to_db(now),
            ),
        )
        alert_id = int(inserted[0]["id"])
        await alert_sql.audit(
            conn,
            now,
            new.source,
            "alert.created",
            alert_id=alert_id,
            route=how,
            policy=policy,
            team=team,
        )
        if link is not None:
            await save_link(conn, alert_id, link)
        alert = await alert_sql.fetch_alert(conn, alert_id)
        assert alert is not None
        return alert, True

    async def ack_alert(
        self,
        alert_id: int,
        by: str,
        via: str,
        attempt_id: int | None = None,
        *,
        token: str | None = None,
    ) -> Transition:
        """Acknowledge a triggered alert (from outside: ``via`` is "api", "email", ...).
        ``by`` is who took it (a person, or the token's name); ``token`` the API token that
        made the request, kept in the audit trail beside the person.
        Calls not dialled yet are cancelled here; the woken engine cancels those in flight
        (a mass alert goes on calling the others)."""
        now = self._clock.now_utc()
        async with self._db.transaction(write=True) as conn:
            cancelled = await alert_sql.acknowledge(
                conn, now, alert_id, by, via=via, attempt_id=attempt_id, wake_engine=True,
                **({"token": token} if token is not None else {}),
            )  # fmt: skip
            alert = await alert_sql.fetch_alert(conn, alert_id)
        if alert is None:
            raise AlertNotFound(f"no alert {alert_id}")
        return Transition(alert, cancelled is not None, tuple(cancelled or ()))

    async def resolve_alert(self, alert_id: int, by: str) -> Transition:
        """Resolve an alert (the problem is gone): every call not yet made is cancelled, and
        the woken engine cancels those in flight."""
        now = self._clock.now_utc()
        async with self._db.transaction(write=True) as conn:
            rows = await alert_sql.update_audited(
                conn,
                "UPDATE alerts SET status = 'resolved', resolved_by = ?, resolved_at = ?, "
                "engine_active = 1 WHERE id = ? AND status != 'resolved' RETURNING id",
                (by, to_db(now), alert_id),
                now,
                lambda _: alert_sql.Note(by, "alert.resolved", alert_id),
            )
            cancelled: list[AttemptId] = []
            if rows:
                cancelled = await alert_sql.cancel_pending(conn, alert_id, now, by, "resolved")
            alert = await alert_sql.fetch_alert(conn, alert_id)
        if alert is None:
            raise AlertNotFound(f"no alert {alert_id}")
        return Transition(alert, bool(rows), tuple(cancelled))

    async def resolve_by_dedup_key(self, dedup_key: str, by: str) -> Transition | None:
        """Resolve the open alert with this dedup key (Alertmanager "resolved"), if any."""
        async with self._db.transaction(write=False) as conn:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT id FROM alerts WHERE dedup_key = ? "
                    "AND status IN ('triggered', 'acknowledged')",
                    (dedup_key,),
                )
            )
        if not rows:
            return None
        return await self.resolve_alert(rows[0]["id"], by)

    async def get_alert(self, alert_id: int) -> Alert | None:
        async with self._db.transaction(write=False) as conn:
            return await alert_sql.fetch_alert(conn, alert_id)

    async def get_alert_with_attempts(self, alert_id: int) -> AlertDetail | None:
        """The alert and every attempt (person, contact, times, outcome, SIP status, digit)."""
        async with self._db.transaction(write=False) as conn:
            alert = await alert_sql.fetch_alert(conn, alert_id)
            if alert is None:
                return None
            return AlertDetail(alert, tuple(await alert_sql.fetch_attempts(conn, alert_id)))

    async def list_alerts(
        self, filters: AlertFilter | None = None, page: Page | None = None
    ) -> AlertPage:
        """Alerts matching ``filters``, newest first, one page at a time."""
        filters, page = filters or AlertFilter(), page or Page()
        limit = max(1, min(page.limit, MAX_PAGE_SIZE))
        where: list[str] = ["TRUE"]
        params: list[object] = []
        if filters.statuses:
            statuses = sorted(s.value for s in filters.statuses)
            where.append(f"a.status IN ({', '.join('?' for _ in statuses)})")
            params.extend(statuses)
        if filters.since is not None:
            where.append("a.created_at >= ?")
            params.append(to_db(filters.since))
        if filters.team is not None:
            where.append("t.name = ?")
            params.append(filters.team)
        if filters.source is not None:
            where.append("a.source = ?")
            params.append(filters.source)
        if page.before_id is not None:
            where.append("a.id < ?")
            params.append(page.before_id)
        sql = f"{ALERT_SELECT} WHERE {' AND '.join(where)} ORDER BY a.id DESC LIMIT ?"
        async with self._db.transaction(write=False) as conn:
            rows = await conn.execute_fetchall(sql, (*params, limit + 1))
        alerts = [alert_sql.alert_from_row(r) for r in rows]
        more = len(alerts) > limit
        alerts = alerts[:limit]
        return AlertPage(tuple(alerts), alerts[-1].id if more and alerts else None)

    async def record(self, actor: str, action: str, detail: Mapping[str, object]) -> None:
        """One audit entry for something that is about no alert (a shift notice sent)."""
        now = self._clock.now_utc()
        async with self._db.transaction(write=True, what=action) as conn:
            await conn.execute(
                "INSERT INTO audit_log (at, actor, action, detail) VALUES (?, ?, ?, ?)",
                (to_db(now), actor, action, json.dumps(dict(detail), default=str)),
            )

    async def audit_since(
        self, action: str, since: datetime, limit: int = 10_000
    ) -> list[AuditEntry]:
        """The audit entries of one ``action`` since ``since``, oldest first."""
        async with self._db.transaction(write=False) as conn:
            rows = await conn.execute_fetchall(
                "SELECT * FROM audit_log WHERE action = ? AND at >= ? ORDER BY id LIMIT ?",
                (action, to_db(since), limit),
            )
        return [alert_sql.audit_from_row(r) for r in rows]

    async def audit_trail(
        self, alert_id: AlertId | None = None, limit: int = 1000
    ) -> list[AuditEntry]:
        """Audit entries, oldest first: of one alert, or of everything."""
        async with self._db.transaction(write=False) as conn:
            if alert_id is None:
                rows = await conn.execute_fetchall(
                    "SELECT * FROM audit_log ORDER BY id LIMIT ?", (limit,)
                )
            else:
                rows = await conn.execute_fetchall(
                    "SELECT * FROM audit_log WHERE alert_id = ? ORDER BY id LIMIT ?",
                    (alert_id, limit),
                )
        return [alert_sql.audit_from_row(r) for r in rows]
