"""The trigger side's own configuration (pure: no I/O).

Like aioquic's ``QuicConfiguration``, the ingest package owns these frozen dataclasses; the
composition root fills them from ``voipalert.settings`` (``app.config.ingest_config``), so
nothing here reads files or the environment.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from voipalert.domain.alert import Severity
from voipalert.domain.rota import Route
from voipalert.ingest.convert import Grouping
from voipalert.ingest.email_parse import EmailRule
from voipalert.ingest.mapping import GenericMapping

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK: Final[tuple[IpNetwork, ...]] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)


DEFAULT_AM_HOOK: Final = "default"  # the hook behind /api/v1/hooks/alertmanager


def normalize_url(url: str) -> str:
    """A base URL compared as the same place: no trailing slash, scheme and host in lower
    case."""
    scheme, sep, rest = url.strip().partition("://")
    host, slash, path = rest.partition("/")
    return f"{scheme.lower()}{sep}{host.lower()}{slash}{path}".rstrip("/")


@dataclass(frozen=True, slots=True)
class AlertmanagerHook:
    """One Alertmanager webhook (``[hooks.alertmanager.NAME]``)."""

    grouping: Grouping = Grouping.GROUP
    # Per Alertmanager route: the grouping for notifications naming this receiver (the
    # payload's ``receiver``, the route's receiver in alertmanager.yml), else ``grouping``.
    receiver_grouping: tuple[tuple[str, Grouping], ...] = ()
    # Where acknowledged alerts are silenced (the Alertmanager's base URL); None: nowhere.
    url: str | None = None
    # A payload's externalURL is used instead of ``url`` only when it is one of these: the
    # payload is the sender's word, and a silence request must not go where it points.
    allowed_urls: tuple[str, ...] = ()
    silence_seconds: int = 7200
    # Base URL of voipalert's API as people reach it, for the link in a silence's comment.
    alert_url: str | None = None

    def grouping_for(self, receiver: str | None) -> Grouping:
        """The grouping of a notification sent to ``receiver`` (docs/alertmanager.md)."""
        return dict(self.receiver_grouping).get(receiver or "", self.grouping)

    def silence_url(self, external_url: str | None) -> str | None:
        if external_url:
            candidate = normalize_url(external_url)
            if candidate in {normalize_url(u) for u in self.allowed_urls}:
                return candidate
        return normalize_url(self.url) if self.url else None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff: ``first_seconds`` after the first failure, doubling up to
    ``max_seconds``, at most ``max_tries`` tries in all. With ``jitter`` (0..1) each wait is
    drawn from [wait * (1 - jitter), wait], so that many rows that failed together (a
    receiver that was down) do not all come back in the same second."""

    max_tries: int = 8
    first_seconds: float = 2.0
    max_seconds: float = 300.0
    jitter: float = 0.0

    def wait_seconds(self, tries: int, rng: random.Random | None = None) -> float:
        """The wait after the ``tries``-th failed try."""
        wait = float(min(self.max_seconds, self.first_seconds * 2 ** max(0, tries - 1)))
        if rng is None or self.jitter <= 0:
            return wait
        return wait * (1.0 - self.jitter * rng.random())

    def next_due(
        self, tries: int, permanent: bool, now: datetime, rng: random.Random | None = None
    ) -> datetime | None:
        """When to try again after the ``tries``-th failed try; None: give up."""
        if permanent or tries >= self.max_tries:
            return None
        return now + timedelta(seconds=self.wait_seconds(tries, rng))


STATUS_EVENTS: Final = ("created", "escalated", "call", "acknowledged", "resolved", "closed")
STATUS_FORMATS: Final = ("json", "slack")


