"""What the API takes and gives, as pydantic models (pure: no I/O).

Request models (``AlertIn`` and the Alertmanager and Grafana webhook payloads) validate what
comes in; response models (``AlertOut`` ...) are what goes out. The OpenAPI document is
generated from these same classes, so it cannot drift from what the server does.

Text that will be spoken, logged or stored (summary, source, dedup key, labels) may not hold
control characters: docs/architecture.md §11 — no alert text may forge a log line or reach a
SIP header. Senders we do not control (webhooks, e-mail) are cleaned instead of refused
(``convert.clean_text``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from voipalert.domain.alert import (
    Alert,
    AlertDetail,
    AlertKind,
    AlertStatus,
    Attempt,
    AttemptOutcome,
    AttemptState,
    Severity,
)
from voipalert.domain.rota import ContactKind, NotifyMethod

MAX_SUMMARY_CHARS: Final = 1000
MAX_KEY_CHARS: Final = 255
MAX_NAME_CHARS: Final = 100
MAX_LABELS: Final = 64
MAX_LABEL_VALUE_CHARS: Final = 1024
DB_ID_MAX: Final = 2**63 - 1  # SQLite INTEGER PRIMARY KEY range

# No C0 control character and no DEL anywhere.
NO_CONTROL: Final = r"^[^\x00-\x1f\x7f]*$"
# The same, with at least one character that is not a space.
NOT_BLANK: Final = r"^[^\x00-\x1f\x7f]*[^\x00-\x20\x7f][^\x00-\x1f\x7f]*$"
SOURCE_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"
LABEL_NAME_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_.-]*$"

Summary = Annotated[str, Field(min_length=1, max_length=MAX_SUMMARY_CHARS, pattern=NOT_BLANK)]
DedupKey = Annotated[str, Field(min_length=1, max_length=MAX_KEY_CHARS, pattern=NOT_BLANK)]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS, pattern=NOT_BLANK)]
Source = Annotated[str, Field(min_length=1, max_length=64, pattern=SOURCE_PATTERN)]
LabelName = Annotated[str, Field(min_length=1, max_length=128, pattern=LABEL_NAME_PATTERN)]
LabelValue = Annotated[str, Field(max_length=MAX_LABEL_VALUE_CHARS, pattern=NO_CONTROL)]


def _keys_by_pattern(schema: dict[str, Any]) -> None:
    # pydantic renders a constrained dict key as "patternProperties", which lets keys that
    # miss the pattern through; "propertyNames" says what the validator really does.
    pattern, value_schema = next(iter(schema.pop("patternProperties").items()))
    schema["propertyNames"] = {**schema.get("propertyNames", {}), "pattern": pattern}
    schema["additionalProperties"] = value_schema


class _In(BaseModel):
    # A misspelt key is an error the sender should hear about, not a silently dropped field.
    model_config = ConfigDict(extra="forbid", frozen=True)


class AckIn(_In):
    """The optional body of an acknowledgement made through the API."""

    by: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_NAME_CHARS,
        description="the person (a rota name) who takes the incident; without it the "
        "acknowledgement is recorded under the token's name",
    )


class AlertIn(_In):
    """A new alert, as ``POST /api/v1/alerts`` takes it."""

    summary: Summary = Field(description="what is wrong, in one sentence; this is spoken")
    severity: Severity = Severity.CRITICAL
    source: Source = Field(default="api", description="what sent it (routing may match on it)")
    dedup_key: DedupKey | None = Field(
        default=None, description="a repeat with the same key joins the open alert"
    )
    fields: dict[str, JsonValue] = Field(
        default_factory=dict, description="anything else; available to message templates"
    )
    labels: dict[LabelName, LabelValue] = Field(
        default_factory=dict,
        max_length=MAX_LABELS,
        description="routing rules match these",
        json_schema_extra=_keys_by_pattern,
    )
    team: Name | None = Field(default=None, description="without team or policy, routes decide")
    policy: Name | None = None
    kind: AlertKind = Field(
        default=AlertKind.ESCALATION,
        description="'mass' calls every member of `team` at once",
    )


# ------------------------------------------------------------------ webhook payloads
# Field names follow the senders' own JSON (camelCase); unknown keys are ignored because
# senders add fields between versions.


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class AlertmanagerAlert(_Payload):
    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str | None = None
    endsAt: str | None = None
    generatorURL: str | None = None
    fingerprint: str | None = Field(default=None, max_length=MAX_KEY_CHARS)


class _GroupPayload(_Payload):
    # The group envelope Alertmanager and Grafana share.
    groupKey: str | None = None
    truncatedAlerts: int = 0
    status: Literal["firing", "resolved"]
    receiver: str | None = None
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str | None = None


class AlertmanagerPayload(_GroupPayload):
    """Prometheus Alertmanager ``webhook_config`` body, version 4."""

    version: str = "4"
    alerts: list[AlertmanagerAlert] = Field(max_length=1000)


class GrafanaAlert(AlertmanagerAlert):
    values: dict[str, JsonValue] | None = None
    valueString: str | None = None
    silenceURL: str | None = None
    dashboardURL: str | None = None
    panelURL: str | None = None
    imageURL: str | None = None


class GrafanaPayload(_GroupPayload):
    """Grafana alerting's webhook contact point body (its ``version`` is "1")."""

    version: str = "1"
    orgId: int | None = None
    title: str | None = None
    state: str | None = None
    message: str | None = None
    alerts: list[GrafanaAlert] = Field(max_length=1000)


