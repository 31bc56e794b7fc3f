"""E-mail to events: the built-in monitoring parser and configured rules, on real-looking
messages in tests/data/email/."""

from __future__ import annotations

import re
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest

from voipalert.domain.alert import NewAlert, Severity
from voipalert.ingest.convert import Resolve
from voipalert.ingest.email_parse import (
    EmailRule,
    Rejected,
    RuleAction,
    parse_email,
    read_mail,
    sender_allowed,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "email"


def message(name: str) -> EmailMessage:
    parsed = BytesParser(policy=policy.default).parsebytes((DATA / name).read_bytes())
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_nagios_service_problem_and_recovery_share_a_key() -> None:
    problem = parse_email(message("nagios_service_problem.eml"), [])
    assert isinstance(problem, NewAlert)
    assert problem.summary == "PostgreSQL on srvdb01 is CRITICAL"
    assert problem.severity is Severity.CRITICAL
    assert problem.dedup_key == "email:nagios:srvdb01/PostgreSQL"
    assert problem.fields["host"] == "srvdb01" and problem.fields["service"] == "PostgreSQL"
    assert "could not connect" in str(problem.fields["body"])
    recovery = parse_email(message("nagios_service_recovery.eml"), [])
    assert recovery == Resolve("email:nagios:srvdb01/PostgreSQL", "email")


def test_nagios_host_problem() -> None:
    event = parse_email(message("nagios_host_problem.eml"), [])
    assert isinstance(event, NewAlert)
    assert event.summary == "host plc-line3 is DOWN"
    assert event.dedup_key == "email:nagios:plc-line3"


def test_icinga2_service_and_host() -> None:
    problem = parse_email(message("icinga2_service_problem.eml"), [])
    assert isinstance(problem, NewAlert)
    assert problem.summary == "disk /var on fileserver2 is CRITICAL"
    assert problem.dedup_key == "email:nagios:fileserver2/disk /var"
    recovery = parse_email(message("icinga2_service_recovery.eml"), [])
    assert recovery == Resolve("email:nagios:fileserver2/disk /var", "email")
    host = parse_email(message("icinga2_host_problem.eml"), [])
    assert isinstance(host, NewAlert) and host.dedup_key == "email:nagios:core-switch-a"


def test_zabbix_problem_and_resolved_keyed_by_event_id() -> None:
    problem = parse_email(message("zabbix_problem.eml"), [])
    assert isinstance(problem, NewAlert)
    assert problem.summary == "High CPU utilization (over 90% for 5m)"
    assert problem.severity is Severity.WARNING  # "Severity: Warning" in the body
    assert problem.dedup_key == "email:zabbix:482917"
    assert problem.fields["host"] == "app-server-07"
    assert parse_email(message("zabbix_resolved.eml"), []) == Resolve(
        "email:zabbix:482917", "email"
    )


def test_plain_problem_recovery_subjects_pair_by_their_text() -> None:
    def mail(subject: str) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = "monitor@example.org"
        msg["Subject"] = subject
        msg.set_content("details")
        return msg

    problem = parse_email(mail("PROBLEM: web01/HTTP is CRITICAL"), [])
    assert isinstance(problem, NewAlert) and problem.dedup_key == "email:web01/http"
    assert parse_email(mail("RECOVERY: web01/HTTP is OK"), []) == Resolve(
        "email:web01/http", "email"
    )
    assert parse_email(mail("OK: web01/HTTP is OK"), []) == Resolve("email:web01/http", "email")


def test_other_notification_types_and_strangers_are_refused_with_a_reason() -> None:
    ack = parse_email(message("nagios_acknowledgement.eml"), [])
    assert isinstance(ack, Rejected) and "ACKNOWLEDGEMENT" in ack.reason
    news = parse_email(message("newsletter.eml"), [])
    assert isinstance(news, Rejected) and "no rule matched" in news.reason
    # With the built-in parser off, even a Nagios mail needs a rule.
    off = parse_email(message("nagios_service_problem.eml"), [], builtin=False)
    assert isinstance(off, Rejected)


BACKUP = EmailRule(
    name="backup",
    sender=re.compile(r"@nas\.example\.org$"),
    subject=re.compile(r"^Backup job (?P<job>\S+) FAILED on (?P<host>\S+)"),
    body=re.compile(r"Reason: (?P<reason>.+)"),
    summary="Backup {job} failed on {host}: {reason}",
    dedup_key="backup/{host}/{job}",
    severity=Severity.ERROR,
    team="storage",
)


def test_configured_rule_named_groups_become_fields() -> None:
    event = parse_email(message("backup_failed.eml"), [BACKUP])
    assert isinstance(event, NewAlert)
    assert event.summary == "Backup nightly-vm failed on nas-02: target volume full"
    assert event.dedup_key == "backup/nas-02/nightly-vm"
    assert event.severity is Severity.ERROR and event.team == "storage"
    assert event.fields["job"] == "nightly-vm" and event.fields["rule"] == "backup"


def test_rule_sender_and_recipient_patterns() -> None:
    wrong_sender = EmailRule(name="x", sender=re.compile(r"^nobody@"))
    assert isinstance(
        parse_email(message("backup_failed.eml"), [wrong_sender], builtin=False), Rejected
    )
    by_recipient = EmailRule(name="r", recipient=re.compile(r"^oncall-phone@"))
    event = parse_email(message("backup_failed.eml"), [by_recipient], builtin=False)
    assert isinstance(event, NewAlert) and event.summary.startswith("Backup job nightly-vm")
    # The SMTP envelope wins over the headers.
    enveloped = parse_email(
        message("backup_failed.eml"), [by_recipient], envelope_to=["other@x"], builtin=False
    )
    assert isinstance(enveloped, Rejected)


def test_resolve_rule_needs_a_key() -> None:
    closing = EmailRule(
        name="close",
        subject=re.compile(r"^Backup job (?P<job>\S+) OK"),
        action=RuleAction.RESOLVE,
        dedup_key="backup/{job}",
    )
    msg = EmailMessage()
    msg["Subject"] = "Backup job nightly-vm OK"
    msg.set_content("fine")
    assert parse_email(msg, [closing]) == Resolve("backup/nightly-vm", "email")
    keyless = EmailRule(name="k", subject=re.compile("OK"), action=RuleAction.RESOLVE)
    assert isinstance(parse_email(msg, [keyless]), Rejected)


def test_monitoring_rule_adds_routing_to_the_builtin_parser() -> None:
    nagios = EmailRule(
        name="nagios-dba",
        sender=re.compile(r"^nagios@"),
        monitoring=True,
        team="dba",
        source="nagios",
    )
    event = parse_email(message("nagios_service_problem.eml"), [nagios])
    assert isinstance(event, NewAlert)
    assert event.team == "dba" and event.source == "nagios"
    assert event.dedup_key == "email:nagios:srvdb01/PostgreSQL"


def test_html_only_body_and_undecodable_charset() -> None:
    mail = read_mail(message("newsletter.eml"))
    assert "Save 20% on" in mail.body and "<b>" not in mail.body
    raw = (
        b"From: a@b\r\nSubject: PROBLEM: pump\r\nContent-Type: text/plain; charset=x-unknown\r\n"
        b"\r\n\xff\xfe broken\r\n"
    )
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    event = parse_email(parsed, [])
    assert isinstance(event, NewAlert) and event.summary == "pump"


def test_subject_control_characters_cannot_reach_the_summary() -> None:
    msg = EmailMessage()
    msg["Subject"] = "PROBLEM: pump =?utf-8?q?3=0D=0AInjected:_yes?="
    msg.set_content("x")
    event = parse_email(msg, [])
    assert isinstance(event, NewAlert)
    assert "\r" not in event.summary and "\n" not in event.summary


@pytest.mark.parametrize(
    ("sender", "allowed", "ok"),
    [
        ("nagios@mon.example.org", [], True),
        ("nagios@mon.example.org", ["nagios@mon.example.org"], True),
        ("NAGIOS@Mon.Example.org", ["nagios@mon.example.org"], True),
        ("other@mon.example.org", ["@mon.example.org"], True),
        ("x@evil.org", ["@mon.example.org", "a@b.c"], False),
        ("x@sub.mon.example.org", ["@mon.example.org"], False),
        ("", ["@mon.example.org"], False),
    ],
)
def test_sender_allowed(sender: str, allowed: list[str], ok: bool) -> None:
    assert sender_allowed(sender, allowed) is ok
