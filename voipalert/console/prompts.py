"""What a call says, in the console: the message text of an alert as the callee hears it
(the catalog's ``message`` phrase over the fields the engine gives the notifier), and the
rendered prompt as a WAV file to play in the browser, from the running service's own speech
(the same cache, voices and pronunciation as the calls).

``GET /alerts/ID/prompt.wav?lang=xx`` (viewers) and ``GET /mass/prompt.wav?...`` (managers,
before launching a mass alert). Rendering runs in the speech workers; a prompt already said
by a call comes from the cache. Without a speech engine (the console outside ``serve``) the
pages show the text only and the audio routes answer 503.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Protocol

from aiohttp import web

from voipalert.callscript import MESSAGE
from voipalert.console.keys import console_store
from voipalert.console.render import error_page_async
from voipalert.domain.alert import Alert, Severity
from voipalert.engine import alert_fields
from voipalert.tts.catalog import load_catalog
from voipalert.tts.errors import TemplateConfigError
from voipalert.tts.prompt import Prompt
from voipalert.tts.templates import TextLimits
from voipalert.tts.wav import encode_wav

LANGUAGE_CHARS: Final = 3
MAX_MESSAGE_CHARS: Final = 1000


class PromptSpeech(Protocol):
    """The part of ``tts.speech.Speech`` the console uses."""

    limits: TextLimits

    async def phrase(self, key: str, *, language: str, **fields: object) -> Prompt: ...


SPEECH: Final[web.AppKey[PromptSpeech]] = web.AppKey("console_speech")


def spoken_text(language: str, fields: Mapping[str, object], limits: TextLimits) -> str | None:
    """The message as said in ``language`` (None when that language has no catalog)."""
    try:
        return load_catalog(language).render(MESSAGE, fields, limits)
    except (TemplateConfigError, KeyError, ValueError):
        return None


def texts_for(app: web.Application, alert: Alert, languages: list[str]) -> list[tuple[str, str]]:
    """(language, text) for each language the alert was (or will be) said in."""
    speech = app.get(SPEECH)
    limits = speech.limits if speech is not None else TextLimits()
    fields = alert_fields(alert)
    found = []
    for language in languages:
        text = spoken_text(language, fields, limits)
        if text is not None:
            found.append((language, text))
    return found


def mass_fields(message: str, severity: str) -> dict[str, str]:
    """The fields a mass alert launched from the console will be said with (before it
    exists: no id yet)."""
    return {"summary": message, "severity": severity, "source": "console", "alert_id": ""}


def _language(request: web.Request) -> str:
    lang = request.query.get("lang", "en")
    return lang if lang.isascii() and lang.isalpha() and len(lang) <= LANGUAGE_CHARS else "en"


async def _wav(request: web.Request, fields: Mapping[str, object]) -> web.StreamResponse:
    speech = request.app.get(SPEECH)
    if speech is None:
        return await error_page_async(request, 503, "Not found", "Not found")
    try:
        prompt = await speech.phrase(MESSAGE, language=_language(request), **fields)
    except (TemplateConfigError, KeyError, ValueError):
        return await error_page_async(request, 404, "Not found", "Not found")
    return web.Response(
        body=encode_wav(prompt.pcm, prompt.sample_rate), content_type="audio/wav",
        headers={"Cache-Control": "private, max-age=300"},
    )  # fmt: skip


async def alert_prompt(request: web.Request) -> web.StreamResponse:
    alert = await console_store(request).get_alert(int(request.match_info["id"]))
    if alert is None:
        return await error_page_async(request, 404, "Not found", "Not found")
    return await _wav(request, alert_fields(alert))


async def mass_prompt(request: web.Request) -> web.StreamResponse:
    message = request.query.get("message", "").strip()[:MAX_MESSAGE_CHARS]
    severity = request.query.get("severity", "critical")
    if not message or severity not in set(Severity):
        return await error_page_async(request, 404, "Not found", "Not found")
    return await _wav(request, mass_fields(message, severity))
