"""A real HTTP server on loopback that serves .ics and JSON like a LAN calendar or a
scheduling tool: strong ETags and Last-Modified, 304s to conditional requests, and a switch
that takes it down (503) or makes it hang, for the source-down tests."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from voipalert.domain.rota import (
    Contact,
    ContactKind,
    EscalationPolicy,
    Person,
    PersonName,
    PolicyName,
    Rota,
    Route,
    Schedule,
    ScheduleName,
    ScheduleSource,
    Step,
    Target,
    TargetKind,
)
from voipalert.ingest.webhook import start_http

LAST_MODIFIED = "Mon, 02 Mar 2026 10:00:00 GMT"


@dataclass
class FeedServer:
    base: str = ""
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    down: bool = False
    hang: bool = False
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    not_modified: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def put(self, name: str, body: bytes | str, content_type: str = "text/calendar") -> str:
        self.files[name] = (body.encode() if isinstance(body, str) else body, content_type)
        return f"{self.base}/{name}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs, dict(request.headers)))
        if self.hang:
            await self.release.wait()  # until the test ends
        if self.down:
            return web.Response(status=503, text="down for maintenance")
        name = request.match_info["name"]
        if name not in self.files:
            return web.Response(status=404)
        body, content_type = self.files[name]
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if request.headers.get("If-None-Match") == etag:
            self.not_modified += 1
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(
            body=body,
            content_type=content_type,
            headers={"ETag": etag, "Last-Modified": LAST_MODIFIED},
        )


@asynccontextmanager
async def feed_server() -> AsyncIterator[FeedServer]:
    server = FeedServer()
    app = web.Application()
    app.router.add_get("/{name}", server.handle)
    runner, port = await start_http(app, "127.0.0.1", 0)
    server.base = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        server.release.set()
        await runner.cleanup()


def person(name: str, extension: str) -> Person:
    return Person(PersonName(name), "en", (Contact(ContactKind.EXTENSION, extension),))


def sourced_rota(source: ScheduleSource, zone: str = "Europe/Paris") -> Rota:
    people = (person("alice", "201"), person("bob", "202"), person("carol", "203"))
    step = Step((Target(TargetKind.SCHEDULE, "night"),), 300, 30)
    return Rota(
        people=people,
        schedules=(Schedule(ScheduleName("night"), zone, (), source),),
        policies=(EscalationPolicy(PolicyName("night"), (step,)),),
        routes=(Route("all", policy=PolicyName("night"), default=True),),
    )


def ics(*events: str, zones: str = "") -> str:
    """A VCALENDAR around ``events`` (CRLF line ends, RFC 5545 §3.1)."""
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//tests//EN", zones.strip(), *events]
    text = "\n".join(line for line in lines if line) + "\nEND:VCALENDAR\n"
    return text.replace("\n", "\r\n")


PARIS_ZONE = """BEGIN:VTIMEZONE
TZID:Europe/Paris
BEGIN:DAYLIGHT
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
TZNAME:CEST
DTSTART:19700329T020000
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU
END:DAYLIGHT
BEGIN:STANDARD
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
TZNAME:CET
DTSTART:19701025T030000
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU
END:STANDARD
END:VTIMEZONE"""


def event(uid: str, start: str, end: str, summary: str, *extra: str) -> str:
    return "\n".join(
        ["BEGIN:VEVENT", f"UID:{uid}", "DTSTAMP:20260101T000000Z", start, end,
         f"SUMMARY:{summary}", *extra, "END:VEVENT"]
    )  # fmt: skip
