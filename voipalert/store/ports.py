"""What each consumer needs of the store, as a small Protocol per consumer: the engine, the
intake, the silencer, the heartbeat watch, the token check, the web console and the CLI
(the last two built from the small desks below). ``Store`` (either backend:
``store.db`` or ``store.pg`` beneath it) satisfies them all; a consumer that names its
Protocol can be given anything with those methods, and says in its signature which part of
the database it touches (docs/database.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from voipalert.domain.alert import (
    Alert,
    AlertDetail,
    AlertId,
    Attempt,
    AttemptId,
    AttemptResult,
    NewAlert,
    Position,
    Severity,
)
from voipalert.domain.override_edit import OverrideRecord, OverrideRequest
from voipalert.domain.policy import PlaceCall
from voipalert.domain.rota import Rota
from voipalert.store.alert_sql import AuditEntry
from voipalert.store.am_outbox import AmLink, OutboxItem, SilencedAlert
from voipalert.store.feeds import SourceCopy
from voipalert.store.heartbeat import Heartbeat
from voipalert.store.overrides import Added, CsvImported
from voipalert.store.repo import AlertFilter, AlertPage, Page, Transition
from voipalert.store.texts import ReplyResult
from voipalert.store.tokens import ApiToken, Scope


class RotaReader(Protocol):
    async def load_rota(self) -> Rota: ...

    async def rota_version(self) -> int: ...


class EngineStore(RotaReader, Protocol):
    """The escalation engine's statements (``store.escalation``) and the rota."""

    async def rota_key(self) -> tuple[int, int]: ...

    async def load_rota_with_feeds(self) -> tuple[Rota, dict[str, SourceCopy]]: ...

    async def engine_snapshot(self) -> list[tuple[Alert, list[Attempt]]]: ...

    def adopted_alerts(self) -> frozenset[int]: ...

    async def record_intent(self, call: PlaceCall) -> Attempt | None: ...

    async def start_attempt(self, attempt_id: AttemptId) -> bool: ...

    async def finish_attempt(self, attempt_id: AttemptId, result: AttemptResult) -> bool: ...

    async def cancel_attempts(self, ids: list[AttemptId], reason: str) -> list[AttemptId]: ...

    async def interrupt_in_flight(self) -> list[Attempt]: ...

    async def interrupt_attempt(
        self, attempt_id: AttemptId, facts: AttemptResult | None = None
    ) -> bool: ...

    async def advance_escalation(
        self, alert_id: AlertId, expected: Position, to: Position, reason: str
    ) -> bool: ...

    async def close_unacknowledged(self, alert_id: AlertId, reason: str) -> bool: ...

    async def settle(self, alert_id: AlertId) -> bool: ...


class IntakeStore(Protocol):
    """Webhooks and e-mail: store (or join) an alert, resolve by dedup key."""

    async def create_or_join_alert(
        self, new: NewAlert, link: AmLink | None = None
    ) -> tuple[Alert, bool]: ...

    async def resolve_by_dedup_key(self, dedup_key: str, by: str) -> Transition | None: ...

    async def ack_by_mail_reply(
        self,
        sender: str,
        *,
        nonce: str | None,
        alert_id: int | None,
        acknowledge: bool,
        first_line: str,
    ) -> ReplyResult: ...


class SilencerStore(Protocol):
    """The Alertmanager silencer: its outbox, and resolving what Alertmanager resolved."""

    async def due_outbox(self, limit: int = 50) -> list[OutboxItem]: ...

    async def outbox_done(
        self, item: OutboxItem, event: str, silence_id: str | None = None
    ) -> bool: ...

    async def outbox_retry(self, item: OutboxItem, error: str, due_at: datetime | None) -> bool: ...

    async def outbox_cancel_silence(self, item: OutboxItem) -> None: ...

    async def silenced_alerts(self) -> list[SilencedAlert]: ...

    async def resolve_alert(self, alert_id: int, by: str) -> Transition: ...