# ------------------------------------------------------------------ responses


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class ContactOut(_Out):
    kind: ContactKind
    address: str


class CallQualityOut(_Out):
    """Both directions of one answered call (docs/realtime.md §7)."""

    packets_expected: int = Field(description="packets of the far end's stream expected")
    packets_lost: int
    loss_percent: float = Field(description="the far end's stream, as we received it")
    jitter_ms: float = Field(description="largest interarrival jitter of the far end's stream")
    far_loss_percent: float | None = Field(description="our stream, as the far end reported")
    far_jitter_ms: float | None
    rtt_ms: float | None = Field(description="median round trip from RTCP (None: no report)")
    mos: float = Field(description="estimated MOS, ITU-T G.107 E-model for G.711 (1-4.5)")
    reports_sent: int
    reports_received: int
    sent_skipped_slots: int = Field(
        0, description="20 ms slots of our audio never sent (the process stalled over 60 ms)"
    )
    sent_dropped: int = Field(0, description="packets of ours the socket buffer refused")


class AttemptOut(_Out):
    id: int
    person: str
    contact: ContactOut
    repeat: int = Field(description="pass over the policy's steps, 0 first")
    step: int
    number: int = Field(description="attempt number for this person in this step")
    method: NotifyMethod = Field(
        default=NotifyMethod.CALL, description="call, message (SIP MESSAGE) or email"
    )
    rule: int | None = Field(
        default=None, description="the person's notification rule that made it (0 first)"
    )
    state: AttemptState
    outcome: AttemptOutcome | None
    sip_status: int | None
    sip_reason: str | None
    digit: str | None
    created_at: datetime
    started_at: datetime | None
    answered_at: datetime | None
    ended_at: datetime | None
    detail: str | None
    quality: CallQualityOut | None = Field(
        default=None, description="an answered call's audio quality (RTCP, estimated MOS)"
    )


class AlertOut(_Out):
    id: int
    kind: AlertKind
    status: AlertStatus
    severity: Severity
    summary: str
    source: str
    dedup_key: str | None
    fields: dict[str, JsonValue]
    labels: dict[str, str]
    team: str | None
    policy: str | None
    occurrences: int = Field(description="how many times it was triggered (repeats join)")
    created_at: datetime
    last_seen_at: datetime
    acknowledged_by: str | None
    acknowledged_via: str | None
    acknowledged_at: datetime | None
    ack_attempt_id: int | None
    resolved_by: str | None
    resolved_at: datetime | None
    closed_at: datetime | None
    close_reason: str | None


