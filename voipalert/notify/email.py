"""E-mail out: an alert as a plain-text message through an SMTP server (STARTTLS or TLS,
with authentication), carrying a signed, single-use, expiring acknowledgement link and a
token a reply is recognised by (docs/text-channels.md).

The link's GET only shows a confirmation page; the acknowledgement is its POST, so a mail
scanner that fetches every link does not acknowledge. The Message-ID holds the link's
nonce (``<voipalert.NONCE@domain>``): a reply names it in In-Reply-To/References, and the
subject keeps ``[voipalert #ID]`` for mail clients that drop those headers.

Accepted by the server means ``ANSWERED_NO_ACK`` (handed on, not read). The payload's text
never reaches a header unchecked: the subject's summary has its line breaks and control
characters removed and is cut (RFC 5322 §2.1.1 line length; header injection).
"""

from __future__ import annotations

import logging
import re
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Final, Literal

import aiosmtplib

from voipalert.clock import Clock
from voipalert.domain.alert import AttemptOutcome
from voipalert.notify import Notification, NotifyResult, StopRequest
from voipalert.store import Store

log = logging.getLogger("voipalert.notify")

MAX_SUBJECT_SUMMARY_CHARS: Final = 120
MAX_BODY_SUMMARY_CHARS: Final = 2000
_CONTROLS: Final = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True, slots=True)
class MailConfig:
    host: str
    port: int
    security: Literal["starttls", "tls", "none"]
    from_address: str
    username: str | None = None
    password: str | None = None
    tls_context: ssl.SSLContext | None = None
    public_url: str | None = None  # where the ack link points; None: no link, reply only
    link_valid_seconds: int = 3600
    timeout_seconds: float = 30.0
    from_name: str = "voipalert"


def mail_tls_context(ca_file: Path | None, verify: bool = True) -> ssl.SSLContext:
    """The system CA store or a private bundle, host name checked, TLS 1.2 or newer;
    ``verify=False`` is for a lab only and is logged as such."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        log.warning("SMTP TLS certificate verification is OFF: use this in a lab only")
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def one_line(text: str, limit: int) -> str:
    flat = " ".join(_CONTROLS.sub(" ", text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def message_id(nonce: str, from_address: str) -> str:
    domain = from_address.rpartition("@")[2] or "voipalert.invalid"
    return f"<voipalert.{nonce}@{domain}>"


def build_email(
    config: MailConfig, notification: Notification, nonce: str, link: str | None, clock: Clock
) -> EmailMessage:
    fields = notification.fields
    alert_id = fields.get("alert_id", "?")
    severity = fields.get("severity", "?")
    ack = notification.menu.ack_digit
    message = EmailMessage()
    message["From"] = formataddr((config.from_name, config.from_address))
    message["To"] = notification.contact.address
    summary = fields.get("summary", "")
    message["Subject"] = (
        f"[voipalert #{alert_id}] {severity}: {one_line(summary, MAX_SUBJECT_SUMMARY_CHARS)}"
    )
    message["Message-ID"] = message_id(nonce, config.from_address)
    message["Date"] = format_datetime(clock.now_utc())
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834 §5: no auto-replies to it
    lines = [
        f"voipalert alert #{alert_id} ({severity})",
        "",
        summary[:MAX_BODY_SUMMARY_CHARS],
        "",
    ]
    if link is not None:
        lines += [f"Acknowledge: {link}", "(the page asks you to confirm; the link works once)"]
    lines += [f"Or reply to this e-mail with {ack} on the first line to acknowledge."]
    message.set_content("\n".join(lines) + "\n")
    return message


class EmailNotifier:
    def __init__(self, store: Store, config: MailConfig, clock: Clock) -> None:
        self._store = store
        self._config = config
        self._clock = clock

    async def notify(self, notification: Notification, stop: StopRequest) -> NotifyResult:
        config = self._config
        link = await self._store.issue_ack_link(
            notification.alert_id, notification.person, notification.contact.address,
            config.link_valid_seconds, notification.attempt_id,
        )  # fmt: skip
        url = f"{config.public_url.rstrip('/')}/ack/{link.token}" if config.public_url else None
        email = build_email(config, notification, link.nonce, url, self._clock)
        try:
            response = await aiosmtplib.send(
                email,
                hostname=config.host,
                port=config.port,
                use_tls=config.security == "tls",
                start_tls=config.security == "starttls",
                username=config.username,
                password=config.password,
                tls_context=config.tls_context,
                timeout=config.timeout_seconds,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            return NotifyResult(AttemptOutcome.DECLINED, detail=f"e-mail refused: {exc}")
        except aiosmtplib.SMTPAuthenticationError as exc:
            log.error("SMTP server %s refused our credentials: %s", config.host, exc)
            return NotifyResult(AttemptOutcome.FAILED, detail=f"SMTP authentication: {exc}")
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.warning("e-mail to %s not sent: %s", notification.person, exc)
            return NotifyResult(AttemptOutcome.UNREACHABLE, detail=f"e-mail not sent: {exc}")
        _, reply = response
        return NotifyResult(
            AttemptOutcome.ANSWERED_NO_ACK, detail=f"e-mail accepted: {one_line(reply, 200)}"
        )


async def send_plain(config: MailConfig, to: str, subject: str, body: str, clock: Clock) -> str:
    """A plain e-mail that needs no answer (a shift notice); the server's reply, or raises
    ``aiosmtplib.SMTPException`` / ``OSError``."""
    message = EmailMessage()
    message["From"] = formataddr((config.from_name, config.from_address))
    message["To"] = to
    message["Subject"] = one_line(subject, MAX_SUBJECT_SUMMARY_CHARS)
    message["Date"] = format_datetime(clock.now_utc())
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834 §5
    message.set_content(body + "\n")
    _, reply = await aiosmtplib.send(
        message, hostname=config.host, port=config.port, use_tls=config.security == "tls",
        start_tls=config.security == "starttls", username=config.username,
        password=config.password, tls_context=config.tls_context, timeout=config.timeout_seconds,
    )  # fmt: skip
    return reply
