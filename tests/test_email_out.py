"""E-mail out against a real SMTP server (aiosmtpd on loopback, STARTTLS required, AUTH
required) and the acknowledgement link over real HTTP: the GET only shows a page, the POST
acknowledges once; abuse: replayed, expired, altered and foreign links, wrong credentials,
header injection through the summary."""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from tests.net.test_sip_tls import make_pki
from tests.requires import need_program
from tests.stores import opened_store
from voipalert.clock import FakeClock
from voipalert.domain.alert import AlertStatus, AttemptOutcome, NewAlert
from voipalert.domain.policy import PlaceCall, plan
from voipalert.domain.rota import NotifyMethod
from voipalert.ingest.config import IngestConfig
from voipalert.ingest.health import SipState
from voipalert.ingest.webhook import build_app, start_http
from voipalert.notify import Notification, StopRequest
from voipalert.notify.email import EmailNotifier, MailConfig, mail_tls_context
from voipalert.store import Store

START = datetime(2026, 3, 2, 10, tzinfo=UTC)
ROTA = """
people:
  - name: erin
    contacts: [{email: erin@example.com, name: mail}]
    rules: [{contact: mail, method: email}]
policies:
  - name: default
    steps: [{targets: [{person: erin}], timeout: 300}]
routes:
  - {name: rest, default: true, policy: default}
"""


@dataclass
class Mailbox:
    messages: list[EmailMessage] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.original_content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 2.0.0 queued as 42"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
async def store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Store]:
    async with opened_store(tmp_path / "voipalert.db", clock, ROTA) as opened:
        yield opened


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    need_program("openssl", "apt-get install openssl")
    return make_pki(tmp_path_factory.mktemp("smtp") / "pki", "smtp")