class SilenceRequestOut(_Out):
    action: Literal["silence", "expire"] = Field(
        description="make the Alertmanager silence (on ack) or expire it (on resolve)"
    )
    state: Literal["pending", "done", "failed", "cancelled"]
    tries: int
    due_at: datetime = Field(description="when it is (or was last) due")
    silence_id: str | None = Field(description="the silence in Alertmanager, once made")
    last_error: str | None = Field(description="why the last try failed")


class DeliveryOut(_Out):
    """One text, e-mail or status webhook sent (or being sent) about the alert."""

    channel: Literal["message", "email", "webhook"] = Field(
        description="a SIP MESSAGE text, an e-mail (both also listed as attempts), or an "
        "outgoing status webhook ([outbound] targets)"
    )
    target: str = Field(description="the contact's address, or the webhook target's name")
    person: str | None = Field(default=None, description="whom a text or e-mail went to")
    event: str | None = Field(
        default=None, description="a webhook's event: created, escalated, call, ..."
    )
    state: str = Field(
        description="texts and e-mails: the attempt's state (pending, in_flight, done, "
        "cancelled, interrupted); webhooks: pending, done, dead or cancelled"
    )
    tries: int | None = Field(default=None, description="a webhook's tries so far")
    at: datetime = Field(description="when it was queued")
    sent_at: datetime | None = Field(default=None, description="when it was delivered")
    detail: str | None = Field(
        default=None, description="the attempt's outcome detail, or the webhook's last error"
    )
    attempt_id: int | None = None


class AlertDetailOut(AlertOut):
    attempts: list[AttemptOut] = Field(description="every call attempt, oldest first")
    silences: list[SilenceRequestOut] = Field(
        default_factory=list,
        description="requests to the Alertmanager the alert came from, oldest first",
    )
    deliveries: list[DeliveryOut] = Field(
        default_factory=list,
        description="texts, e-mails and status webhooks about the alert, oldest first "
        "(webhook rows older than [database] sent_retention_days are pruned)",
    )


class AttemptSummaryOut(_Out):
    total: int = Field(description="call attempts so far")
    live: int = Field(description="attempts committed or dialling now")
    by_outcome: dict[str, int] = Field(description="ended attempts by outcome")
    last_person: str | None
    last_outcome: str | None = Field(description="the latest attempt's outcome, or its state")
    last_at: datetime | None


class AlertListItemOut(AlertOut):
    attempts: AttemptSummaryOut = Field(description="the call attempts at a glance")


class AlertListOut(_Out):
    alerts: list[AlertListItemOut] = Field(description="newest first")
    next_before_id: int | None = Field(description="pass as before_id for the next page")


class AcceptedOut(_Out):
    id: int
    status: AlertStatus
    created: bool = Field(description="false: the dedup key joined an open alert")
    occurrences: int


class TransitionOut(_Out):
    changed: bool = Field(description="false: the alert was already past that state")
    alert: AlertOut


class HookAction(_Out):
    dedup_key: str
    action: Literal["created", "joined", "resolved", "not_open"]
    id: int | None = Field(description="the alert, when there is one")


class HookOut(_Out):
    results: list[HookAction]


class BeatOut(_Out):
    heartbeat: str = Field(description="the heartbeat's name")
    recorded: bool = Field(
        description="false for an Alertmanager 'resolved' notification, which is no beat"
    )
    resolved_alert: int | None = Field(
        default=None, description="the missed-heartbeat alert this beat closed, if any"
    )


class ErrorDetail(_Out):
    field: str = Field(description="dotted path of the offending field, or '' for the body")
    reason: str


class ErrorOut(_Out):
    error: str = Field(description="short machine-readable code, e.g. 'invalid_body'")
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)


class HealthOut(_Out):
    status: Literal["ok"]


