"""The HTTP API: alerts, webhooks, probes and metrics, as one aiohttp application.

Handlers are thin (docs/architecture.md §9): authenticate, validate into an event, commit it through
the intake (which wakes the engine), reply. ``202`` therefore means the alert is on disk.
Nothing here dials, and no handler waits on anything but the database.

``build_app`` makes the application; ``start_http`` binds it and returns the runner, which
the composition root (``voipalert serve``) cleans up when it stops.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Final

from aiohttp import web

from voipalert.clock import Clock
from voipalert.domain.alert import Alert, AlertStatus
from voipalert.ingest import hooks
from voipalert.ingest.ack_page import add_ack_link_routes
from voipalert.ingest.app_keys import (
    API_READS,
    AUTH,
    CLOCK,
    CONFIG,
    INTAKE,
    METRICS,
    OPENAPI,
    PHONE_PATH,
    REJECTION_LOG,
    SIP_STATE,
    STORE,
    TRUNKS,
    WAKE,
)
from voipalert.ingest.auth import Authenticator
from voipalert.ingest.calendar_out import add_calendar_routes
from voipalert.ingest.config import IngestConfig
from voipalert.ingest.convert import from_alert_in
from voipalert.ingest.health import PhonePath, SipState, check_readiness, source_report
from voipalert.ingest.heartbeat import add_heartbeat_routes
from voipalert.ingest.http_errors import ApiError, error_middleware
from voipalert.ingest.intake import Intake
from voipalert.ingest.json_http import json_response, read_model
from voipalert.ingest.log_budget import LogBudget
from voipalert.ingest.metrics import CONTENT_TYPE, IngestMetrics
from voipalert.ingest.openapi import build_openapi, with_targets
from voipalert.ingest.overrides_api import add_override_routes
from voipalert.ingest.rejections import trigger_endpoint
from voipalert.ingest.schemas import (
    DB_ID_MAX,
    MAX_NAME_CHARS,
    AcceptedOut,
    AckIn,
    AlertIn,
    AlertListItemOut,
    AlertListOut,
    AttemptSummaryOut,
    DeliveryOut,
    ErrorDetail,
    HealthOut,
    ReadyOut,
    SilenceRequestOut,
    TransitionOut,
    TrunkOut,
    alert_detail_out,
    alert_out,
    text_deliveries,
)
from voipalert.logs import log_context
from voipalert.store import AlertFilter, AlertNotFound, Page, Scope, Store, UnknownReference
from voipalert.store.api_reads import ApiReads
from voipalert.store.attempt_summary import AttemptSummary, attempt_summaries
from voipalert.store.repo import MAX_PAGE_SIZE

log = logging.getLogger("voipalert.http")

API: Final = "/api/v1"
# RFC 3339 date-time, as JSON Schema's "date-time" format means it.
_RFC3339: Final = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:(?P<sec>\d{2})(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$"
)


def _alert_id(request: web.Request) -> int:
    raw = request.match_info["id"]  # the route only matches ASCII digits
    # Bounded before int(): 5,000 digits would pass the route and make int() raise (Python
    # refuses to convert more than 4,300 digits), which was a 500.
    if len(raw) > len(str(DB_ID_MAX)) or not 1 <= int(raw) <= DB_ID_MAX:
        raise ApiError(404, f"no alert {raw[:20]}{'...' if len(raw) > 20 else ''}")
    return int(raw)


# ------------------------------------------------------------------ alerts


@trigger_endpoint("api")
async def create_alert(request: web.Request) -> web.StreamResponse:
    await request.app[AUTH].authenticate(request, Scope.TRIGGER, allow_signature=True)
    with request.app[METRICS].trigger_seconds.labels(edge="api").time():
        alert_in = await read_model(request, AlertIn, request.app[CONFIG].http.max_body_bytes)
        try:
            committed = await request.app[INTAKE].submit(
                from_alert_in(alert_in), sender_chose_target=True
            )
        except UnknownReference as exc:
            field = "policy" if "policy" in str(exc) else "team"
            raise ApiError(
                422,
                str(exc),
                details=[ErrorDetail(field=field, reason=str(exc))],
                reason="unknown_target",
            ) from None
    alert = committed.alert
    assert alert is not None  # a trigger always yields its alert
    body = AcceptedOut(
        id=alert.id,
        status=alert.status,
        created=committed.outcome.value == "created",
        occurrences=alert.occurrences,
    )
    return json_response(body, 202, {"Location": f"{API}/alerts/{alert.id}"})


def _query_int(query: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    raw = query.get(name)
    if raw is None:
        return None
    # Length first: int() of thousands of digits raises (and costs time) before any range test.
    if len(raw) > len(str(high)) or not raw.isascii() or not raw.isdigit():
        raise _query_error(name, f"expected an integer from {low} to {high}")
    if not low <= int(raw) <= high:
        raise _query_error(name, f"expected an integer from {low} to {high}")
    return int(raw)


def _query_text(query: Mapping[str, str], name: str, max_chars: int) -> str | None:
    raw = query.get(name)
    if raw is not None and not 1 <= len(raw) <= max_chars:
        raise _query_error(name, f"expected 1 to {max_chars} characters")
    return raw


def _query_error(name: str, reason: str) -> ApiError:
    return ApiError(
        422, f"bad query parameter {name!r}", details=[ErrorDetail(field=name, reason=reason)]
    )


def _since(raw: str | None) -> datetime | None:
    if raw is None:
        return None
    match = _RFC3339.match(raw)
    if match is None:
        raise _query_error("since", "expected an RFC 3339 date-time with its offset")
    if match.group("sec") == "60":  # a leap second: Python has none, take the second before
        raw = raw[: match.start("sec")] + "59" + raw[match.end("sec") :]
    try:
        return datetime.fromisoformat(raw.upper())
    except ValueError:
        raise _query_error("since", "not a real date and time") from None


def alert_list_item_out(alert: Alert, summary: AttemptSummary) -> AlertListItemOut:
    attempts = AttemptSummaryOut(
        total=summary.total, live=summary.live, by_outcome=dict(summary.by_outcome),
        last_person=summary.last_person, last_outcome=summary.last_outcome,
        last_at=summary.last_at,
    )  # fmt: skip
    return AlertListItemOut(**alert_out(alert).model_dump(), attempts=attempts)


async def list_alerts(request: web.Request) -> web.Response:
    await request.app[AUTH].authenticate(request, Scope.READ)
    query = request.query
    statuses = set()
    for raw in query.getall("status", []):
        try:
            statuses.add(AlertStatus(raw))
        except ValueError:
            raise _query_error("status", f"one of {', '.join(AlertStatus)}") from None
    filters = AlertFilter(
        statuses=frozenset(statuses),
        since=_since(query.get("since")),
        team=_query_text(query, "team", MAX_NAME_CHARS),
        source=_query_text(query, "source", 64),
    )
    page = Page(
        limit=_query_int(query, "limit", 1, MAX_PAGE_SIZE) or 50,
        before_id=_query_int(query, "before_id", 1, DB_ID_MAX),
    )
    result = await request.app[STORE].list_alerts(filters, page)
    summaries = await attempt_summaries(request.app[STORE], [a.id for a in result.alerts])
    body = AlertListOut(
        alerts=[alert_list_item_out(a, summaries[a.id]) for a in result.alerts],
        next_before_id=result.next_before_id,
    )
    return json_response(body)


async def get_alert(request: web.Request) -> web.Response:
    await request.app[AUTH].authenticate(request, Scope.READ)
    alert_id = _alert_id(request)
    store = request.app[STORE]
    detail = await store.get_alert_with_attempts(alert_id)
    if detail is None:
        raise ApiError(404, f"no alert {alert_id}")
    silences = [
        SilenceRequestOut(
            action=r.action, state=r.state, tries=r.tries, due_at=r.due_at,
            silence_id=r.silence_id, last_error=r.last_error,
        )
        for r in await store.outbox_of(alert_id)
    ]  # fmt: skip
    webhooks = [
        DeliveryOut(
            channel="webhook", target=r.target, event=r.event, state=r.state, tries=r.tries,
            at=r.at or r.due_at, sent_at=r.sent_at, detail=r.last_error,
        )
        for r in await store.deliveries_of(alert_id)
    ]  # fmt: skip
    deliveries = sorted([*text_deliveries(detail.attempts), *webhooks], key=lambda d: d.at)
    out = alert_detail_out(detail)
    return json_response(out.model_copy(update={"silences": silences, "deliveries": deliveries}))


async def _ack_person(request: web.Request) -> str | None:
    """The rota person named in the optional ``{"by": ...}`` body (422 if unknown)."""
    if not request.body_exists:
        return None
    person = (await read_model(request, AckIn, request.app[CONFIG].http.max_body_bytes)).by
    if person is None:
        return None
    rota = await request.app[STORE].load_rota()
    if person not in {p.name for p in rota.people}:
        reason = "not a person of the rota"
        raise ApiError(
            422, f"{person!r}: {reason}", details=[ErrorDetail(field="by", reason=reason)]
        )
    return person


async def ack_alert(request: web.Request) -> web.Response:
    principal = await request.app[AUTH].authenticate(request, Scope.ADMIN)
    alert_id = _alert_id(request)
    person = await _ack_person(request)
    try:
        transition = await request.app[STORE].ack_alert(
            alert_id, by=person or principal.name, via="api", token=principal.name
        )
    except AlertNotFound:
        raise ApiError(404, f"no alert {alert_id}") from None
    status = transition.alert.status
    if not transition.changed and status is not AlertStatus.ACKNOWLEDGED:
        raise ApiError(409, f"alert {alert_id} is {status.value}: nothing to acknowledge")
    if transition.changed:
        _audit("acknowledged", alert_id, principal.name, person, request)
        request.app[WAKE]()
    return json_response(
        TransitionOut(changed=transition.changed, alert=alert_out(transition.alert))
    )


async def resolve_alert(request: web.Request) -> web.Response:
    principal = await request.app[AUTH].authenticate(request, Scope.ADMIN)
    alert_id = _alert_id(request)
    try:
        transition = await request.app[STORE].resolve_alert(alert_id, by=principal.name)
    except AlertNotFound:
        raise ApiError(404, f"no alert {alert_id}") from None
    if transition.changed:
        _audit("resolved", alert_id, principal.name, None, request)
        request.app[WAKE]()
    return json_response(
        TransitionOut(changed=transition.changed, alert=alert_out(transition.alert))
    )


def _audit(what: str, alert_id: int, token: str, person: str | None, request: web.Request) -> None:
    """One line per state change made from outside: who (token, person), from where."""
    by = f"{person} (token {token})" if person else f"token {token}"
    with log_context(alert_id=alert_id):
        log.info(
            "alert %s %s through the API by %s from %s", alert_id, what, by, request.remote,
            extra={"action": what, "token": token, "person": person, "remote": request.remote},
        )  # fmt: skip


# ------------------------------------------------------------------ probes


async def healthz(request: web.Request) -> web.Response:
    return json_response(HealthOut(status="ok"))


async def readyz(request: web.Request) -> web.Response:
    readiness = await check_readiness(request.app[API_READS], request.app[SIP_STATE])
    trunks = request.app[TRUNKS]()
    degraded = [
        *request.app[PHONE_PATH]().degraded,
        *(reason for t in trunks if (reason := t.degraded_reason()) is not None),
    ]
    status = "not ready" if not readiness.ready else "degraded" if degraded else "ok"
    body = ReadyOut(
        ready=readiness.ready, status=status, database=readiness.database,
        sip=readiness.sip.value, degraded=degraded,
        rota_sources=await source_report(request.app[STORE]),
        trunks={
            t.name: TrunkOut(
                state=t.state, up=t.up, since=t.since, last_error=t.last_error,
                failovers=t.failovers,
            )
            for t in trunks
        },
    )  # fmt: skip
    return json_response(body, 200 if readiness.ready else 503)


async def metrics(request: web.Request) -> web.Response:
    app = request.app
    await app[METRICS].refresh(
        app[API_READS], app[SIP_STATE](), app[PHONE_PATH](), await app[STORE].source_states(),
        app[TRUNKS](),
    )  # fmt: skip
    return web.Response(body=app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE})


async def openapi(request: web.Request) -> web.Response:
    rota = await request.app[STORE].load_rota()
    document = with_targets(
        request.app[OPENAPI],
        [t.name for t in rota.teams],
        [p.name for p in rota.policies],
        [p.name for p in rota.people],
    )
    return web.Response(body=json.dumps(document).encode(), content_type="application/json")


# ------------------------------------------------------------------ app


def build_app(
    store: Store,
    *,
    wake: Callable[[], None],
    sip_state: Callable[[], SipState],
    config: IngestConfig,
    clock: Clock,
) -> web.Application:
    """The HTTP API over ``store``. ``wake`` is the engine's (called after each commit that
    changes what should be called); ``sip_state`` reports registration for ``/readyz`` and
    ``/metrics``. The app's ``INTAKE`` and ``METRICS`` are there for the e-mail edges to
    share."""
    app = web.Application(
        middlewares=[error_middleware], client_max_size=config.http.max_body_bytes
    )
    tables = ApiReads(store, clock)
    tables.load_server_key()
    app_metrics = IngestMetrics(clock)
    app[STORE] = store
    app[API_READS] = tables
    app[CONFIG] = config
    app[CLOCK] = clock
    app[WAKE] = wake
    app[SIP_STATE] = sip_state
    app[PHONE_PATH] = PhonePath
    app[TRUNKS] = tuple
    app[METRICS] = app_metrics
    app[REJECTION_LOG] = LogBudget()
    app[AUTH] = Authenticator(store, tables, config.http, clock)
    app[INTAKE] = Intake(
        store, wake, config.routes, app_metrics.observe_committed, ack_digit=config.ack_digit
    )
    app[OPENAPI] = build_openapi(config.http)
    routes = [
        web.post(f"{API}/alerts", create_alert),
        web.get(f"{API}/alerts", list_alerts, allow_head=False),
        web.get(f"{API}/alerts/{{id:[0-9]+}}", get_alert, allow_head=False),
        web.post(f"{API}/alerts/{{id:[0-9]+}}/ack", ack_alert),
        web.post(f"{API}/alerts/{{id:[0-9]+}}/resolve", resolve_alert),
        web.post(f"{API}/hooks/alertmanager", hooks.alertmanager),
        web.post(f"{API}/hooks/alertmanager/{{name}}", hooks.alertmanager),
        web.post(f"{API}/hooks/grafana", hooks.grafana),
        web.post(f"{API}/hooks/generic/{{name}}", hooks.generic),
        web.get(f"{API}/openapi.json", openapi, allow_head=False),
        web.get("/healthz", healthz, allow_head=False),
        web.get("/readyz", readyz, allow_head=False),
        web.get("/metrics", metrics, allow_head=False),
    ]
    app.add_routes(routes)
    add_heartbeat_routes(app, API)
    add_override_routes(app, API)
    add_ack_link_routes(app)
    add_calendar_routes(app, API)
    return app


async def start_http(
    app: web.Application, host: str, port: int, shutdown_timeout: float = 5.0
) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner (``await runner.cleanup()`` stops it) and the bound
    port (useful with ``port=0``). A port already taken raises ``OSError`` here."""
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = int(runner.addresses[0][1]) if runner.addresses else port
    log.info("HTTP API listening", extra={"host": host, "port": bound})
    return runner, bound
