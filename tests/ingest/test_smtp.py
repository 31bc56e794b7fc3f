"""The SMTP listener over real loopback SMTP (smtplib): 250 only after the commit, refusals
with their reason, size and sender limits."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import logging
import smtplib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from voipalert.clock import SystemClock
from voipalert.ingest.config import SmtpConfig
from voipalert.ingest.email_parse import EmailRule
from voipalert.ingest.intake import Intake
from voipalert.ingest.metrics import IngestMetrics
from voipalert.ingest.smtp import AlertSmtpHandler, start_smtp
from voipalert.store import Store, StoreConfig

DATA = Path(__file__).resolve().parents[1] / "data" / "email"
Listener = Callable[..., Awaitable[int]]


@pytest.fixture
async def listen(store: Store) -> AsyncIterator[Listener]:
    servers: list[asyncio.Server] = []

    async def start(
        config: SmtpConfig | None = None,
        rules: tuple[EmailRule, ...] = (),
        on: Store | None = None,
        metrics: IngestMetrics | None = None,
    ) -> int:
        config = config or SmtpConfig()
        intake = Intake(on or store, lambda: None)
        handler = AlertSmtpHandler(intake, config, rules, metrics=metrics)
        server = await start_smtp(handler, "127.0.0.1", 0, config)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    try:
        yield start
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()


def send(
    port: int,
    eml: str | bytes,
    sender: str = "nagios@monitor.example.org",
    to: str = "oncall-phone@alerts.example.org",
) -> tuple[int, bytes]:
    """One SMTP transaction, as an MTA runs it; returns the reply to DATA."""
    raw = eml if isinstance(eml, bytes) else (DATA / eml).read_bytes()
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("monitor.example.org")
        code, reply = client.mail(sender)
        if code != 250:
            return code, reply
        code, reply = client.rcpt(to)
        if code != 250:
            return code, reply
        return client.data(raw)


def alerts_in_file(db: Path) -> list[sqlite3.Row]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return list(conn.execute("SELECT * FROM alerts ORDER BY id"))
    finally:
        conn.close()


async def test_problem_then_recovery_over_smtp(listen: Listener, tmp_path: Path) -> None:
    port = await listen()
    code, reply = await asyncio.to_thread(send, port, "nagios_service_problem.eml")
    assert code == 250, reply
    # 250 in hand: the alert is already in the file, seen from another connection.
    (row,) = alerts_in_file(tmp_path / "voipalert.db")
    assert row["summary"] == "PostgreSQL on srvdb01 is CRITICAL" and row["status"] == "triggered"
    assert f"alert {row['id']}".encode() in reply
    code, reply = await asyncio.to_thread(send, port, "nagios_service_recovery.eml")
    assert code == 250 and b"resolved" in reply
    (row,) = alerts_in_file(tmp_path / "voipalert.db")
    assert row["status"] == "resolved"


async def test_unmatched_mail_is_550_with_the_reason_and_logged(
    listen: Listener, tmp_path: Path, caplog: pytest.LogCaptureFixture, store: Store
) -> None:
    metrics = IngestMetrics(SystemClock())
    port = await listen(metrics=metrics)
    with caplog.at_level(logging.WARNING, logger="voipalert.smtp"):
        code, reply = await asyncio.to_thread(
            send, port, "newsletter.eml", "news@vendor.example.com"
        )
    assert code == 550
    assert b"no rule matched" in reply
    assert "no rule matched" in caplog.text
    assert alerts_in_file(tmp_path / "voipalert.db") == []
    assert b'voipalert_triggers_rejected_total{edge="smtp",reason="550"} 1.0' in metrics.render()
    code, reply = await asyncio.to_thread(send, port, "nagios_acknowledgement.eml")
    assert code == 550 and b"ACKNOWLEDGEMENT" in reply


async def test_senders_recipients_and_networks(listen: Listener) -> None:
    port = await listen(
        SmtpConfig(
            allowed_senders=("@monitor.example.org",),
            recipients=("oncall-phone@alerts.example.org",),
        )
    )
    code, reply = await asyncio.to_thread(send, port, "nagios_host_problem.eml", "x@evil.example")
    assert code == 550 and b"Sender not allowed" in reply
    code, reply = await asyncio.to_thread(
        send, port, "nagios_host_problem.eml", to="ceo@alerts.example.org"
    )
    assert code == 550 and b"No such recipient" in reply
    code, _ = await asyncio.to_thread(send, port, "nagios_host_problem.eml")
    assert code == 250
    far = await listen(SmtpConfig(allowed_networks=(ipaddress.ip_network("10.0.0.0/8"),)))
    code, reply = await asyncio.to_thread(send, far, "nagios_host_problem.eml")
    assert code == 550 and b"Client not allowed" in reply


async def test_size_limit(listen: Listener, tmp_path: Path) -> None:
    port = await listen(SmtpConfig(max_message_bytes=2048))
    big = (DATA / "nagios_host_problem.eml").read_bytes() + b"padding line\r\n" * 400
    code, reply = await asyncio.to_thread(send, port, big)
    assert code == 552, reply
    assert alerts_in_file(tmp_path / "voipalert.db") == []


async def test_database_failure_is_a_temporary_451(listen: Listener, tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    busy_store = await Store.open(path, SystemClock(), StoreConfig(busy_timeout_ms=100))
    try:
        port = await listen(on=busy_store)
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            code, reply = await asyncio.to_thread(send, port, "nagios_host_problem.eml")
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert code == 451, reply
        # The MTA retries later; this time it lands.
        code, _ = await asyncio.to_thread(send, port, "nagios_host_problem.eml")
        assert code == 250
        assert len((await busy_store.list_alerts()).alerts) == 1
    finally:
        await busy_store.close()


async def test_garbage_does_not_hurt_the_listener(listen: Listener) -> None:
    port = await listen()
    for raw in (b"\x00\xff\xfe", b"Subject: \r\n\r\n", b"no headers at all"):
        code, _ = await asyncio.to_thread(send, port, raw)
        assert code == 550
    code, _ = await asyncio.to_thread(
        send, port, "zabbix_problem.eml", "zabbix@monitor.example.org"
    )
    assert code == 250


async def test_a_hostile_subject_reaches_the_log_escaped(
    listen: Listener, caplog: pytest.LogCaptureFixture
) -> None:
    from voipalert.logs import JsonFormatter, TextFormatter

    port = await listen()
    # RFC 2047 lets a subject carry any character: ESC, BEL, U+2028, CR/LF.
    hostile = "=?utf-8?b?" + base64.b64encode("x\x1b[2J\x07\u2028\r\nFAKE".encode()).decode()
    eml = f"From: a@b.example\r\nTo: c@d.example\r\nSubject: {hostile}?=\r\n\r\nbody\r\n"
    with caplog.at_level(logging.WARNING, logger="voipalert.smtp"):
        code, _ = await asyncio.to_thread(send, port, eml.encode(), "a@b.example")
    assert code == 550
    (record,) = [
        r for r in caplog.records if r.name == "voipalert.smtp" and r.levelno >= logging.WARNING
    ]
    assert "\x1b" in str(getattr(record, "subject", ""))  # the attack reached the logger
    for formatter in (TextFormatter(), JsonFormatter()):
        line = formatter.format(record)
        assert not any(c in line for c in "\x1b\x07\u2028\r\n"), line
