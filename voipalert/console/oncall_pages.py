"""``/oncall``: who is on call now and over the next 14 days, the "what if" time (the answers
of ``voipalert oncall --at``, from the same code: ``domain.oncall_view``), and overrides.

An override is added or removed by rewriting the stored rota and validating it with the
parser ``voipalert rota import`` uses, so the console accepts exactly what the CLI accepts
(an unknown person, an end before the start, a time that is not ISO are refused with the
parser's own reason). A responder may add or remove only overrides that put themselves on
call (their user name is their rota name); a manager any. The rota import is in the audit
log under the user's name.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import yaml
from aiohttp import web

from voipalert.console.keys import session_of
from voipalert.console.render import render, see_other
from voipalert.domain.errors import RotaError
from voipalert.domain.oncall import who_is_on_call
from voipalert.domain.oncall_view import describe, parse_at, segments, source_of
from voipalert.domain.rota import Override, Rota
from voipalert.domain.rota_dump import rota_to_data
from voipalert.domain.rota_parse import parse_rota
from voipalert.ingest.app_keys import CLOCK, STORE
from voipalert.store.users import Role, Session

FIELD_MAX_CHARS: Final = 64
OWN_ONLY: Final = "You may only add or remove your own overrides."
DONE: Final = {"added": "Override added.", "removed": "Override removed."}


def _fingerprint(override: Override) -> str:
    return "|".join(
        (override.schedule, override.person, override.replaces or "",
         override.start.isoformat(), override.end.isoformat())
    )  # fmt: skip


def _may_change(session: Session, person: str) -> bool:
    return session.user.role >= Role.MANAGER or session.user.name == person


async def _page(request: web.Request, status: int = 200, **extra: Any) -> web.StreamResponse:
    # With the live sources' copies, so the page answers as `voipalert oncall` does.
    rota, _ = await request.app[STORE].load_rota_with_feeds()
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
        "overrides": [(o, _fingerprint(o), _may_change(session, o.person)) for o in rota.overrides],
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


async def _replace(request: web.Request, rota: Rota, user: str, what: str) -> None:
    await request.app[STORE].replace_rota(rota, actor=user, source=f"console: {what}")


async def add_override(request: web.Request) -> web.StreamResponse:
    session = await session_of(request)
    assert session is not None
    form = await request.post()
    entry = {k: _text(form, k) for k in ("schedule", "person", "start", "end", "replaces")}
    if not _may_change(session, entry["person"]):
        return await _page(request, 403, problems=[OWN_ONLY], form=entry)
    rota = await request.app[STORE].load_rota()
    data = rota_to_data(rota)
    data["overrides"].append({k: v for k, v in entry.items() if v or k != "replaces"})
    try:
        new = parse_rota(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), "yaml")
    except RotaError as exc:
        problems = [f"{p.path}: {p.message}" if p.path else p.message for p in exc.problems]
        return await _page(request, 422, problems=problems, form=entry)
    what = (
        f"override added: {entry['person']} on {entry['schedule']} "
        f"{entry['start']} to {entry['end']}"
    )
    await _replace(request, new, session.user.name, what)
    return see_other("/oncall?done=added")


async def remove_override(request: web.Request) -> web.StreamResponse:
    session = await session_of(request)
    assert session is not None
    form = await request.post()
    fingerprint = str(form.get("override", ""))
    rota = await request.app[STORE].load_rota()
    match = [o for o in rota.overrides if _fingerprint(o) == fingerprint]
    if not match:
        return await _page(request, 409, problems=["That override no longer exists."])
    if not _may_change(session, match[0].person):
        return await _page(request, 403, problems=[OWN_ONLY])
    kept = tuple(o for o in rota.overrides if o is not match[0])
    new = Rota(
        people=rota.people, teams=rota.teams, schedules=rota.schedules, overrides=kept,
        policies=rota.policies, routes=rota.routes,
    )  # fmt: skip
    gone = match[0]
    what = f"override removed: {gone.person} on {gone.schedule} {gone.start.isoformat()}"
    await _replace(request, new, session.user.name, what)
    return see_other("/oncall?done=removed")
