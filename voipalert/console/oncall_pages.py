"""``/oncall``: who is on call now and over the next 14 days, the "what if" time (the answers
of ``voipalert oncall --at``, from the same code: ``domain.oncall_view``), and overrides.

An override is added or removed one at a time, like ``voipalert override add|remove`` and
the REST API (docs/rota-edits.md), with their validation (an unknown person, an end before
the start, a time that is not ISO or does not exist are refused with the same reason) and
without replacing the rota, so the overrides made elsewhere keep who made them. A responder
may add or remove only overrides that put themselves on call (their user name is their rota
name); a manager any. Each change is in the audit log under the user's name.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from aiohttp import web

from voipalert.console.keys import console_store, session_of
from voipalert.console.render import render, see_other
from voipalert.domain.errors import RotaError
from voipalert.domain.oncall import who_is_on_call
from voipalert.domain.oncall_view import describe, parse_at, segments, source_of
from voipalert.domain.override_edit import Origin, OverrideRequest
from voipalert.ingest.app_keys import CLOCK
from voipalert.store.users import Role, Session

FIELD_MAX_CHARS: Final = 64
OWN_ONLY: Final = "You may only add or remove your own overrides."
DONE: Final = {"added": "Override added.", "removed": "Override removed."}


def _may_change(session: Session, person: str) -> bool:
    return session.user.role >= Role.MANAGER or session.user.name == person


async def _page(request: web.Request, status: int = 200, **extra: Any) -> web.StreamResponse:
    # With the live sources' copies, so the page answers as `voipalert oncall` does.
    rota, _ = await console_store(request).load_rota_with_feeds()
    session = await session_of(request)
    assert session is not None
    now = request.app[CLOCK].now_utc()
    at_text = request.query.get("at", "").strip()[:FIELD_MAX_CHARS]
    schedules = []
    for schedule in rota.schedules:
        overrides = rota.overrides_for(schedule.name)
        answer = who_is_on_call(schedule, overrides, now)
        what_if = None
        if at_text:
            try:
                at = parse_at(at_text, schedule)
                what_if = describe(schedule, at, who_is_on_call(schedule, overrides, at))
            except ValueError:
                what_if = None
        schedules.append(
            {
                "schedule": schedule,
                "now": answer,
                "now_source": "" if answer.person is None else source_of(answer),
                # CPU work (a few thousand answers): in a thread, so the loop keeps running.
                "segments": await asyncio.to_thread(segments, schedule, overrides, now),
                "what_if": what_if,
            }
        )
    values: dict[str, Any] = {
        "schedules": schedules,
        "at_text": at_text,
        "at_invalid": bool(at_text) and all(s["what_if"] is None for s in schedules),
        "overrides": [
            (r.override, str(r.id), _may_change(session, r.override.person), r)
            for r in await console_store(request).list_overrides()
        ],
        "people": [p.name for p in rota.people],
        "zones": {s.name: s.time_zone for s in rota.schedules},
        "may_add": session.user.role >= Role.RESPONDER,
        "is_manager": session.user.role >= Role.MANAGER,
        "done": DONE.get(request.query.get("done", "")),
        "problems": [],
        "form": {},
    }
    values.update(extra)
    return await render(request, "oncall.html", status, **values)


async def oncall(request: web.Request) -> web.StreamResponse:
    return await _page(request)


def _text(form: Any, name: str) -> str:
    return str(form.get(name, "")).strip()[:FIELD_MAX_CHARS]


async def add_override(request: web.Request) -> web.StreamResponse:
    session = await session_of(request)
    assert session is not None
    form = await request.post()
    entry = {k: _text(form, k) for k in ("schedule", "person", "start", "end", "replaces")}
    if not _may_change(session, entry["person"]):
        return await _page(request, 403, problems=[OWN_ONLY], form=entry)
    wanted = OverrideRequest(
        entry["schedule"], entry["person"], entry["start"], entry["end"], entry["replaces"] or None
    )
    try:
        await console_store(request).add_override(wanted, Origin.CONSOLE, session.user.name)
    except RotaError as exc:
        problems = [f"{p.path}: {p.message}" if p.path else p.message for p in exc.problems]
        return await _page(request, 422, problems=problems, form=entry)
    return see_other("/oncall?done=added")


async def remove_override(request: web.Request) -> web.StreamResponse:
    session = await session_of(request)
    assert session is not None
    form = await request.post()
    ident = str(form.get("override", ""))[:20]
    records = await console_store(request).list_overrides()
    match = [r for r in records if str(r.id) == ident]
    if not match:
        return await _page(request, 409, problems=["That override no longer exists."])
    if not _may_change(session, match[0].override.person):
        return await _page(request, 403, problems=[OWN_ONLY])
    if await console_store(request).remove_override(match[0].id, session.user.name) is None:
        return await _page(request, 409, problems=["That override no longer exists."])
    return see_other("/oncall?done=removed")
