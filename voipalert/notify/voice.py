"""The real notifier: a phone call that speaks the alert and waits for the ack key.

``VoiceNotifier`` turns a ``Notification`` into a SIP target, starts rendering the message
while the phone rings (so the callee never waits for synthesis — docs/architecture.md
§13), runs the call script through the ``Phone`` and maps its report onto a
``NotifyResult``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Final

import numpy as np
from numpy.typing import NDArray

from voipalert.calls import CallReport, Phone
from voipalert.callscript import (
    ACKNOWLEDGED,
    GOODBYE,
    GREETING,
    HANDLED_ELSEWHERE,
    INVALID_KEY,
    MESSAGE,
    NO_ACKNOWLEDGEMENT,
    PRESS_TO_ACKNOWLEDGE,
    PRESS_TO_REPEAT,
    VOICEMAIL,
)
from voipalert.domain.alert import AttemptOutcome
from voipalert.domain.rota import Contact, ContactKind
from voipalert.logs import log_context
from voipalert.notify import Notification, NotifyResult, StopRequest
from voipalert.sip.errors import RemoteProtocolError
from voipalert.sip.uri import SipUri
from voipalert.trunks import Trunks
from voipalert.tts.prompt import Prompt
from voipalert.tts.speech import Speech

log = logging.getLogger("voipalert.notify")
PHRASE_FIELDS: Final = ("name",)
ANSWER_PHRASES: Final = (GREETING, PRESS_TO_ACKNOWLEDGE, PRESS_TO_REPEAT)
# Said to a mailbox right after its beep (callscript): made with the answer's phrases, so
# the beep never waits for synthesis, nor synthesis competes with the call's own audio.
MAILBOX_PHRASES: Final = (VOICEMAIL, GOODBYE)
CALL_PHRASES: Final = (
    GREETING,
    PRESS_TO_ACKNOWLEDGE,
    PRESS_TO_REPEAT,
    INVALID_KEY,
    ACKNOWLEDGED,
    NO_ACKNOWLEDGEMENT,
    HANDLED_ELSEWHERE,
    GOODBYE,
    VOICEMAIL,
)
KEY_NAMES: Final = {
    "en": {"*": "star", "#": "hash"},
    "fr": {"*": "étoile", "#": "dièse"},
}


def key_name(key: str, language: str) -> str:
    """How a phone key is said in a prompt ("press star", "appuyez sur dièse")."""
    return KEY_NAMES.get(language, KEY_NAMES["en"]).get(key, key)


async def warm_phrases(speech: Speech, language: str, ack_digit: str, repeat_digit: str) -> None:
    """Render every fixed phrase of a call into the speech cache (at start-up)."""
    menu = menu_fields(ack_digit, repeat_digit, language)
    for key in CALL_PHRASES:
        await speech.phrase(key, language=language, **menu)


def menu_fields(ack_digit: str, repeat_digit: str, language: str) -> dict[str, str]:
    """The catalog's menu placeholders: the configured keys, as the voice says them."""
    return {
        "ack_key": key_name(ack_digit, language),
        "repeat_key": key_name(repeat_digit, language),
    }


def target_uri(contact: Contact | str, domain: str) -> SipUri:
    """Where to call a contact: a SIP URI as given, an extension at our domain, a number
    through the trunk (``user=phone``, RFC 3261 §19.1.1). Raises ``ValueError``."""
    if isinstance(contact, str):
        kind = ContactKind.SIP if ":" in contact else (
            ContactKind.NUMBER if contact.startswith("+") else ContactKind.EXTENSION
        )  # fmt: skip
        contact = Contact(kind, contact)
    address = contact.address.strip()
    if contact.kind is ContactKind.EMAIL:
        raise ValueError("an e-mail address is not a SIP target")
    if contact.kind is ContactKind.SIP:
        try:
            return SipUri.parse(address, "contact")
        except RemoteProtocolError as exc:
            raise ValueError(str(exc)) from None
    user = address.replace(" ", "").replace("-", "")
    if not user or not all(c.isdigit() or c in "+*#" for c in user):
        raise ValueError(f"{contact.kind.value} {address!r} is not a dialable number")
    params: tuple[tuple[str, str | None], ...] = ()
    if contact.kind is ContactKind.NUMBER:
        params = (("user", "phone"),)
    return SipUri(user=user.replace("#", "%23"), host=domain, params=params)


