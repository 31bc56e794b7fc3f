"""What each consumer needs of the store, as a small Protocol per consumer: the engine, the
intake, the silencer, the heartbeat watch, the token check. ``Store`` (either backend:
``store.db`` or ``store.pg`` beneath it) satisfies them all; a consumer that names its
Protocol can be given anything with those methods, and says in its signature which part of
the database it touches (docs/database.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from voipalert.domain.alert import (
    Alert,
    AlertId,
    Attempt,
    AttemptId,
    AttemptResult,
    NewAlert,
    Position,
)
from voipalert.domain.policy import PlaceCall
from voipalert.domain.rota import Rota
from voipalert.store.am_outbox import AmLink, OutboxItem, SilencedAlert
from voipalert.store.feeds import SourceCopy
from voipalert.store.heartbeat import Heartbeat
from voipalert.store.repo import Transition
from voipalert.store.texts import ReplyResult
from voipalert.store.tokens import ApiToken


class RotaReader(Protocol):
    async def load_rota(self) -> Rota: ...

    async def rota_version(self) -> int: ...


class EngineStore(RotaReader, Protocol):
    """The escalation engine's statements (``store.escalation``) and the rota."""

    async def rota_key(self) -> tuple[int, int]: ...

    async def load_rota_with_feeds(self) -> tuple[Rota, dict[str, SourceCopy]]: ...

    async def engine_snapshot(self) -> list[tuple[Alert, list[Attempt]]]: ...

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
    ) -> None: ...

    async def outbox_retry(self, item: OutboxItem, error: str, due_at: datetime | None) -> None: ...

    async def outbox_cancel_silence(self, item: OutboxItem) -> None: ...

    async def silenced_alerts(self) -> list[SilencedAlert]: ...

    async def resolve_alert(self, alert_id: int, by: str) -> Transition: ...


class HeartbeatWatchStore(Protocol):
    async def list_heartbeats(self) -> list[Heartbeat]: ...

    async def mark_heartbeat_down(self, name: str, silent_since: datetime) -> bool: ...


class TokenVerifier(Protocol):
    async def verify_api_token(self, secret: str) -> ApiToken | None: ...
