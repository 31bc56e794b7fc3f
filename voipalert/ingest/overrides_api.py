"""Overrides through the REST API (docs/rota-edits.md): list them, add one, remove one,
without replacing the rota.

- ``GET /api/v1/overrides`` and ``GET /api/v1/schedules/{name}/overrides`` (``read``):
  the overrides that end after ``from`` (default: now) and start before ``to``;
- ``POST /api/v1/schedules/{name}/overrides`` (``admin``): 201 and a ``Location`` when it
  is new, 200 when the same override was already there (a retried request adds nothing);
  422 names each problem (unknown person, end before start, a local time that does not
  exist...), like ``voipalert override add``;
- ``DELETE /api/v1/schedules/{name}/overrides/{id}`` (``admin``): the override removed.

Changes are recorded in the audit log under the token's name and bump the rota version,
so the engine uses them from the next alert on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final
from urllib.parse import quote

from aiohttp import web

from voipalert.domain.errors import RotaError
from voipalert.domain.override_edit import MAX_TIME_CHARS, Origin, OverrideRequest
from voipalert.ingest.app_keys import AUTH, CLOCK, CONFIG, STORE, WAKE
from voipalert.ingest.http_errors import ApiError
from voipalert.ingest.json_http import json_response, read_model
from voipalert.ingest.override_schemas import (
    OverrideAddedOut,
    OverrideIn,
    OverrideListOut,
    override_out,
)
from voipalert.ingest.schemas import DB_ID_MAX, ErrorDetail
from voipalert.store import Scope

MAX_SCHEDULE_CHARS: Final = 64


def _query_instant(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw[:MAX_TIME_CHARS].upper())
    except ValueError:
        value = None
    if value is None or value.tzinfo is None or len(raw) > MAX_TIME_CHARS:
        reason = "expected an RFC 3339 date-time with its offset"
        raise ApiError(
            422, f"bad query parameter {name!r}", details=[ErrorDetail(field=name, reason=reason)]
        )
    return value


async def _schedule(request: web.Request) -> str:
    name = request.match_info["name"]
    rota = await request.app[STORE].load_rota()
    if len(name) > MAX_SCHEDULE_CHARS or rota.schedule(name) is None:
        shown = name[:MAX_SCHEDULE_CHARS]
        raise ApiError(404, f"no schedule named {shown!r}")
    return name


async def list_overrides(request: web.Request) -> web.Response:
    await request.app[AUTH].authenticate(request, Scope.READ)
    schedule = await _schedule(request) if "name" in request.match_info else None
    since = _query_instant(request, "from") or request.app[CLOCK].now_utc()
    until = _query_instant(request, "to")
    records = await request.app[STORE].list_overrides(schedule=schedule, since=since, until=until)
    return json_response(OverrideListOut(overrides=[override_out(r) for r in records]))


async def add_override(request: web.Request) -> web.Response:
    principal = await request.app[AUTH].authenticate(request, Scope.ADMIN)
    schedule = await _schedule(request)
    body = await read_model(request, OverrideIn, request.app[CONFIG].http.max_body_bytes)
    wanted = OverrideRequest(schedule, body.person, body.start, body.end, body.replaces, body.note)
    try:
        added = await request.app[STORE].add_override(wanted, Origin.API, principal.name)
    except RotaError as exc:
        details = [ErrorDetail(field=p.path, reason=p.message) for p in exc.problems]
        raise ApiError(
            422,
            "override refused: " + "; ".join(f"{d.field}: {d.reason}" for d in details),
            details=details,
        ) from None
    out = OverrideAddedOut(
        created=added.created,
        override=override_out(added.record),
        overlaps=[r.id for r in added.overlaps],
    )
    location = f"/api/v1/schedules/{quote(schedule, safe='')}/overrides/{added.record.id}"
    if added.created:
        request.app[WAKE]()  # an escalation under way picks the change up at its next step
        return json_response(out, 201, {"Location": location})
    return json_response(out)


async def remove_override(request: web.Request) -> web.Response:
    principal = await request.app[AUTH].authenticate(request, Scope.ADMIN)
    schedule = await _schedule(request)
    raw = request.match_info["id"]  # ASCII digits: the route says so
    if len(raw) > len(str(DB_ID_MAX)) or not 1 <= int(raw) <= DB_ID_MAX:
        raise ApiError(404, f"no override {raw[:20]} in {schedule!r}")
    gone = await request.app[STORE].remove_override(int(raw), principal.name, schedule=schedule)
    if gone is None:
        raise ApiError(404, f"no override {raw} in {schedule!r}")
    request.app[WAKE]()
    return json_response(override_out(gone))


def add_override_routes(app: web.Application, api: str) -> None:
    one = f"{api}/schedules/{{name}}/overrides"
    app.add_routes(
        [
            web.get(f"{api}/overrides", list_overrides, allow_head=False),
            web.get(one, list_overrides, allow_head=False),
            web.post(one, add_override),
            web.delete(f"{one}/{{id:[0-9]+}}", remove_override),
        ]
    )
