"""The live board (``/``), its update stream (``/events``), one alert's page, and the
acknowledge / resolve forms.

Acknowledge and resolve go through the same store methods as the API's
(``Store.ack_alert`` / ``resolve_alert``), with the console user as the actor, and wake the
engine the same way, so a call in progress hears "handled by someone else".

The stream is server-sent events: the handler polls the store's change version (the newest
audit entry) every ``events_poll_seconds`` and, when it moved (or every 30 s, for the ages),
sends the board's rows rendered by the very template the page uses, so text from alerts is
escaped on one path only. The stream ends at log-out, at shutdown, and when the user's
session is gone.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from voipalert.console.keys import CONSOLE, console_store, session_of
from voipalert.console.prompts import SPEECH, texts_for
from voipalert.console.render import (
    error_page_async,
    format_age,
    page_context,
    render,
    render_text,
    see_other,
)
from voipalert.console.security import SESSION_COOKIE
from voipalert.domain.alert import Alert, AlertStatus, Attempt, Severity
from voipalert.ingest.app_keys import CLOCK, WAKE
from voipalert.store import AlertFilter, AlertNotFound, Page
from voipalert.store.users import Role

OPEN: Final = frozenset({AlertStatus.TRIGGERED, AlertStatus.ACKNOWLEDGED})
CLOSED: Final = frozenset({AlertStatus.RESOLVED, AlertStatus.CLOSED_UNACKNOWLEDGED})
BOARD_OPEN_LIMIT: Final = 200
BOARD_RECENT_LIMIT: Final = 20
REFRESH_SECONDS: Final = 30.0
KEEPALIVE_SECONDS: Final = 15.0
SESSION_CHECK_SECONDS: Final = 5.0
FILTER_MAX_CHARS: Final = 64
ALERT_ID_DIGITS: Final = 18
DONE_MESSAGES: Final = {
    "ack": "Alert #%(id)s acknowledged.",
    "resolve": "Alert #%(id)s resolved.",
}


@dataclass(frozen=True, slots=True)
class BoardRow:
    alert: Alert
    age: str
    step: str
    calling: tuple[tuple[str, str], ...]  # (person, state) of live attempts


def _step(step: int, repeat: int) -> str:
    """Step 2 of the first pass is "2"; of the third pass "2 \u00d73"."""
    return f"{step + 1}" + (f" \u00d7{repeat + 1}" if repeat else "")


async def _rows(request: web.Request, alerts: tuple[Alert, ...]) -> list[BoardRow]:
    now = request.app[CLOCK].now_utc()
    live = await request.app[CONSOLE].users.live_attempts([a.id for a in alerts])
    return [
        BoardRow(
            alert=a,
            age=format_age(now - a.created_at),
            step=_step(a.position.step, a.position.repeat),
            calling=tuple(live[a.id]),
        )
        for a in alerts
    ]


@dataclass(frozen=True, slots=True)
class BoardFilter:
    """The board's filters, from the query string (the stream gets the page's own)."""

    severity: Severity | None = None
    team: str | None = None
    source: str | None = None

    @classmethod
    def of(cls, query: Mapping[str, str]) -> BoardFilter:
        severity = query.get("severity", "")
        team = query.get("team", "").strip()[:FILTER_MAX_CHARS]
        source = query.get("source", "").strip()[:FILTER_MAX_CHARS]
        return cls(
            Severity(severity) if severity in set(Severity) else None,
            team or None,
            source or None,
        )

    def store_filter(self, statuses: frozenset[AlertStatus]) -> AlertFilter:
        return AlertFilter(statuses=statuses, team=self.team, source=self.source)

    def keeps(self, alert: Alert) -> bool:
        return self.severity is None or alert.severity is self.severity


SEVERITY_RANK: Final = {s: rank for rank, s in enumerate(Severity)}  # critical first


def _most_urgent_first(alerts: Iterable[Alert]) -> tuple[Alert, ...]:
    """Triggered before acknowledged, then by severity, then newest first."""
    return tuple(
        sorted(
            alerts,
            key=lambda a: (
                a.status is not AlertStatus.TRIGGERED,
                SEVERITY_RANK[a.severity],
                -a.id,
            ),
        )
    )


async def _board_values(request: web.Request) -> dict[str, Any]:
    store = console_store(request)
    wanted = BoardFilter.of(request.query)
    open_page = await store.list_alerts(wanted.store_filter(OPEN), Page(BOARD_OPEN_LIMIT))
    recent = await store.list_alerts(wanted.store_filter(CLOSED), Page(BOARD_RECENT_LIMIT))
    rota = await store.load_rota()
    session = await session_of(request)
    return {
        "open_rows": await _rows(
            request, _most_urgent_first(filter(wanted.keeps, open_page.alerts))
        ),
        "recent_rows": await _rows(request, tuple(filter(wanted.keeps, recent.alerts))),
        "may_act": session is not None and session.user.role >= Role.RESPONDER,
        "filter": wanted,
        "severities": [s.value for s in Severity],
        "teams": [t.name for t in rota.teams],
    }


async def board(request: web.Request) -> web.StreamResponse:
    return await render(request, "board.html", **await _board_values(request))


def sse_message(event: str, data: str) -> bytes:
    """One server-sent event; every line of ``data`` gets its own ``data:`` prefix."""
    lines = "".join(f"data: {line}\n" for line in data.replace("\r", "").split("\n"))
    return f"event: {event}\n{lines}\n".encode()


async def events(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                 "X-Accel-Buffering": "no"},
    )  # fmt: skip
    await response.prepare(request)
    try:
        await _stream(request, response)
    except ConnectionError:
        pass  # the browser went away (closed the tab, navigated): nothing to tell it
    return response


async def _stream(request: web.Request, response: web.StreamResponse) -> None:
    """Send the page's live part now, then whenever the store changed (the shared feed says
    so), and every 30 s for the ages; end when the session does or at shutdown."""
    state = request.app[CONSOLE]
    await response.write(b"retry: 3000\n\n")
    loop = asyncio.get_running_loop()
    session_id = request.cookies.get(SESSION_COOKIE, "")
    sent_version: int | None = None
    last_sent = last_write = last_check = loop.time()
    with state.feed.listening():
        await state.feed.current()
        while not state.stopping.is_set():
            now = loop.time()
            version = state.feed.version
            if sent_version != version or now - last_check >= SESSION_CHECK_SECONDS:
                if await state.users.session(session_id) is None:
                    await response.write(sse_message("logout", "/login"))
                    return
                last_check = now
            if sent_version != version or now - last_sent >= REFRESH_SECONDS:
                await response.write(await _stream_event(request))
                sent_version, last_sent, last_write = version, now, now
            elif now - last_write >= KEEPALIVE_SECONDS:
                await response.write(b": keep-alive\n\n")  # proxies close silent streams
                last_write = now
            await state.feed.wait(version, timeout=SESSION_CHECK_SECONDS)


async def _stream_event(request: web.Request) -> bytes:
    """The board's rows, or with ``?alert=ID`` that alert's calls and timeline (its page
    follows the calls as they happen: a mass alert's outcomes, person by person)."""
    context = await page_context(request)
    raw = request.query.get("alert", "")
    if raw.isascii() and raw.isdigit() and len(raw) <= ALERT_ID_DIGITS:
        detail = await console_store(request).get_alert_with_attempts(int(raw))
        if detail is not None:
            trail = await console_store(request).audit_trail(detail.alert.id)
            context.update(
                attempts=detail.attempts,
                totals=outcome_totals(detail.attempts),
                trail=[(e.at, e.actor, e.action, _timeline_detail(e.detail)) for e in trail],
            )
            return sse_message("calls", render_text("_calls.html", context))
    context.update(await _board_values(request))
    return sse_message("board", render_text("_board.html", context))


def outcome_totals(attempts: Sequence[Attempt]) -> list[tuple[str, int]]:
    """How many calls ended each way (or are in each live state), most first."""
    counts = Counter(a.outcome.value if a.outcome else a.state.value for a in attempts)
    return counts.most_common()


def _alert_id(request: web.Request) -> int:
    return int(request.match_info["id"])


def _timeline_detail(detail: object) -> str:
    return json.dumps(detail, ensure_ascii=False, default=str, sort_keys=True)


async def alert_page(request: web.Request) -> web.StreamResponse:
    store = console_store(request)
    alert_id = _alert_id(request)
    detail = await store.get_alert_with_attempts(alert_id)
    if detail is None:
        return await error_page_async(request, 404, "Not found", "Not found")
    trail = await store.audit_trail(detail.alert.id)
    session = await session_of(request)
    done = request.query.get("done")
    return await render(
        request,
        "alert.html",
        alert=detail.alert,
        attempts=detail.attempts,
        totals=outcome_totals(detail.attempts),
        trail=[(e.at, e.actor, e.action, _timeline_detail(e.detail)) for e in trail],
        fields_json=json.dumps(detail.alert.fields, indent=2, ensure_ascii=False, default=str),
        labels=sorted(detail.alert.labels.items()),
        done=DONE_MESSAGES.get(done or ""),
        spoken=texts_for(
            request.app, detail.alert, sorted({a.language for a in detail.attempts}) or ["en"]
        ),
        can_play=SPEECH in request.app,
        may_act=session is not None and session.user.role >= Role.RESPONDER,
    )


async def confirm(request: web.Request) -> web.StreamResponse:
    """The confirmation step, a page of its own so it works without JavaScript."""
    alert = await console_store(request).get_alert(_alert_id(request))
    if alert is None:
        return await error_page_async(request, 404, "Not found", "Not found")
    return await render(request, "confirm.html", alert=alert, action=request.match_info["action"])


async def act(request: web.Request) -> web.StreamResponse:
    session = await session_of(request)
    assert session is not None  # the guard let a responder through
    store, alert_id, action = (
        console_store(request),
        _alert_id(request),
        request.match_info["action"],
    )
    name = session.user.name
    try:
        if action == "ack":
            transition = await store.ack_alert(alert_id, by=name, via="console")
        else:
            transition = await store.resolve_alert(alert_id, by=name)
    except AlertNotFound:
        return await error_page_async(request, 404, "Not found", "Not found")
    if transition.changed:
        request.app[WAKE]()
        return see_other(f"/alerts/{alert_id}?done={action}")
    status = transition.alert.status.value
    _ = (await page_context(request))["_"]
    return await render(
        request,
        "error.html",
        409,
        title=f"#{alert_id}",
        message=_("Alert #%(id)s was already %(status)s.", id=alert_id, status=_(status)),
    )