@dataclass(frozen=True, slots=True)
class StatusTarget:
    """One receiver of status webhooks (``[outbound.targets.NAME]``); docs/outbound.md."""

    name: str
    url: str  # http:// or https:// only, from the operator's configuration
    format: str = "json"  # one of STATUS_FORMATS
    events: frozenset[str] = frozenset(STATUS_EVENTS)
    secret: bytes | None = None  # HMAC-SHA256 key of the signature headers

    def __post_init__(self) -> None:
        if not self.url.lower().startswith(("http://", "https://")):
            raise ValueError(f"status target {self.name}: only http:// and https:// URLs")
        if self.format not in STATUS_FORMATS:
            raise ValueError(f"status target {self.name}: unknown format {self.format!r}")
        if not self.events <= frozenset(STATUS_EVENTS):
            raise ValueError(f"status target {self.name}: unknown events")


@dataclass(frozen=True, slots=True)
class OutboundConfig:
    """The status webhook sender's targets and pace (``ingest.status_hooks``)."""

    targets: tuple[StatusTarget, ...] = ()
    retry: RetryPolicy = RetryPolicy(max_tries=8, first_seconds=5.0, max_seconds=600.0, jitter=0.5)
    timeout_seconds: float = 10.0
    poll_seconds: float = 1.0
    # Base URL people reach voipalert at: notifications link to the alert under it.
    alert_url: str | None = None


@dataclass(frozen=True, slots=True)
class SilencerConfig:
    """The silencer's pace (``ingest.silencer``)."""

    poll_seconds: float = 2.0
    max_tries: int = 8
    backoff_first_seconds: float = 2.0
    backoff_max_seconds: float = 300.0
    request_timeout_seconds: float = 10.0
    # How often Alertmanager is asked whether a silenced group is still firing (it sends
    # no notification for silenced alerts, "resolved" included).
    reconcile_seconds: float = 30.0


@dataclass(frozen=True, slots=True)
class HttpConfig:
    max_body_bytes: int = 1_048_576
    # Where a body signature may come (the first one present is checked) and where its
    # Unix timestamp is (Grafana: "Timestamp Header"); see ingest.tokens and ingest.auth.
    signature_headers: tuple[str, ...] = ("X-Voipalert-Signature", "X-Grafana-Alerting-Signature")
    timestamp_headers: tuple[str, ...] = ("X-Voipalert-Timestamp", "X-Grafana-Alerting-Timestamp")
    signature_max_age_seconds: int = 300
    # Without a timestamp a signature never expires: replays are only caught while the
    # replay cache remembers it (ingest.replay).
    require_signature_timestamp: bool = True
    # A revoked token keeps working at most this long in a running server.
    token_cache_seconds: float = 5.0
    generic_hooks: Mapping[str, GenericMapping] = field(default_factory=dict)
    alertmanager_hooks: Mapping[str, AlertmanagerHook] = field(default_factory=dict)
    heartbeat_beats_per_minute: int = 60  # per client address; 429 beyond
    default_severity: Severity = Severity.CRITICAL


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    hostname: str = "voipalert"
    max_message_bytes: int = 1_048_576
    allowed_networks: tuple[IpNetwork, ...] = LOOPBACK
    allowed_senders: tuple[str, ...] = ()  # empty: any sender from an allowed network
    recipients: tuple[str, ...] = ()  # empty: any recipient


@dataclass(frozen=True, slots=True)
class ImapConfig:
    host: str
    port: int
    username: str
    password: str
    tls: bool = True
    mailbox: str = "INBOX"
    poll_interval_seconds: float = 60.0
    move_to: str | None = None  # None: mark processed messages \Seen and leave them
    allowed_senders: tuple[str, ...] = ()
    max_message_bytes: int = 1_048_576
    timeout_seconds: float = 30.0


@dataclass(frozen=True, slots=True)
class IngestConfig:
    """``routes`` are tried before the rota's own routes (see ``ingest.intake``)."""

    routes: tuple[Route, ...] = ()
    http: HttpConfig = HttpConfig()
    email_rules: tuple[EmailRule, ...] = ()
    builtin_email_parser: bool = True
    smtp: SmtpConfig = SmtpConfig()
    imap: ImapConfig | None = None
    ack_digit: str = "1"  # what a reply to an alert e-mail says to acknowledge