@pytest.fixture
async def smtp(pki: tuple[Path, Path, Path]) -> AsyncIterator[tuple[Mailbox, int, ssl.SSLContext]]:
    """aiosmtpd in this loop: STARTTLS required before anything, AUTH required."""
    ca, cert, key = pki
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    mailbox = Mailbox()

    def authenticate(
        server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            b"voipalert",
            b"mail-secret",
        )
        if ok:
            mailbox.logins.append(mechanism)
        return AuthResult(success=ok, handled=False)  # False: aiosmtpd answers the 535

    loop = asyncio.get_running_loop()

    def protocol() -> SMTP:
        return SMTP(
            mailbox, tls_context=server_tls, require_starttls=True, authenticator=authenticate,
            auth_required=True, auth_require_tls=True, loop=loop,
        )  # fmt: skip

    server = await loop.create_server(protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client_tls = mail_tls_context(ca)
    try:
        yield mailbox, port, client_tls
    finally:
        server.close()
        await server.wait_closed()


async def email_intent(store: Store) -> tuple[int, Notification]:
    alert, _ = await store.create_or_join_alert(
        NewAlert("Disk full on SRV-DB-01\r\nBcc: mallory@example.net")
    )
    fresh = await store.get_alert(alert.id)
    assert fresh is not None
    (action,) = [
        a for a in plan(fresh, await store.load_rota(), [], START) if isinstance(a, PlaceCall)
    ]
    assert action.method is NotifyMethod.EMAIL
    attempt = await store.record_intent(action)
    assert attempt is not None
    notification = Notification(
        alert_id=alert.id, attempt_id=attempt.id, attempt_key=str(attempt.key),
        person="erin", contact=attempt.contact, language="en",
        fields={"alert_id": str(alert.id), "severity": "critical", "summary": fresh.summary},
        method=NotifyMethod.EMAIL,
    )  # fmt: skip
    return alert.id, notification


def mail_config(port: int, tls: ssl.SSLContext, password: str = "mail-secret") -> MailConfig:
    return MailConfig(
        host="127.0.0.1", port=port, security="starttls", from_address="voipalert@example.com",
        username="voipalert", password=password, tls_context=tls,
        public_url="http://voipalert.example.com", link_valid_seconds=600,
    )  # fmt: skip


@pytest.fixture
async def http(store: Store, clock: FakeClock) -> AsyncIterator[tuple[str, list[int]]]:
    woken: list[int] = []
    app = build_app(
        store, wake=lambda: woken.append(1), sip_state=lambda: SipState.REGISTERED,
        config=IngestConfig(), clock=clock,
    )  # fmt: skip
    runner, port = await start_http(app, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}", woken
    finally:
        await runner.cleanup()


def link_of(message: EmailMessage) -> str:
    body = message.get_content()
    found = re.search(r"Acknowledge: http://voipalert\.example\.com(/ack/\S+)", body)
    assert found is not None, body
    return found.group(1)


async def fetch(method: str, url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.request(method, url) as response:
        return response.status, await response.text()


async def status(store: Store, alert_id: int) -> AlertStatus:
    alert = await store.get_alert(alert_id)
    assert alert is not None
    return alert.status


async def test_the_email_goes_out_over_starttls_with_auth_and_its_link_acknowledges_once(
    store: Store, clock: FakeClock, smtp: tuple[Mailbox, int, ssl.SSLContext],
    http: tuple[str, list[int]],
) -> None:  # fmt: skip
    mailbox, port, tls = smtp
    base, woken = http
    alert_id, notification = await email_intent(store)
    result = await EmailNotifier(store, mail_config(port, tls), clock).notify(
        notification, StopRequest()
    )
    assert result.outcome is AttemptOutcome.ANSWERED_NO_ACK
    assert result.detail == "e-mail accepted: 2.0.0 queued as 42"
    assert mailbox.logins == ["PLAIN"]
    (message,) = mailbox.messages
    assert message["To"] == "erin@example.com"
    assert message["Subject"].strip() == (
        f"[voipalert #{alert_id}] critical: Disk full on SRV-DB-01 Bcc: mallory@example.net"
    )
    assert message["Bcc"] is None  # the summary's line break did not make a header
    assert re.fullmatch(r"<voipalert\.[A-Za-z0-9_-]{22}@example\.com>", message["Message-ID"])
    assert message["Auto-Submitted"] == "auto-generated"
    assert "reply to this e-mail with 1" in message.get_content()
    link = base + link_of(message)

    code, page = await fetch("GET", link)  # what a mail scanner does: nothing happens
    assert code == 200 and f"Acknowledge alert #{alert_id}?" in page and 'method="post"' in page
    assert await status(store, alert_id) is AlertStatus.TRIGGERED

    code, page = await fetch("POST", link)
    assert code == 200 and f"Alert #{alert_id} acknowledged" in page
    alert = await store.get_alert(alert_id)
    assert alert is not None and (alert.acked_by, alert.acked_via) == ("erin", "email")
    assert woken == [1]

    code, page = await fetch("POST", link)
    assert code == 410 and "already been used" in page
    code, page = await fetch("GET", link)
    assert code == 410 and "already been used" in page


async def test_abused_links_acknowledge_nothing(
    store: Store, clock: FakeClock, smtp: tuple[Mailbox, int, ssl.SSLContext],
    http: tuple[str, list[int]],
) -> None:  # fmt: skip
    mailbox, port, tls = smtp
    base, _ = http
    notifier = EmailNotifier(store, mail_config(port, tls), clock)
    first, notification = await email_intent(store)
    await notifier.notify(notification, StopRequest())
    second, other = await email_intent(store)
    await notifier.notify(other, StopRequest())
    path = link_of(mailbox.messages[0])
    nonce, alert, expiry, signature = path.removeprefix("/ack/").split(".")
    # The first alert's link with the second alert's number: the signature no longer fits.
    forged = f"/ack/{nonce}.{second}.{expiry}.{signature}"
    # A later expiry, to outlive the link: same.
    stretched = f"/ack/{nonce}.{alert}.{int(expiry) + 86400}.{signature}"
    for bad in (forged, stretched, "/ack/nonsense"):
        code, page = await fetch("POST", base + bad)
        assert code == 404 and "not valid" in page, bad
    assert (await fetch("POST", base + "/ack/" + "A" * 5000))[0] == 404
    assert await status(store, first) is AlertStatus.TRIGGERED
    assert await status(store, second) is AlertStatus.TRIGGERED
    clock.advance(601)  # past link_valid_seconds
    code, page = await fetch("POST", base + path)
    assert code == 410 and "expired" in page
    assert await status(store, first) is AlertStatus.TRIGGERED


async def test_wrong_credentials_fail_the_attempt_and_send_nothing(
    store: Store, clock: FakeClock, smtp: tuple[Mailbox, int, ssl.SSLContext]
) -> None:
    mailbox, port, tls = smtp
    _, notification = await email_intent(store)
    config = mail_config(port, tls, password="wrong")
    result = await EmailNotifier(store, config, clock).notify(notification, StopRequest())
    assert result.outcome is AttemptOutcome.FAILED
    assert (result.detail or "").startswith("SMTP authentication")
    assert mailbox.messages == []


async def test_a_server_we_cannot_reach_is_unreachable(
    store: Store, clock: FakeClock, smtp: tuple[Mailbox, int, ssl.SSLContext]
) -> None:
    _, port, _ = smtp
    _, notification = await email_intent(store)
    config = mail_config(port, ssl.create_default_context())  # not our CA: TLS fails
    result = await EmailNotifier(store, config, clock).notify(notification, StopRequest())
    assert result.outcome is AttemptOutcome.UNREACHABLE
