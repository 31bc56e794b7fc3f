"""Is this e-mail a reply to one of our alert e-mails, and does it acknowledge?

Our e-mails carry ``Message-ID: <voipalert.NONCE@domain>`` (notify/email.py); a reply names
it in ``In-Reply-To``/``References`` (RFC 5322 §3.6.4). Mail clients that drop those still
keep the subject's ``[voipalert #ID]``. Either way the store then checks that the sender's
address is the one the e-mail went to (store/ack_links.py). The first line of the reply's
own text (above any quoted part) is what counts: ``1`` (the ack digit) acknowledges.
Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import getaddresses
from typing import Final

_REFERENCE: Final = re.compile(r"<voipalert\.([A-Za-z0-9_-]{22})@[^<>\s]{1,253}>")
_SUBJECT: Final = re.compile(r"\[voipalert #(\d{1,12})\]")
MAX_REFERENCES: Final = 50
MAX_LINE_CHARS: Final = 200


@dataclass(frozen=True, slots=True)
class MailReply:
    sender: str  # the From address, lower case
    nonce: str | None  # from In-Reply-To/References: which e-mail this answers
    alert_id: int | None  # from the subject, when no reference was kept
    acknowledge: bool
    first_line: str


def _first_line(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    if part is None:
        return ""
    try:
        text = part.get_content()
    except (LookupError, ValueError):
        return ""
    for line in str(text).splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith(">"):
            return ""  # the quote comes first: no answer of its own on top
        return stripped[:MAX_LINE_CHARS]
    return ""


def mail_reply(message: EmailMessage, ack_digit: str = "1") -> MailReply | None:
    """The reply in ``message``, or None when it answers none of our e-mails."""
    refs = " ".join(str(message.get(h, "")) for h in ("In-Reply-To", "References"))
    nonces = _REFERENCE.findall(refs)[:MAX_REFERENCES]
    subject = _SUBJECT.search(str(message.get("Subject", "")))
    if not nonces and subject is None:
        return None
    senders = [address for _, address in getaddresses([str(message.get("From", ""))])]
    if len(senders) != 1 or "@" not in senders[0]:
        return None
    line = _first_line(message)
    acknowledge = re.fullmatch(rf"{re.escape(ack_digit)}\s*[.!]?", line) is not None
    return MailReply(
        sender=senders[0].lower(),
        nonce=nonces[-1] if nonces else None,  # the newest reference is the one answered
        alert_id=None if nonces or subject is None else int(subject.group(1)),
        acknowledge=acknowledge,
        first_line=line,
    )
