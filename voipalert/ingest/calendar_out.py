"""Calendars out: each person's shifts and each schedule as an iCalendar feed at a secret
URL, for calendar applications to subscribe to (docs/rota-sources.md).

``GET /api/v1/calendars/{person|schedule}/{name}/{token}.ics``. Calendar applications
cannot send an ``Authorization`` header, so the URL is the credential, like a heartbeat's.
The token is derived, not stored: HMAC-SHA256 of the server secret over the kind, the name
and a generation number (``calendar_feeds``), so ``voipalert calendar url`` can print it
again at any time and ``--rotate`` (a new generation) makes the old URL stop working. The
presented token is compared with the expected one in constant time, and an unknown name
costs the same as a wrong token and gets the same 404. Requests are rate limited per
client address.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from aiohttp import web

from voipalert.domain.oncall import resolve_local, shift_at, who_is_on_call
from voipalert.domain.oncall_view import Segment, source_of
from voipalert.domain.rota import Layer, Override, Rota, Schedule
from voipalert.ingest.app_keys import CLOCK, STORE
from voipalert.ingest.calendar_urls import KINDS, calendar_token
from voipalert.ingest.heartbeat import RateLimit
from voipalert.ingest.http_errors import ApiError
from voipalert.rotafile.ics import CalendarEvent, calendar

PAST_DAYS: Final = 14
AHEAD_DAYS: Final = 90
REQUESTS_PER_MINUTE: Final = 60
MAX_NAME_CHARS: Final = 200
MAX_TOKEN_CHARS: Final = 100
CONTENT_TYPE: Final = "text/calendar"

CALENDAR_LIMIT = web.AppKey("calendar_rate_limit", RateLimit)


def _window(now: datetime) -> tuple[datetime, int]:
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(days=PAST_DAYS)
    return start, PAST_DAYS + AHEAD_DAYS


def _layer_points(layer: Layer, zone: ZoneInfo, start: datetime, end: datetime) -> set[datetime]:
    points: set[datetime] = set()
    first = resolve_local(layer.start_date, layer.handoff, zone)
    shift = shift_at(layer, zone, max(start, first))
    while shift is not None and shift.start < end:
        points |= {shift.start, shift.end}
        shift = shift_at(layer, zone, shift.end)
    day = start.astimezone(zone).date() - timedelta(days=1)
    while day <= end.astimezone(zone).date():
        for window in layer.windows:
            if day.isoweekday() in window.days:
                after = day + timedelta(days=1) if window.end <= window.start else day
                points |= {
                    resolve_local(day, window.start, zone),
                    resolve_local(after, window.end, zone),
                }
        day += timedelta(days=1)
    return points


def exact_segments(
    schedule: Schedule, overrides: Sequence[Override], start: datetime, days: int
) -> list[Segment]:
    """Who is on call from ``start`` for ``days`` days, exactly: the answer can only change
    at a layer's hand-off, a window's edge, an override's or a source shift's start or end,
    so it is asked at those instants only (``oncall_view.segments`` samples quarter hours
    instead, which a calendar feed over months cannot afford)."""
    end = start + timedelta(days=days)
    zone = ZoneInfo(schedule.time_zone)
    points = {start}
    for layer in schedule.layers:
        points |= _layer_points(layer, zone, start, end)
    points |= {t for o in overrides if o.schedule == schedule.name for t in (o.start, o.end)}
    if schedule.feed is not None:
        points |= {t for f in schedule.feed.shifts for t in (f.start, f.end) if t is not None}
        points |= {schedule.feed.window_start, schedule.feed.window_end}
    found: list[Segment] = []
    for at in sorted(t for t in points if start <= t < end):
        answer = who_is_on_call(schedule, overrides, at)
        source = "" if answer.person is None else source_of(answer)
        if found and found[-1].person == answer.person and found[-1].source == source:
            continue
        if found:
            found[-1] = replace(found[-1], end=at)
        found.append(Segment(answer.person, at, end, source))
    return found


def schedule_events(rota: Rota, name: str, start: datetime, days: int) -> list[CalendarEvent]:
    """The schedule's shifts (who is on call, from its layers, source and overrides)."""
    schedule = rota.schedule(name)
    assert schedule is not None
    return [
        CalendarEvent(seg.start, seg.end, seg.person, f"On call for {name} ({seg.source})")
        for seg in exact_segments(schedule, rota.overrides_for(name), start, days)
        if seg.person is not None
    ]


def person_events(rota: Rota, name: str, start: datetime, days: int) -> list[CalendarEvent]:
    """The person's shifts in every schedule."""
    events = []
    for schedule in rota.schedules:
        for seg in exact_segments(schedule, rota.overrides_for(schedule.name), start, days):
            if seg.person == name:
                events.append(
                    CalendarEvent(
                        seg.start, seg.end, f"On call: {schedule.name}", f"({seg.source})"
                    )
                )
    return sorted(events, key=lambda e: e.start)


def render(rota: Rota, kind: str, name: str, now: datetime) -> str:
    start, days = _window(now)
    if kind == "schedule":
        return calendar(
            f"On call: {name}", f"schedule\0{name}", schedule_events(rota, name, start, days), now
        )
    return calendar(
        f"On call: {name}", f"person\0{name}", person_events(rota, name, start, days), now
    )


async def feed(request: web.Request) -> web.Response:
    app = request.app
    if not app[CALENDAR_LIMIT].allow(request.remote or "?"):
        raise ApiError(429, "too many calendar requests; slow down", reason="rate_limited")
    kind = request.match_info["kind"]
    name = request.match_info["name"]
    presented = request.match_info["token"]
    unknown = ApiError(404, "no such calendar", reason="no_such_calendar")
    if kind not in KINDS or len(name) > MAX_NAME_CHARS or len(presented) > MAX_TOKEN_CHARS:
        raise unknown
    store = app[STORE]
    rota, _ = await store.load_rota_with_feeds()
    exists = (rota.person(name) if kind == "person" else rota.schedule(name)) is not None
    generation = await store.calendar_generation(kind, name)
    expected = calendar_token(store.server_key, kind, name, generation)
    # Compared whether or not the name exists, in constant time (RFC 6749 §10.12's advice).
    if not hmac.compare_digest(presented.encode(), expected.encode()) or not exists:
        raise unknown
    body = await asyncio.to_thread(render, rota, kind, name, app[CLOCK].now_utc())
    return web.Response(
        text=body,
        content_type=CONTENT_TYPE,
        charset="utf-8",
        headers={"Cache-Control": "private, max-age=300", "Referrer-Policy": "no-referrer"},
    )


def add_calendar_routes(app: web.Application, api: str) -> None:
    app[CALENDAR_LIMIT] = RateLimit(REQUESTS_PER_MINUTE, app[CLOCK])
    app.add_routes(
        [web.get(f"{api}/calendars/{{kind}}/{{name}}/{{token}}.ics", feed, allow_head=False)]
    )