class SpokenPrompts:
    """The prompts of one call in one language. What the answer needs (greeting, message,
    menu) and what a mailbox's beep needs (the voicemail phrase, goodbye) start rendering at
    once, in the speech workers, while the INVITE goes out. The
    other phrases are made when first asked for: synthesis running in the background while
    the callee listens would compete with the 20 ms pacing on a small machine (``serve``
    renders them all into the cache at start-up, so a call finds them there)."""

    def __init__(
        self,
        speech: Speech,
        language: str,
        fields: Mapping[str, object],
        menu: Mapping[str, str] | None = None,
    ) -> None:
        self._speech = speech
        self._language = language
        self._fields = dict(fields)
        self._menu = dict(menu or menu_fields("1", "0", language))
        extra = {k: self._fields[k] for k in PHRASE_FIELDS if k in self._fields} | self._menu
        self._phrases: dict[str, asyncio.Future[Prompt]] = {
            MESSAGE: asyncio.ensure_future(speech.phrase(MESSAGE, language=language, **fields))
        }
        for key in (*ANSWER_PHRASES, *MAILBOX_PHRASES):
            self._phrases[key] = asyncio.ensure_future(
                speech.phrase(key, language=language, **extra)
            )

    async def __call__(self, key: str) -> NDArray[np.int16]:
        future = self._phrases.get(key)
        if future is None:
            extra = {k: self._fields[k] for k in PHRASE_FIELDS if k in self._fields}
            future = self._phrases[key] = asyncio.ensure_future(
                self._speech.phrase(key, language=self._language, **(extra | self._menu))
            )
        return (await asyncio.shield(future)).pcm

    async def close(self) -> None:
        for future in self._phrases.values():
            if not future.done():
                future.cancel()
        # gather, not a suppress around each await: a cancellation of close() itself must
        # still propagate, and a phrase that failed is said in the log, not swallowed.
        outcomes = await asyncio.gather(*self._phrases.values(), return_exceptions=True)
        for key, outcome in zip(self._phrases, outcomes, strict=True):
            if isinstance(outcome, Exception):
                log.warning("phrase %r of the call could not be made: %s", key, outcome)


class VoiceNotifier:
    def __init__(self, phone: Phone | Trunks, speech: Speech, domain: str) -> None:
        # Trunks: the call fails over between trunks within the attempt (docs/sip-failover.md).
        self._phone = phone
        self._speech = speech
        self._domain = domain

    async def notify(self, notification: Notification, stop: StopRequest) -> NotifyResult:
        n = notification
        try:
            target = target_uri(n.contact, self._domain)
        except ValueError as exc:
            return NotifyResult(AttemptOutcome.FAILED, detail=f"bad contact: {exc}")
        menu = menu_fields(n.menu.ack_digit, n.menu.repeat_digit, n.language)
        prompts = SpokenPrompts(self._speech, n.language, n.fields, menu)
        script = replace(
            self._phone.script, ack_digit=n.menu.ack_digit, repeat_digit=n.menu.repeat_digit
        )
        try:
            with log_context(alert_id=n.alert_id, call_id=n.attempt_key):
                report = await self._phone.call(
                    target, prompts, ring_timeout=n.ring_timeout_seconds, script=script,
                    progress=lambda step: log.info("%s: %s", n.person, step), stop=stop,
                )  # fmt: skip
        finally:
            await prompts.close()
        return notify_result(report)


def notify_result(report: CallReport) -> NotifyResult:
    detail = report.sip_reason
    if report.progress and not report.answered:
        detail = f"{detail}; progress: {report.progress}"
        if report.classified_by:
            detail = f"{detail}; classified by {report.classified_by}"
    if report.digit_source:
        detail = f"{detail}; key {report.digit} by {report.digit_source}"
    if report.voicemail:
        detail = f"{detail}; message left on voicemail"
    if report.stopped is not None:
        detail = f"{detail}; stopped: {report.stopped.value}"
    if report.failed_trunks:
        detail = f"{detail}; failed trunks: {', '.join(report.failed_trunks)}"
    if report.trunk is not None:
        detail = f"{detail}; via trunk {report.trunk}"
    if report.analysis_outages:
        detail = (
            f"{detail}; audio analysis worker died {report.analysis_outages}x: in-band keys "
            "and beeps unheard until it restarted"
        )
    return NotifyResult(
        outcome=report.outcome,
        sip_status=report.sip_status,
        sip_reason=report.sip_reason,
        digit=report.digit,
        ring_seconds=report.ring_seconds,
        talk_seconds=report.talk_seconds,
        detail=detail,
        duration_seconds=report.duration_seconds,
        quality=report.quality,
        dial_delay_seconds=report.dial_delay_seconds,
    )
