"""E-mail end to end: ``voipalert serve`` (the real process) e-mails an alert through an SMTP
server (aiosmtpd, started by the test) with its acknowledgement link; the link's page is
fetched from serve's HTTP (nothing happens), its POST acknowledges; a second alert is
acknowledged by a reply "1" sent to serve's own SMTP listener, and a reply from another
address is taken without acknowledging."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP
from testbed import Testbed

from tests.e2e.server import Server, running_server
from tests.net.sip_harness import free_port


class Outbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.arrived = asyncio.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.original_content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        self.arrived.set()
        return "250 2.0.0 queued"

    async def next(self, count: int, seconds: float = 30) -> EmailMessage:
        async with asyncio.timeout(seconds):
            while len(self.messages) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.messages[count - 1]


@pytest.fixture
async def outbox() -> AsyncIterator[tuple[Outbox, int]]:
    box = Outbox()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(box, loop=loop), "127.0.0.1", 0)
    try:
        yield box, int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


ROTA = """
version: 1
people:
  - name: erin
    contacts:
      - {email: erin@example.com, name: mail}
    rules:
      - {contact: mail, method: email}
policies:
  - name: page
    steps:
      - targets: [{person: erin}]
        timeout: 120s
routes:
  - {name: all, default: true, policy: page}
"""


async def post_alert(server: Server, summary: str) -> int:
    status, body = await server.request("POST", "/api/v1/alerts", {"summary": summary})
    assert status == 202, body
    return int(body["id"])


async def test_an_alert_email_is_acknowledged_by_its_link_and_by_a_reply(
    testbed: Testbed, tmp_path: Path, cache: Path, outbox: tuple[Outbox, int]
) -> None:
    box, smtp_port = outbox
    http_port = free_port(socket.SOCK_STREAM)
    listener = free_port(socket.SOCK_STREAM)
    settings = {
        "http__port": str(http_port),
        "http__public_url": f"http://127.0.0.1:{http_port}",
        "mail__enabled": "true",
        "mail__host": "127.0.0.1",
        "mail__port": str(smtp_port),
        "mail__security": "none",
        "mail__from_address": "voipalert@example.com",
        "smtp__enabled": "true",
        "smtp__port": str(listener),
    }
    async with running_server(testbed, ROTA, tmp_path, cache, **settings) as server:
        first = await post_alert(server, "Disk full on SRV-DB-01")
        mail = await box.next(1)
        assert mail["Subject"].strip().startswith(f"[voipalert #{first}]")
        found = re.search(r"Acknowledge: (\S+)", mail.get_content())
        assert found is not None
        link = found.group(1)
        async with aiohttp.ClientSession() as http:
            async with http.get(link) as page:
                assert page.status == 200 and "Acknowledge alert" in await page.text()
            assert (await server.alert(first))["status"] == "triggered"
            async with http.post(link) as done:
                assert done.status == 200
        acked = await server.wait_alert(first, "acknowledged", 10)
        assert (acked["acknowledged_by"], acked["acknowledged_via"]) == ("erin", "email")

        second = await post_alert(server, "Database down")
        mail = await box.next(2)
        answer = EmailMessage()
        answer["From"] = "mallory@example.net"
        answer["To"] = "voipalert@example.com"
        answer["Subject"] = "Re: " + mail["Subject"].strip()
        answer["In-Reply-To"] = mail["Message-ID"]
        answer.set_content("1\n")
        _, said = await aiosmtplib.send(answer, hostname="127.0.0.1", port=listener)
        assert "Reply taken (no_open_text)" in said
        del answer["From"]
        answer["From"] = "Erin <erin@example.com>"
        _, said = await aiosmtplib.send(answer, hostname="127.0.0.1", port=listener)
        assert "Reply taken (acknowledged)" in said
        acked = await server.wait_alert(second, "acknowledged", 10)
        assert acked["acknowledged_via"] == "email"
