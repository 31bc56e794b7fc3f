"""``/mass`` (managers): launch a mass alert, which calls every member of a team at once and
records each person's outcome (the same alert as ``POST /api/v1/alerts`` with ``"kind":
"mass"``, committed through the same intake, which wakes the engine). The launch leads to
the alert's page, whose calls and totals follow live; resolving it there cancels the calls
not yet answered. The launch is in the audit log under the manager's name.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import urlencode

from aiohttp import web

from voipalert.console.keys import CONSOLE, console_store, session_of
from voipalert.console.prompts import SPEECH, mass_fields, spoken_text
from voipalert.console.render import render, see_other
from voipalert.domain.alert import AlertKind, NewAlert, Severity
from voipalert.domain.rota import TeamName
from voipalert.ingest.app_keys import INTAKE
from voipalert.ingest.schemas import MAX_SUMMARY_CHARS
from voipalert.store import AlertFilter, Page, UnknownReference
from voipalert.tts.templates import TextLimits

RECENT: Final = 20


async def _page(request: web.Request, status: int = 200, **extra: Any) -> web.Response:
    store = console_store(request)
    rota = await store.load_rota()
    recent = await store.list_alerts(AlertFilter(), Page(200))
    values: dict[str, Any] = {
        "teams": [(t.name, len(t.members)) for t in rota.teams],
        "severities": [s.value for s in Severity],
        "recent": [a for a in recent.alerts if a.kind is AlertKind.MASS][:RECENT],
        "error": None,
        "form": {},
        "max_chars": MAX_SUMMARY_CHARS,
        "preview": None,
    }
    values.update(extra)
    return await render(request, "mass.html", status, **values)


async def _preview(request: web.Request, entry: dict[str, str], severity: str) -> web.Response:
    """The message as the team will hear it (text, and the rendered prompt to play)."""
    language = entry["lang"] if entry["lang"] in ("en", "fr") else "en"
    speech = request.app.get(SPEECH)
    limits = speech.limits if speech is not None else TextLimits()
    text = spoken_text(language, mass_fields(entry["message"], severity), limits)
    query = urlencode({"message": entry["message"], "severity": severity, "lang": language})
    audio = f"/mass/prompt.wav?{query}" if speech is not None else None
    return await _page(request, form=entry, preview={"text": text, "audio": audio})


async def launcher(request: web.Request) -> web.StreamResponse:
    return await _page(request)


async def launch(request: web.Request) -> web.StreamResponse:
    session = await session_of(request)
    assert session is not None
    form = await request.post()
    entry = {k: str(form.get(k, "")).strip() for k in ("team", "message", "severity", "lang")}
    severity = entry["severity"] if entry["severity"] in set(Severity) else "critical"
    if not entry["message"] or len(entry["message"]) > MAX_SUMMARY_CHARS or not entry["team"]:
        return await _page(request, 422, error="Pick a team and type a message.", form=entry)
    if form.get("action") == "preview":
        return await _preview(request, entry, severity)
    new = NewAlert(
        summary=entry["message"], severity=Severity(severity), source="console",
        team=TeamName(entry["team"]), kind=AlertKind.MASS,
        fields={"launched_by": session.user.name},
    )  # fmt: skip
    try:
        committed = await request.app[INTAKE].submit(new, sender_chose_target=True)
    except UnknownReference:
        return await _page(request, 422, error="Pick a team and type a message.", form=entry)
    alert = committed.alert
    assert alert is not None
    await request.app[CONSOLE].users.audit(
        session.user.name, "console.mass_alert", {"team": entry["team"]}, alert_id=alert.id
    )
    return see_other(f"/alerts/{alert.id}")
