"""Webhook handlers: Alertmanager, Grafana, and generic JSON mapped by configuration.

A payload may carry several alerts; each is committed in its own short transaction, in
order, and ``202`` is sent once all of them are on disk. If the database fails half-way the
sender gets an error and retries the whole payload, which is harmless: a repeated trigger
joins its open alert (dedup key) and a repeated resolve finds nothing open.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from voipalert.ingest.app_keys import AUTH, CONFIG, INTAKE, METRICS
from voipalert.ingest.config import DEFAULT_AM_HOOK, AlertmanagerHook
from voipalert.ingest.convert import AmEvent, Event, alertmanager_events, from_grafana
from voipalert.ingest.http_errors import ApiError
from voipalert.ingest.json_http import json_response, parse_json, read_body, read_model
from voipalert.ingest.mapping import MappingError, map_document
from voipalert.ingest.rejections import trigger_endpoint
from voipalert.ingest.schemas import (
    AlertmanagerPayload,
    ErrorDetail,
    GrafanaPayload,
    HookAction,
    HookOut,
)
from voipalert.store import Scope
from voipalert.store.am_outbox import AmLink


async def _commit_all(
    request: web.Request, events: Sequence[Event], links: Sequence[AmLink | None] = ()
) -> web.Response:
    intake = request.app[INTAKE]
    results = []
    for index, event in enumerate(events):
        link = links[index] if index < len(links) else None
        committed = await intake.submit(event, link=link)
        results.append(
            HookAction(
                dedup_key=committed.dedup_key or "",
                action=committed.outcome.value,
                id=committed.alert.id if committed.alert is not None else None,
            )
        )
    return json_response(HookOut(results=results), 202)


def _am_link(
    name: str, hook: AlertmanagerHook, external_url: str | None, event: AmEvent
) -> AmLink | None:
    url = hook.silence_url(external_url)
    if url is None or not event.matchers:
        return None
    return AmLink(name, url, event.matchers, hook.silence_seconds, hook.alert_url)


@trigger_endpoint("alertmanager")
async def alertmanager(request: web.Request) -> web.StreamResponse:
    await request.app[AUTH].authenticate(request, Scope.TRIGGER, allow_signature=True)
    config = request.app[CONFIG].http
    name = request.match_info.get("name", DEFAULT_AM_HOOK)
    hook = config.alertmanager_hooks.get(name)
    if hook is None:
        if name != DEFAULT_AM_HOOK:
            raise ApiError(
                404, "no Alertmanager hook with that name is configured", reason="no_such_hook"
            )
        hook = AlertmanagerHook()
    with request.app[METRICS].trigger_seconds.labels(edge="alertmanager").time():
        payload = await read_model(request, AlertmanagerPayload, config.max_body_bytes)
        grouping = hook.grouping_for(payload.receiver)
        am_events = alertmanager_events(payload, config.default_severity, grouping)
        links = [_am_link(name, hook, payload.externalURL, e) for e in am_events]
        return await _commit_all(request, [e.event for e in am_events], links)


@trigger_endpoint("grafana")
async def grafana(request: web.Request) -> web.StreamResponse:
    await request.app[AUTH].authenticate(request, Scope.TRIGGER, allow_signature=True)
    with request.app[METRICS].trigger_seconds.labels(edge="grafana").time():
        payload = await read_model(request, GrafanaPayload, request.app[CONFIG].http.max_body_bytes)
        events = from_grafana(payload, request.app[CONFIG].http.default_severity)
        return await _commit_all(request, events)


@trigger_endpoint("generic")
async def generic(request: web.Request) -> web.StreamResponse:
    await request.app[AUTH].authenticate(request, Scope.TRIGGER, allow_signature=True)
    config = request.app[CONFIG].http
    name = request.match_info["name"]
    mapping = config.generic_hooks.get(name)
    if mapping is None:
        raise ApiError(404, "no generic hook with that name is configured", reason="no_such_hook")
    with request.app[METRICS].trigger_seconds.labels(edge="generic").time():
        document = parse_json(await read_body(request, config.max_body_bytes))
        try:
            event = map_document(document, mapping)
        except MappingError as exc:
            detail = ErrorDetail(field=exc.field, reason=exc.reason)
            raise ApiError(
                422, f"the document does not fit hook {name!r}", details=[detail]
            ) from None
        return await _commit_all(request, [event])
