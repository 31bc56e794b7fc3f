"""What the two e-mail triggers share: the SMTP listener (``smtp``) and the IMAP poller
(``imap``) both turn a message into an alert through the same e-mail rules and the same
intake, and count the messages they refuse under their own edge."""

from __future__ import annotations

from collections.abc import Sequence
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import ClassVar, Generic, TypeVar

from voipalert.ingest.email_parse import EmailRule
from voipalert.ingest.intake import Intake
from voipalert.ingest.metrics import IngestMetrics

ConfigT = TypeVar("ConfigT")


def parse_bytes(content: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(content)
    assert isinstance(message, EmailMessage)  # policy.default builds EmailMessage
    return message


class MailTrigger(Generic[ConfigT]):
    """An e-mail trigger with its own ``config``: ``rules`` (then the built-in ones unless
    ``builtin_rules`` is off) make an alert of a message, ``intake`` commits it and wakes
    the engine, ``metrics`` counts refusals as ``edge``."""

    edge: ClassVar[str]

    def __init__(
        self,
        intake: Intake,
        config: ConfigT,
        rules: Sequence[EmailRule],
        *,
        builtin_rules: bool = True,
        metrics: IngestMetrics | None = None,
    ) -> None:
        self._intake = intake
        self._config = config
        self._rules = tuple(rules)
        self._builtin = builtin_rules
        self._metrics = metrics

    def _count_refusal(self, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.rejected.labels(edge=self.edge, reason=reason).inc()
