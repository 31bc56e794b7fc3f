"""An e-mail to an alert event, or the reason it is none (pure: no I/O).

The SMTP listener and the IMAP poller both hand each message here. Rules are tried in the
configured order; the first whose every pattern matches wins. A rule's patterns are regular
expressions searched in the sender, the recipients, the subject and the body; their named
groups become the alert's fields, and ``{name}`` in the rule's summary and dedup-key
templates is replaced by the group's text. When no configured rule matches, the built-in
monitoring parser reads the subjects Nagios, Icinga and Zabbix send by default:

- Nagios / Icinga 1: ``** PROBLEM Service Alert: web01/HTTP is CRITICAL **``,
  ``** RECOVERY Host Alert: web01 is UP **``
- Icinga 2: ``[PROBLEM] HTTP on web01 is CRITICAL!``, ``[RECOVERY] Host web01 is UP!``
- Zabbix and the like: ``PROBLEM: <text>`` / ``Problem: <text>``, closed by
  ``RECOVERY: <text>``, ``OK: <text>`` or ``Resolved[ in 5m]: <text>`` (Zabbix's
  "Original problem ID" in the body keys the pair when it is there).

A PROBLEM triggers; the matching RECOVERY resolves the open alert (same dedup key). Other
notification types (ACKNOWLEDGEMENT, FLAPPINGSTART, DOWNTIMESTART ...) are not alerts and are
refused with that reason, as is a message no rule matches: the edge answers or logs it,
nothing is silently dropped.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr
from typing import Final

from voipalert.domain.alert import NewAlert, Severity
from voipalert.domain.rota import PolicyName, TeamName
from voipalert.ingest.convert import Event, Resolve, clean_text, parse_severity
from voipalert.ingest.schemas import MAX_KEY_CHARS, MAX_SUMMARY_CHARS

BODY_SCAN_CHARS: Final = 65_536  # rule patterns see this much of the body
BODY_KEPT_CHARS: Final = 4_096  # stored with the alert for templates and the audit
_TEMPLATE_FIELD: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TAG: Final = re.compile(r"<[^>]*>")

_NAGIOS: Final = re.compile(
    r"^\*\*\s*(?P<type>[A-Z]+)\s+(?:Service|Host)\s+Alert:\s*(?P<host>[^/\s]+)"
    r"(?:/(?P<service>.+?))?\s+is\s+(?P<state>[A-Z]+)\s*\*\*$"
)
_ICINGA2: Final = re.compile(
    r"^\[(?P<type>[A-Z]+)\]\s+(?:Host\s+(?P<hostonly>\S+)|(?P<service>.+?)\s+on\s+(?P<host>\S+))"
    r"\s+is\s+(?P<state>[A-Z]+)!?$"
)
_PREFIXED: Final = re.compile(
    r"^(?P<type>PROBLEM|RECOVERY|OK|RESOLVED)(?:\s+in\s+[^:]{1,40})?\s*:\s*(?P<text>.+)$",
    re.IGNORECASE,
)
_TRAILING_STATE: Final = re.compile(r"\s+is\s+[A-Za-z]+!?$")
_ZABBIX_EVENT: Final = re.compile(r"^\s*Original problem ID:\s*(\d+)\s*$", re.MULTILINE)
_BODY_SEVERITY: Final = re.compile(r"^\s*Severity:\s*(.+?)\s*$", re.MULTILINE)
_BODY_HOST: Final = re.compile(r"^\s*Host:\s*(.+?)\s*$", re.MULTILINE)

_STATE_SEVERITY: Final[Mapping[str, Severity]] = {
    "DOWN": Severity.CRITICAL,
    "UNREACHABLE": Severity.CRITICAL,
    "CRITICAL": Severity.CRITICAL,
    "UNKNOWN": Severity.ERROR,
    "WARNING": Severity.WARNING,
}
_TRIGGER_TYPES: Final = frozenset({"PROBLEM"})
_RESOLVE_TYPES: Final = frozenset({"RECOVERY", "OK", "RESOLVED"})


class RuleAction(enum.StrEnum):
    TRIGGER = "trigger"
    RESOLVE = "resolve"


@dataclass(frozen=True, slots=True)
class EmailRule:
    """One configured rule. Patterns left None match anything. With ``monitoring`` set, the
    built-in monitoring parser must also understand the message, and gives the summary,
    severity, dedup key and trigger/resolve; the rule adds its team, policy and source."""

    name: str
    sender: re.Pattern[str] | None = None
    recipient: re.Pattern[str] | None = None
    subject: re.Pattern[str] | None = None
    body: re.Pattern[str] | None = None
    action: RuleAction = RuleAction.TRIGGER
    severity: Severity | None = None  # None: the "severity" group, else critical
    summary: str | None = None  # template; None: the "summary" group, else the subject
    dedup_key: str | None = None  # template; None: the "dedup_key" group, else none
    team: str | None = None
    policy: str | None = None
    source: str = "email"
    monitoring: bool = False


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why a message is not an alert; safe to put in an SMTP reply (one line, no controls)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Mail:
    """The parts of a message the rules look at."""

    sender: str
    recipients: tuple[str, ...]
    subject: str
    body: str


def _text_of(part: EmailMessage) -> str:
    try:
        content = part.get_content()
    except (LookupError, UnicodeError, ValueError, AssertionError):
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return content if isinstance(content, str) else ""


def message_body(message: EmailMessage) -> str:
    """The plain-text body (HTML with its tags removed when there is no plain part)."""
    part = message.get_body(preferencelist=("plain", "html"))
    if not isinstance(part, EmailMessage):
        return ""
    text = _text_of(part)
    if part.get_content_subtype() == "html":
        text = _TAG.sub(" ", text)
    return text[:BODY_SCAN_CHARS]


def read_mail(
    message: EmailMessage, envelope_from: str | None = None, envelope_to: Sequence[str] = ()
) -> Mail:
    """The sender and recipients of the SMTP envelope when there is one (an IMAP message
    has none: its From, To, Cc and Delivered-To headers stand in)."""
    sender = envelope_from or parseaddr(str(message.get("From", "")))[1]
    recipients = tuple(envelope_to) or tuple(
        addr
        for _, addr in getaddresses(
            [str(v) for h in ("To", "Cc", "Delivered-To") for v in message.get_all(h, [])]
        )
        if addr
    )
    subject = " ".join(str(message.get("Subject", "")).split())
    return Mail(
        sender.lower(), tuple(r.lower() for r in recipients), subject, message_body(message)
    )


def sender_allowed(sender: str, allowed: Sequence[str]) -> bool:
    """Empty ``allowed``: anyone. Else an exact address or a ``@domain`` entry must match."""
    if not allowed:
        return True
    sender = sender.strip().lower()
    domain = sender.rpartition("@")[2]
    return any(
        sender == entry.lower() or (entry.startswith("@") and domain == entry[1:].lower())
        for entry in allowed
    )


def _fill(template: str, groups: Mapping[str, str]) -> str:
    return _TEMPLATE_FIELD.sub(lambda m: groups.get(m.group(1), ""), template)


def _match_rule(rule: EmailRule, mail: Mail) -> dict[str, str] | None:
    groups: dict[str, str] = {}
    checks = (
        (rule.sender, (mail.sender,)),
        (rule.recipient, mail.recipients or ("",)),
        (rule.subject, (mail.subject,)),
        (rule.body, (mail.body,)),
    )
    for pattern, candidates in checks:
        if pattern is None:
            continue
        found = next((m for m in map(pattern.search, candidates) if m is not None), None)
        if found is None:
            return None
        groups.update({k: v for k, v in found.groupdict().items() if v is not None})
    return groups


def _base_fields(mail: Mail, rule: str) -> dict[str, object]:
    return {
        "subject": mail.subject,
        "from": mail.sender,
        "to": list(mail.recipients),
        "body": mail.body[:BODY_KEPT_CHARS],
        "rule": rule,
    }


def _from_rule(rule: EmailRule, mail: Mail, groups: dict[str, str]) -> Event | Rejected:
    groups = {k: clean_text(v, 1000) for k, v in groups.items()}
    key_text = _fill(rule.dedup_key, groups) if rule.dedup_key else groups.get("dedup_key", "")
    key = clean_text(key_text, MAX_KEY_CHARS) or None
    if rule.action is RuleAction.RESOLVE:
        if key is None:
            return Rejected(f"rule {rule.name}: a recovery needs a dedup key")
        return Resolve(key, rule.source)
    summary_text = _fill(rule.summary, groups) if rule.summary else groups.get("summary", "")
    summary = clean_text(summary_text or mail.subject, MAX_SUMMARY_CHARS)
    if not summary:
        return Rejected(f"rule {rule.name}: the message has no subject to speak")
    severity = rule.severity or parse_severity(groups.get("severity")) or Severity.CRITICAL
    return NewAlert(
        summary=summary,
        severity=severity,
        source=rule.source,
        dedup_key=key,
        fields={**_base_fields(mail, rule.name), **groups},
        team=TeamName(rule.team) if rule.team else None,
        policy=PolicyName(rule.policy) if rule.policy else None,
    )


@dataclass(frozen=True, slots=True)
class _Notice:
    kind: str  # PROBLEM, RECOVERY ...
    key: str
    summary: str
    severity: Severity
    details: Mapping[str, str]


def _nagios_like(subject: str) -> _Notice | None:
    found = _NAGIOS.match(subject) or _ICINGA2.match(subject)
    if found is None:
        return None
    parts = found.groupdict()
    host = parts.get("host") or parts.get("hostonly") or ""
    service = parts.get("service")
    state = parts["state"]
    what = f"{service} on {host}" if service else f"host {host}"
    details = {"host": host, "state": state, **({"service": service} if service else {})}
    return _Notice(
        kind=parts["type"],
        key=f"email:nagios:{host}/{service}" if service else f"email:nagios:{host}",
        summary=f"{what} is {state}",
        severity=_STATE_SEVERITY.get(state, Severity.CRITICAL),
        details=details,
    )


def _prefixed(subject: str, body: str) -> _Notice | None:
    found = _PREFIXED.match(subject)
    if found is None:
        return None
    text = found.group("text").strip()
    event = _ZABBIX_EVENT.search(body)
    topic = _TRAILING_STATE.sub("", text).strip().lower()
    key = f"email:zabbix:{event.group(1)}" if event else f"email:{' '.join(topic.split())}"
    severity_line = _BODY_SEVERITY.search(body)
    host = _BODY_HOST.search(body)
    severity = parse_severity(severity_line.group(1)) if severity_line else None
    details = {"host": host.group(1)} if host else {}
    return _Notice(found.group("type").upper(), key, text, severity or Severity.CRITICAL, details)


def _monitoring(mail: Mail, rule: EmailRule | None) -> Event | Rejected | None:
    notice = _nagios_like(mail.subject) or _prefixed(mail.subject, mail.body)
    if notice is None:
        return None
    source = rule.source if rule else "email"
    key = clean_text(notice.key, MAX_KEY_CHARS)
    if notice.kind in _RESOLVE_TYPES:
        return Resolve(key, source)
    if notice.kind not in _TRIGGER_TYPES:
        return Rejected(f"notification type {notice.kind[:40]} is neither a problem nor a recovery")
    return NewAlert(
        summary=clean_text(notice.summary, MAX_SUMMARY_CHARS),
        severity=notice.severity,
        source=source,
        dedup_key=key,
        fields={**_base_fields(mail, rule.name if rule else "monitoring"), **notice.details},
        team=TeamName(rule.team) if rule and rule.team else None,
        policy=PolicyName(rule.policy) if rule and rule.policy else None,
    )


def parse_mail(mail: Mail, rules: Sequence[EmailRule], *, builtin: bool = True) -> Event | Rejected:
    """The event this message stands for, or why it is none."""
    for rule in rules:
        groups = _match_rule(rule, mail)
        if groups is None:
            continue
        if not rule.monitoring:
            return _from_rule(rule, mail, groups)
        result = _monitoring(mail, rule)
        if result is not None:
            return result
    if builtin:
        result = _monitoring(mail, None)
        if result is not None:
            return result
    return Rejected("no rule matched this message (sender, recipient, subject or body)")


def parse_email(
    message: EmailMessage,
    rules: Sequence[EmailRule],
    *,
    envelope_from: str | None = None,
    envelope_to: Sequence[str] = (),
    builtin: bool = True,
) -> Event | Rejected:
    """``read_mail`` then ``parse_mail``."""
    return parse_mail(read_mail(message, envelope_from, envelope_to), rules, builtin=builtin)
