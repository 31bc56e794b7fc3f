"""Structured fields are real JSON keys; aiosmtpd's per-mail INFO chatter is quietened (a real
aiosmtpd server on loopback, a real SMTP client)."""

from __future__ import annotations

import io
import json
import logging
import smtplib
import socket
from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.net.sip_harness import free_port
from voipalert.logs import log_context, setup_logging


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    root = logging.getLogger()
    chatty = logging.getLogger("mail.log")
    saved = (list(root.handlers), root.level, chatty.level)
    yield buffer
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    chatty.setLevel(saved[2])


def test_person_and_sip_fields_are_json_keys_with_their_types(stream: io.StringIO) -> None:
    setup_logging("json", "INFO", stream)
    log = logging.getLogger("voipalert.test")
    with log_context(alert_id=7, call_id="c-9", person="alma"):
        log.info(
            "call ended: %s", "busy",
            extra={"sip_status": 486, "registration_state": "registered", "outcome": "busy"},
        )  # fmt: skip
    log.info("after")
    inside, after = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["person"] == "alma" and inside["alert_id"] == "7"
    assert inside["sip_status"] == 486  # a number, not text
    assert inside["registration_state"] == "registered"
    assert "person" not in after


def test_text_lines_show_the_person_without_breaking_the_line(stream: io.StringIO) -> None:
    setup_logging("text", "INFO", stream)
    with log_context(person="eve\nFAKE LINE"):
        logging.getLogger("voipalert.test").info("calling")
    (line,) = stream.getvalue().splitlines()
    assert "[person=eve\\nFAKE LINE]" in line


class _Sink:
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return "250 OK"


def _send_one_mail(level: str, stream: io.StringIO) -> list[str]:
    setup_logging("json", level, stream)
    port = free_port(socket.SOCK_STREAM)
    controller = Controller(_Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("nagios@example.com", ["alerts@example.com"], "Subject: x\r\n\r\nx")
    finally:
        controller.stop()
    return [
        line for line in stream.getvalue().splitlines() if json.loads(line)["logger"] == "mail.log"
    ]


def test_aiosmtpd_info_lines_are_quiet_at_info(stream: io.StringIO) -> None:
    assert _send_one_mail("INFO", stream) == []


def test_aiosmtpd_lines_come_back_at_debug(stream: io.StringIO) -> None:
    # The control: the same mail at DEBUG does log on "mail.log" (so the test above can fail).
    assert len(_send_one_mail("DEBUG", stream)) >= 5
