"""The SMTP listener for a dedicated alert address (aiosmtpd, in the application's loop).

``handle_DATA`` does the four steps of every edge: parse the message with the e-mail rules,
commit the event, wake the engine (the intake does both), and answer ``250`` only once the
alert is on disk. A message no rule matches is answered ``550`` with the reason and logged,
so the sending MTA bounces it to a human rather than it vanishing; a database failure is
``451``, so the MTA queues the message and tries again.

Only clients from ``allowed_networks`` may send, only from ``allowed_senders`` (when set),
only to ``recipients`` (when set); messages over ``max_message_bytes`` get aiosmtpd's
``552``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from email.message import EmailMessage
from typing import Any, Final

from aiosmtpd.smtp import SMTP

from voipalert.ingest.config import SmtpConfig
from voipalert.ingest.email_parse import Rejected, parse_email, sender_allowed
from voipalert.ingest.mail_trigger import MailTrigger, parse_bytes
from voipalert.store import StoreError

log = logging.getLogger("voipalert.smtp")

OK: Final = "250 OK"
COMMAND_TIMEOUT_SECONDS: Final = 60.0


class AlertSmtpHandler(MailTrigger[SmtpConfig]):
    """aiosmtpd handler object (its ``handle_*`` hooks are aiosmtpd's seam)."""

    edge = "smtp"

    def _reject(self, reason: str, reply: str, **context: object) -> str:
        log.warning("e-mail refused: %s", reason, extra=context)
        self._count_refusal(reply.split(" ", 1)[0])
        return reply

    def _peer_allowed(self, peer: Any) -> bool:
        try:
            address = ipaddress.ip_address(peer[0])
        except (TypeError, ValueError, IndexError):
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._config.allowed_networks)

    # aiosmtpd calls hooks by these exact names.
    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        if not self._peer_allowed(session.peer):
            return self._reject(
                "client network not allowed", "550 5.7.1 Client not allowed", peer=str(session.peer)
            )
        if not sender_allowed(address, self._config.allowed_senders):
            return self._reject(
                "sender not allowed", "550 5.7.1 Sender not allowed", sender=address
            )
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return OK

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self._config.recipients and address.lower() not in self._config.recipients:
            return self._reject(
                "recipient not served", "550 5.1.1 No such recipient here", recipient=address
            )
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return OK

    async def _reply(self, message: EmailMessage) -> str | None:
        """The SMTP answer when ``message`` replies to one of our alert e-mails."""
        try:
            replied = await self._intake.take_mail_reply(message)
        except StoreError:
            log.exception("e-mail reply not stored; the sender will retry")
            return "451 4.3.0 Reply not stored, try again later"
        return None if replied is None else f"250 2.0.0 Reply taken ({replied})"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        if not isinstance(content, bytes):
            content = str(content).encode("utf-8", "replace")
        try:
            message = parse_bytes(content)
        except Exception:
            log.exception("e-mail could not be parsed", extra={"sender": envelope.mail_from})
            return self._reject("unparseable", "550 5.6.0 Message could not be parsed")
        if (answer := await self._reply(message)) is not None:
            return answer
        try:
            result = parse_email(
                message,
                self._rules,
                envelope_from=envelope.mail_from,
                envelope_to=envelope.rcpt_tos,
                builtin=self._builtin,
            )
        except Exception:
            log.exception("e-mail could not be parsed", extra={"sender": envelope.mail_from})
            return self._reject("unparseable", "550 5.6.0 Message could not be parsed")
        if isinstance(result, Rejected):
            subject = str(message.get("Subject", ""))[:200]
            return self._reject(
                result.reason,
                f"550 5.6.0 {result.reason}",
                sender=envelope.mail_from,
                subject=subject,
            )
        try:
            committed = await self._intake.submit(result)
        except StoreError:
            log.exception("e-mail alert not stored; the sender will retry")
            return "451 4.3.0 Alert not stored, try again later"
        alert = f" alert {committed.alert.id}" if committed.alert is not None else ""
        return f"250 2.0.0 Accepted{alert} ({committed.outcome.value})"


async def start_smtp(
    handler: AlertSmtpHandler, host: str, port: int, config: SmtpConfig
) -> asyncio.Server:
    """Listen in the running loop (not aiosmtpd's thread ``Controller``: the store lives in
    this loop). A port already taken raises ``OSError`` here."""
    loop = asyncio.get_running_loop()

    def protocol() -> SMTP:
        return SMTP(
            handler,
            data_size_limit=config.max_message_bytes,
            hostname=config.hostname,
            enable_SMTPUTF8=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
            loop=loop,
        )

    server = await loop.create_server(protocol, host, port)
    log.info("SMTP listener up", extra={"host": host, "port": port})
    return server
