"""The IMAP poller against a real Dovecot started by the test (tests/ingest/dovecot.py)."""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aioimaplib
import pytest

from tests.ingest import dovecot
from tests.requires import need, need_root
from voipalert.clock import SystemClock
from voipalert.ingest.config import ImapConfig
from voipalert.ingest.email_parse import EmailRule
from voipalert.ingest.imap import ImapError, ImapPoller
from voipalert.ingest.intake import Intake
from voipalert.store import Store, StoreConfig

DATA = Path(__file__).resolve().parents[1] / "data" / "email"


@pytest.fixture
def imap_server(tmp_path: Path) -> Iterator[dovecot.Dovecot]:
    binary = dovecot.dovecot_binary()
    need(binary is not None, f"dovecot is not installed; {dovecot.INSTALL_HINT}")
    assert binary is not None
    need_root("the Dovecot fixture runs its mail processes as 'nobody'")
    server = dovecot.start(tmp_path / "dovecot", binary)
    try:
        yield server
    finally:
        server.stop()


class Mailbox:
    """Another IMAP client of the same account: delivers mail and reads flags."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def _session(self) -> Any:
        client = aioimaplib.IMAP4(host="127.0.0.1", port=self.port, timeout=10)
        await client.wait_hello_from_server()
        assert (await client.login(dovecot.USER, dovecot.PASSWORD)).result == "OK"
        return client

    async def deliver(self, *names: str, raw: bytes | None = None) -> None:
        client = await self._session()
        try:
            for name in names:
                body = (DATA / name).read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                assert (await client.append(body, mailbox="INBOX")).result == "OK"
            if raw is not None:
                assert (await client.append(raw, mailbox="INBOX")).result == "OK"
        finally:
            await client.logout()

    async def unseen_subjects(self, mailbox: str = "INBOX") -> list[str]:
        client = await self._session()
        try:
            await client.select(mailbox)
            found = await client.uid_search("UNSEEN")
            subjects = []
            for uid in bytes(found.lines[0]).split():
                fetched = await client.uid(
                    "fetch", uid.decode(), "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])"
                )
                literal = next(line for line in fetched.lines if isinstance(line, bytearray))
                subjects.append(bytes(literal).decode().strip())
            return subjects
        finally:
            await client.logout()

    async def count(self, mailbox: str) -> int:
        client = await self._session()
        try:
            selected = await client.select(mailbox)
            exists = [bytes(line) for line in selected.lines if bytes(line).endswith(b"EXISTS")]
            return int(exists[0].split()[0])
        finally:
            await client.logout()

    async def create(self, mailbox: str) -> None:
        client = await self._session()
        try:
            assert (await client.create(mailbox)).result == "OK"
        finally:
            await client.logout()


def config(server: dovecot.Dovecot, **overrides: Any) -> ImapConfig:
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": server.port,
        "username": dovecot.USER,
        "password": dovecot.PASSWORD,
        "tls": False,
        "poll_interval_seconds": 0.1,
        "timeout_seconds": 10,
    }
    return ImapConfig(**{**settings, **overrides})


def statuses(db: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [
            (r[0], r[1]) for r in conn.execute("SELECT summary, status FROM alerts ORDER BY id")
        ]
    finally:
        conn.close()


@pytest.fixture
async def mailbox(imap_server: dovecot.Dovecot) -> AsyncIterator[Mailbox]:
    yield Mailbox(imap_server.port)


async def test_problem_then_recovery_closes_the_alert(
    imap_server: dovecot.Dovecot,
    mailbox: Mailbox,
    store: Store,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    poller = ImapPoller(Intake(store, lambda: None), config(imap_server), [])
    await mailbox.deliver("nagios_service_problem.eml", "newsletter.eml")
    with caplog.at_level(logging.WARNING, logger="voipalert.imap"):
        result = await poller.poll_once()
    assert (result.committed, result.rejected) == (1, 1)
    assert statuses(tmp_path / "voipalert.db") == [
        ("PostgreSQL on srvdb01 is CRITICAL", "triggered")
    ]
    # The alert's mail is marked read; the refused one is left unread for a human.
    unseen = await mailbox.unseen_subjects()
    assert len(unseen) == 1 and "spring offers" in unseen[0]
    assert caplog.text.count("no rule matched") == 1
    # The refused message is not logged again at every poll.
    with caplog.at_level(logging.WARNING, logger="voipalert.imap"):
        again = await poller.poll_once()
    assert (again.committed, again.rejected) == (0, 1)
    assert caplog.text.count("no rule matched") == 1

    await mailbox.deliver("nagios_service_recovery.eml")
    result = await poller.poll_once()
    assert result.committed == 1
    assert statuses(tmp_path / "voipalert.db") == [
        ("PostgreSQL on srvdb01 is CRITICAL", "resolved")
    ]
    (alert,) = (await store.list_alerts()).alerts
    assert alert.resolved_by == "email"


async def test_processed_mail_moves_to_a_folder(
    imap_server: dovecot.Dovecot, mailbox: Mailbox, store: Store
) -> None:
    await mailbox.create("Processed")
    poller = ImapPoller(Intake(store, lambda: None), config(imap_server, move_to="Processed"), [])
    await mailbox.deliver("zabbix_problem.eml", "zabbix_resolved.eml")
    result = await poller.poll_once()
    assert result.committed == 2
    assert await mailbox.count("Processed") == 2 and await mailbox.count("INBOX") == 0
    (alert,) = (await store.list_alerts()).alerts
    assert alert.status.value == "resolved" and alert.dedup_key == "email:zabbix:482917"


async def test_mail_stays_unread_until_its_alert_is_committed(
    imap_server: dovecot.Dovecot, mailbox: Mailbox, tmp_path: Path
) -> None:
    path = tmp_path / "busy.db"
    store = await Store.open(path, SystemClock(), StoreConfig(busy_timeout_ms=100))
    try:
        poller = ImapPoller(Intake(store, lambda: None), config(imap_server), [])
        await mailbox.deliver("icinga2_service_problem.eml")
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(Exception, match="locked"):
                await poller.poll_once()
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert len(await mailbox.unseen_subjects()) == 1  # not marked: nothing was stored
        # The running loop survives the same failure and picks the message up afterwards.
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        failures = _FailureSeen()
        logger = logging.getLogger("voipalert.imap")
        logger.addHandler(failures)
        try:
            async with asyncio.TaskGroup() as group:
                task = group.create_task(poller.run())
                async with asyncio.timeout(10):
                    await failures.seen.wait()
                blocker.execute("ROLLBACK")
                task.cancel()
        finally:
            logger.removeHandler(failures)
            blocker.close()
        assert (await poller.poll_once()).committed == 1
        assert await mailbox.unseen_subjects() == []
        assert len((await store.list_alerts()).alerts) == 1
    finally:
        await store.close()


async def test_senders_size_and_rules(
    imap_server: dovecot.Dovecot, mailbox: Mailbox, store: Store
) -> None:
    rule = EmailRule(
        name="backup",
        subject=re.compile(r"^Backup job (?P<job>\S+) FAILED"),
        dedup_key="backup/{job}",
    )
    poller = ImapPoller(
        Intake(store, lambda: None),
        config(
            imap_server,
            allowed_senders=("@monitor.example.org", "backup@nas.example.org"),
            max_message_bytes=2048,
        ),
        [rule],
    )
    big = (
        b"From: nagios@monitor.example.org\r\nSubject: PROBLEM: big\r\n\r\n" + b"x" * 4000 + b"\r\n"
    )
    await mailbox.deliver("backup_failed.eml", "newsletter.eml", raw=big)
    result = await poller.poll_once()
    assert (result.committed, result.rejected) == (1, 2)  # the stranger and the big one stay
    (alert,) = (await store.list_alerts()).alerts
    assert alert.dedup_key == "backup/nightly-vm"


class _FailureSeen(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("IMAP poll failed"):
            self.seen.set()


async def test_run_polls_until_cancelled_and_survives_failures(
    imap_server: dovecot.Dovecot, mailbox: Mailbox, store: Store
) -> None:
    bad = ImapPoller(Intake(store, lambda: None), config(imap_server, port=dovecot.free_port()), [])
    woken = asyncio.Event()
    good = ImapPoller(Intake(store, woken.set), config(imap_server), [])
    failures = _FailureSeen()
    logger = logging.getLogger("voipalert.imap")
    logger.addHandler(failures)
    try:
        async with asyncio.TaskGroup() as group:
            failing = group.create_task(bad.run())
            running = group.create_task(good.run())
            await mailbox.deliver("nagios_host_problem.eml")
            async with asyncio.timeout(15):
                await woken.wait()  # the intake wakes "the engine" once the alert is stored
                await failures.seen.wait()  # the failing poller logged, and goes on
            assert not failing.done()
            failing.cancel()
            running.cancel()
    finally:
        logger.removeHandler(failures)
    (alert,) = (await store.list_alerts()).alerts
    assert alert.summary == "host plc-line3 is DOWN"
    # Last, because Dovecot then slows every login from this address for a while.
    wrong = ImapPoller(Intake(store, lambda: None), config(imap_server, password="wrong"), [])
    with pytest.raises(ImapError, match="LOGIN"):
        await wrong.poll_once()