class TrunkOut(_Out):
    state: str = Field(description="'registered', 'failing' or 'unknown'")
    up: bool = Field(description="can carry calls as far as this node knows")
    since: datetime | None = Field(default=None, description="last change of state")
    last_error: str = ""
    failovers: int = Field(default=0, description="calls that failed on it and went on")


class ReadyOut(_Out):
    ready: bool
    status: str = Field(
        default="ok",
        description="'ok'; 'degraded' when ready but the self-test finds the phone path "
        "failing; 'not ready'",
    )
    database: str = Field(description="'ok', or why it cannot be read")
    sip: str = Field(description="SIP registration state")
    degraded: list[str] = Field(
        default_factory=list,
        description="why the phone path is degraded (a failed test call, a lost "
        "registration), one reason per failing part; docs/outbound.md",
    )
    rota_sources: dict[str, str] = Field(
        default_factory=dict,
        description="each schedule with a live source: which copy answers ('live', "
        "'cached since T (why)', 'none (why)'); a failing source does not make the "
        "process unready (it opens an alert of its own)",
    )
    trunks: dict[str, TrunkOut] = Field(
        default_factory=dict,
        description="each SIP trunk in order of preference (docs/sip-failover.md); ready "
        "needs one that can call, a failing one is listed in degraded",
    )


# ------------------------------------------------------------------ domain -> response


def attempt_out(attempt: Attempt) -> AttemptOut:
    return AttemptOut(
        id=attempt.id,
        person=attempt.key.person,
        contact=ContactOut(kind=attempt.contact.kind, address=attempt.contact.address),
        repeat=attempt.key.repeat,
        step=attempt.key.step,
        number=attempt.key.number,
        method=attempt.method,
        rule=attempt.rule,
        state=attempt.state,
        outcome=attempt.outcome,
        sip_status=attempt.sip_status,
        sip_reason=attempt.sip_reason,
        digit=attempt.digit,
        created_at=attempt.created_at,
        started_at=attempt.started_at,
        answered_at=attempt.answered_at,
        ended_at=attempt.ended_at,
        detail=attempt.detail,
        quality=CallQualityOut.model_validate(dict(attempt.quality)) if attempt.quality else None,
    )


def text_deliveries(attempts: Sequence[Attempt]) -> list[DeliveryOut]:
    """The texts and e-mails among an alert's attempts, as deliveries."""
    return [
        DeliveryOut(
            channel="message" if a.method is NotifyMethod.MESSAGE else "email",
            target=a.contact.address,
            person=a.key.person,
            state=a.state.value,
            at=a.created_at,
            sent_at=a.ended_at if a.outcome is AttemptOutcome.ANSWERED_NO_ACK else None,
            detail=a.detail,
            attempt_id=a.id,
        )
        for a in attempts
        if a.method is not NotifyMethod.CALL
    ]


def _alert_fields(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "kind": alert.kind,
        "status": alert.status,
        "severity": alert.severity,
        "summary": alert.summary,
        "source": alert.source,
        "dedup_key": alert.dedup_key,
        "fields": dict(alert.fields),
        "labels": dict(alert.labels),
        "team": alert.team,
        "policy": alert.policy,
        "occurrences": alert.occurrences,
        "created_at": alert.created_at,
        "last_seen_at": alert.last_seen_at,
        "acknowledged_by": alert.acked_by,
        "acknowledged_via": alert.acked_via,
        "acknowledged_at": alert.acked_at,
        "ack_attempt_id": alert.ack_attempt,
        "resolved_by": alert.resolved_by,
        "resolved_at": alert.resolved_at,
        "closed_at": alert.closed_at,
        "close_reason": alert.close_reason,
    }


def alert_out(alert: Alert) -> AlertOut:
    return AlertOut(**_alert_fields(alert))


def alert_detail_out(detail: AlertDetail) -> AlertDetailOut:
    return AlertDetailOut(
        **_alert_fields(detail.alert), attempts=[attempt_out(a) for a in detail.attempts]
    )