class HeartbeatWatchStore(Protocol):
    async def list_heartbeats(self) -> list[Heartbeat]: ...

    async def mark_heartbeat_down(self, name: str, silent_since: datetime) -> bool: ...


class TokenVerifier(Protocol):
    async def verify_api_token(self, secret: str) -> ApiToken | None: ...


class AlertDesk(Protocol):
    """Alerts as people see and handle them: the list, one alert with its calls and audit
    trail, acknowledge and resolve."""

    async def list_alerts(
        self, filters: AlertFilter | None = None, page: Page | None = None
    ) -> AlertPage: ...

    async def get_alert(self, alert_id: int) -> Alert | None: ...

    async def get_alert_with_attempts(self, alert_id: int) -> AlertDetail | None: ...

    async def audit_trail(
        self, alert_id: AlertId | None = None, limit: int = 1000
    ) -> list[AuditEntry]: ...

    async def ack_alert(
        self,
        alert_id: int,
        by: str,
        via: str,
        attempt_id: int | None = None,
        *,
        token: str | None = None,
    ) -> Transition: ...

    async def resolve_alert(self, alert_id: int, by: str) -> Transition: ...


class OverrideDesk(Protocol):
    """Overrides made one at a time (``store.overrides``)."""

    async def list_overrides(
        self,
        *,
        schedule: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[OverrideRecord]: ...

    async def add_override(self, request: OverrideRequest, origin: str, actor: str) -> Added: ...

    async def remove_override(
        self, override_id: int, actor: str, schedule: str | None = None
    ) -> OverrideRecord | None: ...


class RotaEditor(RotaReader, Protocol):
    """Read the rota (with its schedules' live copies) and replace it as a whole."""

    async def load_rota_with_feeds(self) -> tuple[Rota, dict[str, SourceCopy]]: ...

    async def replace_rota(
        self, rota: Rota, actor: str = "cli", source: str = "", *, keep_overrides: bool = False
    ) -> int: ...


class TokenAdmin(Protocol):
    """API tokens: create, revoke, show or rotate a webhook signing secret."""

    async def create_api_token(
        self, name: str, scopes: frozenset[Scope], actor: str = "cli"
    ) -> tuple[ApiToken, str]: ...

    async def revoke_api_token(self, name: str, actor: str = "cli") -> bool: ...

    async def signing_secret(self, name: str, *, rotate: bool = False) -> str | None: ...


class ConsoleStore(AlertDesk, OverrideDesk, RotaEditor, TokenAdmin, Protocol):
    """The web console's pages (``console/``). Its users and sessions (``store.users``)
    are built on the concrete store by the console's routes, the one place that needs it."""


class CliStore(OverrideDesk, RotaEditor, TokenAdmin, Protocol):
    """The ``voipalert`` commands that act on the database (``cli/``), beside the desks:
    a CSV of shifts, heartbeats, the calendars' secret links, resolving by dedup key."""

    async def import_shifts(
        self, text: str, actor: str, filename: str = "shifts.csv", *, dry_run: bool = False
    ) -> CsvImported: ...

    async def add_heartbeat(
        self,
        name: str,
        every_seconds: int,
        grace_seconds: int = 0,
        *,
        team: str | None = None,
        policy: str | None = None,
        severity: Severity = Severity.CRITICAL,
    ) -> tuple[Heartbeat, str]: ...

    async def list_heartbeats(self) -> list[Heartbeat]: ...

    async def remove_heartbeat(self, name: str) -> bool: ...

    async def calendar_generation(self, kind: str, name: str) -> int: ...

    async def rotate_calendar(self, kind: str, name: str) -> int: ...

    @property
    def server_key(self) -> bytes:
        """The server secret the calendars' links are signed with (``store.secret``)."""

    async def resolve_by_dedup_key(self, dedup_key: str, by: str) -> Transition | None: ...
