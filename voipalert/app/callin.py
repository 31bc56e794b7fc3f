"""Wiring of call-in (docs/call-in.md) into ``serve``: the user agent answers calls to us
only when ``[callin] enabled``, and the service that runs the menu is attached to the
phone, its fixed phrases rendered into the speech cache first (a task of serve's
TaskGroup, cancelled at shutdown)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace

from voipalert.callin_menu import PHRASES, MenuConfig
from voipalert.calls import Phone
from voipalert.clock import Clock
from voipalert.notify.callin import UNKNOWN, CallinConfig, CallinService
from voipalert.settings import Settings
from voipalert.sip.config import UAConfig
from voipalert.store import Store
from voipalert.tts.speech import Speech

log = logging.getLogger("voipalert.callin")


def with_callin(settings: Settings, ua: UAConfig) -> UAConfig:
    """0 incoming calls (every INVITE to us refused 486) unless call-in is on."""
    callin = settings.callin
    return replace(ua, max_incoming_calls=callin.max_calls if callin.enabled else 0)


def callin_config(settings: Settings) -> CallinConfig:
    callin = settings.callin
    return CallinConfig(
        pin_required=callin.pin_required,
        max_failures_per_hour=callin.max_failures_per_hour,
        language=callin.language,
        menu=MenuConfig(
            max_pin_attempts=callin.max_pin_attempts,
            max_call_seconds=float(callin.max_call_seconds),
        ),
    )


async def run_callin(
    settings: Settings, store: Store, speech: Speech, clock: Clock, phone: Phone,
    wake: Callable[[], None], languages: Sequence[str],
    observe: Callable[[str], None] | None = None,
) -> None:  # fmt: skip
    """A task of ``serve`` while call-in is on: render its phrases into the speech cache,
    then take the calls made to us until cancelled (calls in progress are then hung up).
    Until the phrases are ready (seconds at the first start, nothing once cached) a call
    to us is refused 486 like when call-in is off."""
    if not settings.callin.enabled:
        return
    try:
        for language in sorted({*languages, settings.callin.language}):
            for key in (*PHRASES, UNKNOWN):
                await speech.phrase(key, language=language)
    except Exception:
        # A language without a voice, a broken voice: call-in stays off (calls to us get
        # 486), the rest of serve goes on; the log says why.
        log.exception("call-in is off: its phrases could not be rendered")
        return
    service = CallinService(store, speech, clock, wake, callin_config(settings), observe)
    service.attach(phone)
    log.info("call-in: answering calls to %s", phone.agent.config.user)
    try:
        await asyncio.Event().wait()
    finally:
        phone.on_incoming = None
        await service.aclose()
