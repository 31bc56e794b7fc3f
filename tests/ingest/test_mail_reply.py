"""Replies to alert e-mails: recognised by our Message-ID in In-Reply-To/References (or the
subject's [voipalert #ID]), acknowledging only from the address the e-mail went to, before
its link expired; through the SMTP listener and through the IMAP poller (a real Dovecot)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from tests.ingest import dovecot
from tests.ingest.test_imap import Mailbox, config
from tests.requires import need, need_root
from tests.stores import opened_store
from voipalert.clock import FakeClock
from voipalert.domain.alert import AlertStatus, NewAlert
from voipalert.ingest.config import SmtpConfig
from voipalert.ingest.imap import ImapPoller
from voipalert.ingest.intake import Intake
from voipalert.ingest.mail_reply import mail_reply
from voipalert.ingest.smtp import AlertSmtpHandler, start_smtp
from voipalert.store import Store

START = datetime(2026, 3, 2, 10, tzinfo=UTC)
ROTA = """
people:
  - name: erin
    contacts: [{email: Erin@Example.com, name: mail}]
    rules: [{contact: mail, method: email}]
policies:
  - name: default
    steps: [{targets: [{person: erin}], timeout: 300}]
routes:
  - {name: rest, default: true, policy: default}
"""


def reply(
    nonce: str | None,
    body: str = "1\n\nOn Monday, voipalert wrote:\n> voipalert alert #1\n",
    sender: str = "Erin <erin@example.com>",
    subject: str = "Re: [voipalert #1] critical: disk full",
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "voipalert@example.com"
    message["Subject"] = subject
    if nonce is not None:
        message["In-Reply-To"] = f"<voipalert.{nonce}@example.com>"
        message["References"] = f"<other@example.org> <voipalert.{nonce}@example.com>"
    message.set_content(body)
    return message


def test_recognising_replies() -> None:
    nonce = "A" * 22
    found = mail_reply(reply(nonce))
    assert found is not None and (found.sender, found.nonce, found.acknowledge) == (
        "erin@example.com", nonce, True,
    )  # fmt: skip
    subject_only = mail_reply(reply(None))
    assert subject_only is not None and (subject_only.alert_id, subject_only.nonce) == (1, None)
    for body, acknowledges in [
        ("1", True),
        ("1.", True),
        ("  1  \n", True),
        ("12", False),
        ("> 1\n\nok", False),
        ("> 1\n1\n", False),
        ("yes", False),
    ]:
        found = mail_reply(reply(nonce, body=body))
        assert found is not None and found.acknowledge is acknowledges, body
    assert mail_reply(reply(None, subject="Lunch?")) is None
    two_senders = reply(nonce, sender="a@example.com, b@example.com")
    assert mail_reply(two_senders) is None


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
async def reply_store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Store]:
    async with opened_store(tmp_path / "voipalert.db", clock, ROTA) as opened:
        yield opened


async def mailed(store: Store, summary: str = "disk full") -> tuple[int, str]:
    """An alert whose e-mail went to erin: its id and the nonce of its Message-ID."""
    alert, _ = await store.create_or_join_alert(NewAlert(summary))
    link = await store.issue_ack_link(alert.id, "erin", "Erin@Example.com", 600)
    return alert.id, link.nonce


async def status(store: Store, alert_id: int) -> AlertStatus:
    alert = await store.get_alert(alert_id)
    assert alert is not None
    return alert.status


@pytest.fixture
async def smtp_port(reply_store: Store) -> AsyncIterator[int]:
    intake = Intake(reply_store, lambda: None)
    server = await start_smtp(
        AlertSmtpHandler(intake, SmtpConfig(), []), "127.0.0.1", 0, SmtpConfig()
    )
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


async def send(port: int, message: EmailMessage) -> str:
    _, response = await aiosmtplib.send(message, hostname="127.0.0.1", port=port, timeout=10)
    return response


async def test_a_reply_1_through_smtp_acknowledges_and_abuse_does_not(
    reply_store: Store, clock: FakeClock, smtp_port: int
) -> None:
    first, nonce = await mailed(reply_store)
    second, other = await mailed(reply_store, "database down")
    # From someone else (a forged or a colleague's address), with the right reference.
    assert "(no_open_text)" in await send(smtp_port, reply(nonce, sender="mallory@example.net"))
    assert "(not_understood)" in await send(smtp_port, reply(nonce, body="thanks, looking"))
    assert await status(reply_store, first) is AlertStatus.TRIGGERED
    assert "(acknowledged)" in await send(smtp_port, reply(nonce))
    assert await status(reply_store, first) is AlertStatus.ACKNOWLEDGED
    alert = await reply_store.get_alert(first)
    assert alert is not None and (alert.acked_by, alert.acked_via) == ("erin", "email")
    assert await status(reply_store, second) is AlertStatus.TRIGGERED  # its own reference
    assert "(already_handled)" in await send(smtp_port, reply(nonce))
    clock.advance(601)  # past the link's validity: the reply window is over too
    assert "(no_open_text)" in await send(smtp_port, reply(other))
    assert await status(reply_store, second) is AlertStatus.TRIGGERED


async def test_a_reply_that_lost_its_references_is_taken_by_subject_and_sender(
    reply_store: Store, smtp_port: int
) -> None:
    alert_id, _ = await mailed(reply_store)
    subject = f"Re: [voipalert #{alert_id}] critical: disk full"
    assert "(no_open_text)" in await send(
        smtp_port, reply(None, subject=subject, sender="mallory@example.net")
    )
    assert "(acknowledged)" in await send(smtp_port, reply(None, subject=subject))
    assert await status(reply_store, alert_id) is AlertStatus.ACKNOWLEDGED


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


async def test_a_reply_1_through_imap_acknowledges(
    reply_store: Store, imap_server: dovecot.Dovecot
) -> None:
    alert_id, nonce = await mailed(reply_store)
    mailbox = Mailbox(imap_server.port)
    forged = reply(nonce, sender="mallory@example.net")
    raw = [m.as_bytes(policy=policy.SMTP) for m in (forged, reply(nonce))]
    await mailbox.deliver(raw=raw[0])
    poller = ImapPoller(Intake(reply_store, lambda: None), config(imap_server), [])
    result = await poller.poll_once()
    assert result.committed == 1  # taken (and marked read), not an alert
    assert await status(reply_store, alert_id) is AlertStatus.TRIGGERED
    await mailbox.deliver(raw=raw[1])
    await poller.poll_once()
    assert await status(reply_store, alert_id) is AlertStatus.ACKNOWLEDGED
    assert await mailbox.unseen_subjects() == []
    assert (await reply_store.list_alerts()).alerts[0].id == alert_id  # no alert made of it
    assert message_from_bytes(raw[1]) is not None
