"""Alerts and call attempts as values.

An alert is ``triggered`` until a key press (or an outside tool) acknowledges it, something
resolves it, or its policy runs out (``closed_unacknowledged``). A *mass* alert calls every
member of a team at once and goes on calling the others after the first key press; only a
resolve stops it.

A call attempt is committed as ``pending`` (its intent, under a unique key) before anything
is dialled, becomes ``in_flight`` just before the dial, and ends ``done`` with an outcome,
``cancelled`` (the alert was handled meanwhile) or ``interrupted`` (the process died while it
was in flight: it is never dialled again under the same key).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import NewType

from voipalert.domain.rota import Contact, NotifyMethod, PersonName, PolicyName, TeamName

AlertId = NewType("AlertId", int)
AttemptId = NewType("AttemptId", int)


class AlertStatus(enum.StrEnum):
    TRIGGERED = "triggered"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    CLOSED_UNACKNOWLEDGED = "closed_unacknowledged"

    @property
    def is_open(self) -> bool:
        """Open alerts take repeats of their dedup key."""
        return self in (AlertStatus.TRIGGERED, AlertStatus.ACKNOWLEDGED)


class AlertKind(enum.StrEnum):
    ESCALATION = "escalation"  # one person after another until a key press
    MASS = "mass"  # everyone in a team at once, each outcome recorded


class Severity(enum.StrEnum):
    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class AttemptState(enum.StrEnum):
    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    DONE = "done"
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"

    @property
    def is_live(self) -> bool:
        return self in (AttemptState.PENDING, AttemptState.IN_FLIGHT)


class AttemptOutcome(enum.StrEnum):
    """How a call ended. Only ``ACKNOWLEDGED`` (a key press) acknowledges: SIP cannot tell
    a human from a voicemail box, so ``ANSWERED_NO_ACK`` escalates like any failure."""

    ACKNOWLEDGED = "acknowledged"
    ANSWERED_NO_ACK = "answered_no_ack"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    DECLINED = "declined"
    UNREACHABLE = "unreachable"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Position:
    """Where an escalation stands: pass ``repeat`` (0 = first), step ``step``, which started
    (or, after a repeat delay, starts) at ``since``."""

    repeat: int
    step: int
    since: datetime


@dataclass(frozen=True, slots=True)
class NewAlert:
    """What a trigger (webhook, API, e-mail) asks for. Without ``policy`` and ``team`` the
    stored routing rules choose."""

    summary: str
    severity: Severity = Severity.CRITICAL
    source: str = "api"
    dedup_key: str | None = None
    fields: Mapping[str, object] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    policy: PolicyName | None = None
    team: TeamName | None = None
    kind: AlertKind = AlertKind.ESCALATION
    # A repeat of an open alert replaces its summary, severity, fields and labels (an
    # Alertmanager group that gained or lost alerts) instead of only being counted.
    refresh: bool = False


@dataclass(frozen=True, slots=True)
class Alert:
    id: AlertId
    kind: AlertKind
    status: AlertStatus
    severity: Severity
    summary: str
    source: str
    dedup_key: str | None
    fields: Mapping[str, object]
    labels: Mapping[str, str]
    policy: PolicyName | None
    team: TeamName | None
    occurrences: int
    created_at: datetime
    last_seen_at: datetime
    position: Position
    acked_by: str | None = None
    acked_via: str | None = None
    acked_at: datetime | None = None
    ack_attempt: AttemptId | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    close_reason: str | None = None


@dataclass(frozen=True, slots=True)
class AttemptKey:
    """The unique intent key: no two dials ever share one."""

    alert: AlertId
    repeat: int
    step: int
    person: PersonName
    number: int

    def __str__(self) -> str:
        return f"{self.alert}/{self.repeat}/{self.step}/{self.person}/{self.number}"


CallQualityRecord = Mapping[str, float | int | None]
"""An answered call's audio quality as recorded (``media.quality.CallQuality`` as fields:
loss and jitter both ways, round trip, estimated MOS; docs/realtime.md §7)."""


@dataclass(frozen=True, slots=True)
class Attempt:
    id: AttemptId
    key: AttemptKey
    contact_index: int
    contact: Contact
    language: str
    ring_timeout_seconds: int
    state: AttemptState
    created_at: datetime
    outcome: AttemptOutcome | None = None
    sip_status: int | None = None
    sip_reason: str | None = None
    digit: str | None = None
    started_at: datetime | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    detail: str | None = None
    method: NotifyMethod = NotifyMethod.CALL
    rule: int | None = None  # the person's notification rule that made it (None: no rules)
    quality: CallQualityRecord | None = None


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """How a dialled attempt ended, as the store records it."""

    outcome: AttemptOutcome
    ended_at: datetime
    sip_status: int | None = None
    sip_reason: str | None = None
    digit: str | None = None
    answered_at: datetime | None = None
    detail: str | None = None
    quality: CallQualityRecord | None = None


@dataclass(frozen=True, slots=True)
class AlertDetail:
    """An alert with every call attempt made for it, oldest first."""

    alert: Alert
    attempts: tuple[Attempt, ...]
