"""``/rota`` (managers): the whole rota as its YAML text, edited in the browser with the
validation of ``voipalert rota import`` (every problem with its line), a preview of what
changes (who is on call differently over the next 14 days, schedule by schedule) and then
apply.

Apply parses the text again (the preview is never trusted) and refuses when the stored rota
changed since the preview (someone imported meanwhile: the preview would be wrong), so what
is applied is what was previewed. The import is one transaction, in the audit log under the
manager's name.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from aiohttp import web

from voipalert.console.keys import console_store, session_of
from voipalert.console.render import render, see_other
from voipalert.domain.errors import RotaError, RotaProblem
from voipalert.domain.oncall_view import Segment, segments
from voipalert.domain.rota import Rota
from voipalert.ingest.app_keys import CLOCK
from voipalert.rotafile.dump import dump_rota
from voipalert.rotafile.parse import parse_rota

MAX_ROTA_CHARS: Final = 512 * 1024


@dataclass(frozen=True, slots=True)
class ScheduleChange:
    name: str
    time_zone: str
    before: tuple[Segment, ...]
    after: tuple[Segment, ...]


def _counts(rota: Rota) -> str:
    return (
        f"{len(rota.people)} people, {len(rota.teams)} teams, {len(rota.schedules)} schedules, "
        f"{len(rota.overrides)} overrides, {len(rota.policies)} policies, "
        f"{len(rota.routes)} routes"
    )


def changes(old: Rota, new: Rota, now: datetime) -> list[ScheduleChange]:
    """Each schedule whose on-call answers over the next 14 days differ (added and removed
    schedules included)."""
    found = []
    names = [s.name for s in new.schedules] + [
        s.name for s in old.schedules if new.schedule(s.name) is None
    ]
    for name in names:
        before_schedule, after_schedule = old.schedule(name), new.schedule(name)
        before = (
            tuple(segments(before_schedule, old.overrides_for(name), now))
            if before_schedule
            else ()
        )
        after = (
            tuple(segments(after_schedule, new.overrides_for(name), now)) if after_schedule else ()
        )
        schedule = after_schedule or before_schedule
        if before != after and schedule is not None:
            found.append(ScheduleChange(name, schedule.time_zone, before, after))
    return found


async def editor(request: web.Request) -> web.StreamResponse:
    store = console_store(request)
    rota = await store.load_rota()
    # Overrides made one at a time (docs/rota-edits.md) are in the text like the file's;
    # applying it makes them the file's. Say so, with how many there are.
    edits = sum(r.origin != "file" for r in await store.list_overrides())
    return await render(
        request, "rota.html", text=dump_rota(rota), version=await store.rota_version(),
        problems=[], preview=None, done=request.query.get("done") == "applied", edits=edits,
    )  # fmt: skip


async def _text(request: web.Request) -> tuple[str, str]:
    form = await request.post()
    return str(form.get("text", ""))[:MAX_ROTA_CHARS], str(form.get("version", ""))


def _parse(text: str) -> tuple[Rota | None, list[str]]:
    try:
        return parse_rota(text, "yaml", "rota"), []
    except RotaError as exc:
        return None, [_problem(p) for p in exc.problems]


def _problem(problem: RotaProblem) -> str:
    where = f"line {problem.line}: " if problem.line is not None else ""
    return f"{where}{problem.path}: {problem.message}" if problem.path else where + problem.message


async def preview(request: web.Request) -> web.StreamResponse:
    store = console_store(request)
    text, version = await _text(request)
    new, problems = _parse(text)
    values: dict[str, Any] = {"text": text, "version": version, "done": False}
    if new is None:
        return await render(request, "rota.html", 422, problems=problems, preview=None, **values)
    old = await store.load_rota()
    now = request.app[CLOCK].now_utc()
    found = await asyncio.to_thread(changes, old, new, now)
    summary = {"before": _counts(old), "after": _counts(new)}
    return await render(
        request, "rota.html", problems=[], preview={"changes": found, **summary}, **values
    )


async def apply(request: web.Request) -> web.StreamResponse:
    store = console_store(request)
    session = await session_of(request)
    assert session is not None
    text, version = await _text(request)
    new, problems = _parse(text)
    values: dict[str, Any] = {"text": text, "version": version, "done": False, "preview": None}
    if new is None:
        return await render(request, "rota.html", 422, problems=problems, **values)
    if version != str(await store.rota_version()):
        problem = "The rota was changed by someone else since this preview; preview again."
        values["version"] = str(await store.rota_version())
        return await render(request, "rota.html", 409, problems=[problem], **values)
    await store.replace_rota(new, actor=session.user.name, source="console: rota edited")
    return see_other("/rota?done=applied")
