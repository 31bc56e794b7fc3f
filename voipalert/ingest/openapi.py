"""The OpenAPI 3.1 document served at ``/api/v1/openapi.json``.

Request and response bodies are the JSON schemas of the pydantic models the handlers use, so
the document describes exactly what the server validates and returns; the tests run
schemathesis against the live server to hold it to that.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from voipalert import __version__
from voipalert.domain.alert import AlertStatus
from voipalert.ingest.config import HttpConfig
from voipalert.ingest.mapping import document_schema
from voipalert.ingest.override_schemas import (
    OverrideAddedOut,
    OverrideIn,
    OverrideListOut,
    OverrideOut,
)
from voipalert.ingest.schemas import (
    DB_ID_MAX,
    MAX_NAME_CHARS,
    AcceptedOut,
    AckIn,
    AlertDetailOut,
    AlertIn,
    AlertListOut,
    AlertmanagerPayload,
    BeatOut,
    ErrorOut,
    GrafanaPayload,
    HealthOut,
    HookOut,
    ReadyOut,
    TransitionOut,
)
from voipalert.store.ack_links import MAX_TOKEN_CHARS
from voipalert.store.repo import MAX_PAGE_SIZE

REF: Final = "#/components/schemas/{model}"
_REQUEST_MODELS: Final[tuple[type[BaseModel], ...]] = (
    AlertIn,
    AckIn,
    AlertmanagerPayload,
    GrafanaPayload,
    OverrideIn,
)
_RESPONSE_MODELS: Final[tuple[type[BaseModel], ...]] = (
    AcceptedOut,
    BeatOut,
    AlertDetailOut,
    AlertListOut,
    ErrorOut,
    HealthOut,
    HookOut,
    ReadyOut,
    TransitionOut,
    OverrideListOut,
    OverrideAddedOut,
    OverrideOut,
)
_ERRORS: Final = {
    400: "the body is not JSON",
    401: "no credentials, or unknown ones",
    403: "the token lacks the scope this operation needs",
    404: "no such alert, hook, schedule, override or path",
    409: "the alert is past the state asked for",
    413: "the body is over the size limit",
    422: "the JSON does not fit the schema; `details` names each field and why",
    429: "too many requests from this address; slow down",
    503: "the database is unavailable; retry later",
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(model: type[BaseModel], description: str, **extra: Any) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": _ref(model)}},
        **extra,
    }


def _responses(ok: dict[int, dict[str, Any]], errors: Sequence[int]) -> dict[str, Any]:
    out: dict[str, Any] = {str(status): spec for status, spec in ok.items()}
    for status in errors:
        spec = _json(ErrorOut, _ERRORS[status])
        if status == 401:
            spec["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}, "required": True}}
        if status == 503:
            spec["headers"] = {"Retry-After": {"schema": {"type": "string"}}}
        out[str(status)] = spec
    return out


def _operation(
    op_id: str,
    summary: str,
    responses: dict[str, Any],
    *,
    scope: str | None = None,
    signed: bool = False,
    body: dict[str, Any] | None = None,
    optional_body: bool = False,
    parameters: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": op_id, "summary": summary, "responses": responses}
    if scope is not None:
        op["description"] = f"Needs a token with the `{scope}` scope (or `admin`)."
        op["security"] = [{"bearer": []}, {"signature": []}] if signed else [{"bearer": []}]
    if body is not None:
        op["requestBody"] = {
            "required": not optional_body,
            "content": {"application/json": {"schema": body}},
        }
    if parameters:
        op["parameters"] = list(parameters)
    return op


_ALERT_ID: Final = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": DB_ID_MAX},
}
_TRIGGER_ERRORS: Final = (400, 401, 403, 413, 422, 503)


def _list_parameters() -> list[dict[str, Any]]:
    def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
        return {"name": name, "in": "query", "schema": schema, "description": description}

    return [
        {
            **query(
                "status",
                {"type": "array", "items": {"enum": [s.value for s in AlertStatus]}},
                "repeat to allow several states; none: any",
            ),
            "style": "form",
            "explode": True,
        },
        query("since", {"type": "string", "format": "date-time"}, "created at or after (RFC 3339)"),
        query("team", {"type": "string", "minLength": 1, "maxLength": MAX_NAME_CHARS}, "team name"),
        query("source", {"type": "string", "minLength": 1, "maxLength": 64}, "e.g. alertmanager"),
        query(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": 50},
            "page size",
        ),
        query(
            "before_id",
            {"type": "integer", "minimum": 1, "maximum": DB_ID_MAX},
            "the previous page's next_before_id",
        ),
    ]


def _alert_paths() -> dict[str, Any]:
    accepted = _json(
        AcceptedOut,
        "committed: the alert is on disk (a repeated dedup key joined the open alert)",
        headers={"Location": {"schema": {"type": "string"}, "required": True}},
    )
    transition = {200: _json(TransitionOut, "the alert after the change")}
    return {
        "/api/v1/alerts": {
            "post": _operation(
                "createAlert",
                "Create an alert (or join the open one with the same dedup key)",
                _responses({202: accepted}, _TRIGGER_ERRORS),
                scope="trigger",
                signed=True,
                body=_ref(AlertIn),
            ),
            "get": _operation(
                "listAlerts",
                "List alerts, newest first",
                _responses({200: _json(AlertListOut, "one page")}, (401, 403, 422, 503)),
                scope="read",
                parameters=_list_parameters(),
            ),
        },
        "/api/v1/alerts/{id}": {
            "get": _operation(
                "getAlert",
                "An alert with every attempt, its Alertmanager silence requests and what was "
                "sent about it (texts, e-mails, status webhooks: deliveries)",
                _responses({200: _json(AlertDetailOut, "the alert")}, (401, 403, 404, 503)),
                scope="read",
                parameters=[_ALERT_ID],
            )
        },
        "/api/v1/alerts/{id}/ack": {
            "post": _operation(
                "acknowledgeAlert",
                "Acknowledge: stop calling (the audit log records the token's name and, "
                "when given, the person who takes the incident)",
                _responses(transition, (400, 401, 403, 404, 409, 413, 422, 503)),
                scope="admin",
                parameters=[_ALERT_ID],
                body=_ref(AckIn),
                optional_body=True,
            )
        },
        "/api/v1/alerts/{id}/resolve": {
            "post": _operation(
                "resolveAlert",
                "Resolve: the problem is gone; pending calls are cancelled",
                _responses(transition, (401, 403, 404, 503)),
                scope="admin",
                parameters=[_ALERT_ID],
            )
        },
    }


def _hook_paths(config: HttpConfig) -> dict[str, Any]:
    accepted = {202: _json(HookOut, "every alert of the payload is committed")}
    paths: dict[str, Any] = {
        "/api/v1/hooks/alertmanager": {
            "post": _operation(
                "postAlertmanager",
                "Prometheus Alertmanager webhook (version 4): one alert per group (groupKey), "
                "or per alert (fingerprint) as [hooks.alertmanager.default] grouping says; "
                "an acknowledged alert is silenced in the Alertmanager the hook names",
                _responses(accepted, _TRIGGER_ERRORS),
                scope="trigger",
                signed=True,
                body=_ref(AlertmanagerPayload),
            )
        },
        "/api/v1/hooks/alertmanager/{name}": {
            "post": _operation(
                "postAlertmanagerNamed",
                "Alertmanager webhook of the hook [hooks.alertmanager.NAME] (one per "
                "Alertmanager to silence in); 404 unless it is configured",
                _responses(accepted, (400, 401, 403, 404, 413, 422, 503)),
                scope="trigger",
                signed=True,
                body=_ref(AlertmanagerPayload),
                parameters=[
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
            )
        },
        "/api/v1/hooks/grafana": {
            "post": _operation(
                "postGrafana",
                "Grafana alerting webhook contact point",
                _responses(accepted, _TRIGGER_ERRORS),
                scope="trigger",
                signed=True,
                body=_ref(GrafanaPayload),
            )
        },
    }
    # Each configured generic hook is its own path, its body described by its mapping.
    for name, mapping in sorted(config.generic_hooks.items()):
        paths[f"/api/v1/hooks/generic/{name}"] = {
            "post": _operation(
                f"postGeneric_{name}",
                f"Generic webhook {name!r}: JSON mapped to an alert by its configured paths",
                _responses(accepted, _TRIGGER_ERRORS),
                scope="trigger",
                signed=True,
                body=document_schema(mapping),
            )
        }
    name_schema: dict[str, Any] = {"type": "string"}
    if config.generic_hooks:
        name_schema["not"] = {"enum": sorted(config.generic_hooks)}
    paths["/api/v1/hooks/generic/{name}"] = {
        "post": _operation(
            "postGeneric",
            "Generic webhook by name: 404 unless [hooks.generic.NAME] configures it (the "
            "configured ones are listed above with their own body schema)",
            _responses(accepted, (400, 401, 403, 404, 413, 422, 503)),
            scope="trigger",
            signed=True,
            body={},
            parameters=[{"name": "name", "in": "path", "required": True, "schema": name_schema}],
        )
    }
    return paths


def with_targets(
    document: dict[str, Any],
    teams: list[str],
    policies: list[str],
    people: Sequence[str] = (),
) -> dict[str, Any]:
    """The document with the rota's team, policy and people names as the only values
    ``AlertIn`` and ``AckIn`` take (the rota can change while the server runs, so this is
    done per request)."""
    copy: dict[str, Any] = json.loads(json.dumps(document))
    schemas = copy["components"]["schemas"]
    named = (
        ("AlertIn", "team", teams),
        ("AlertIn", "policy", policies),
        ("AckIn", "by", list(people)),
    )
    for model, field, names in named:
        properties = schemas[model]["properties"]
        choices: list[dict[str, Any]] = [{"type": "null"}]
        if names:
            choices.insert(0, {"type": "string", "enum": sorted(names)})
        properties[field] = {**properties[field], "anyOf": choices}
    # A mass alert calls a whole team: it needs one.
    copy["components"]["schemas"]["AlertIn"]["if"] = {
        "properties": {"kind": {"const": "mass"}},
        "required": ["kind"],
    }
    copy["components"]["schemas"]["AlertIn"]["then"] = {
        "properties": {"team": {"type": "string"}},
        "required": ["team"],
    }
    return copy


def _heartbeat_paths() -> dict[str, Any]:
    token = {
        "name": "token",
        "in": "path",
        "required": True,
        "description": "the secret of the heartbeat's URL (voipalert heartbeat add)",
        "schema": {"type": "string", "minLength": 1, "maxLength": 100},
    }
    beat = _responses({200: _json(BeatOut, "the beat is recorded")}, (404, 413, 429, 503))
    summary = (
        "Record a beat of a heartbeat monitor (dead man's switch); the token in the URL is "
        "the credential. A silent heartbeat opens an alert, the next beat resolves it"
    )
    return {
        "/api/v1/heartbeat/{token}": {
            "get": _operation("beatGet", summary, beat, parameters=[token]),
            "post": _operation(
                "beatPost",
                summary + ". Any body is accepted (curl, or an Alertmanager receiver for the "
                "Watchdog alert); an Alertmanager notification whose status is 'resolved' is "
                "not counted as a beat",
                beat,
                parameters=[token],
                body={},
                optional_body=True,
            ),
        }
    }


def _calendar_paths() -> dict[str, Any]:
    def parameter(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": name, "in": "path", "required": True, "description": description,
            "schema": schema,
        }  # fmt: skip

    ics = {
        "description": "an iCalendar feed (RFC 5545) of the shifts, times in UTC",
        "content": {"text/calendar": {"schema": {"type": "string"}}},
    }
    return {
        "/api/v1/calendars/{kind}/{name}/{token}.ics": {
            "get": _operation(
                "calendarFeed",
                "A person's shifts (in every schedule) or a schedule's, from 14 days back to "
                "90 days ahead, for calendar applications to subscribe to; the token in the "
                "URL is the credential (voipalert calendar url). A wrong token and an unknown "
                "name get the same 404",
                {"200": ics, **_responses({}, (404, 429))},
                parameters=[
                    parameter(
                        "kind", "whose shifts", {"type": "string", "enum": ["person", "schedule"]}
                    ),
                    parameter("name", "the person's or schedule's name", {"type": "string"}),
                    parameter("token", "the URL's secret", {"type": "string"}),
                ],
            )
        }
    }


def _ack_link_paths() -> dict[str, Any]:
    token = {
        "name": "token",
        "in": "path",
        "required": True,
        "description": "the signed, single-use, expiring token of an e-mail's link",
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_TOKEN_CHARS},
    }
    page = {"content": {"text/html": {"schema": {"type": "string"}}}}
    gone = {"description": "expired or already used", **page}
    missing = {"description": "not a link we issued (unknown, altered or too long)", **page}
    return {
        "/ack/{token}": {
            "get": _operation(
                "ack_link_page",
                "The page of an e-mail's acknowledgement link: asks to confirm, changes nothing "
                "(a mail scanner fetching links acknowledges nothing)",
                {
                    "200": {"description": "the confirmation page", **page},
                    "404": missing,
                    "410": gone,
                },
                parameters=[token],
            ),
            "post": _operation(
                "ack_link_use",
                "Acknowledge the link's alert as the person it was sent to; the link then no "
                "longer works",
                {
                    "200": {"description": "acknowledged, or already handled", **page},
                    "404": missing,
                    "410": gone,
                },
                parameters=[token],
            ),
        }
    }


def _probe_paths() -> dict[str, Any]:
    text = {
        "description": "Prometheus text format",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
    return {
        "/healthz": {
            "get": _operation(
                "health", "The process answers", _responses({200: _json(HealthOut, "alive")}, ())
            )
        },
        "/readyz": {
            "get": _operation(
                "ready",
                "The database answers and SIP can place calls; status 'degraded' (still 200) "
                "with the reasons when the self-test finds the phone path failing or a SIP "
                "trunk fails; each trunk's state under 'trunks'",
                _responses(
                    {
                        200: _json(ReadyOut, "ready (or degraded)"),
                        503: _json(ReadyOut, "not ready"),
                    },
                    (),
                ),
            )
        },
        "/metrics": {"get": _operation("metrics", "Prometheus metrics", {"200": text})},
        "/api/v1/openapi.json": {
            "get": _operation(
                "openapi",
                "This document",
                {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            )
        },
    }


def _override_paths() -> dict[str, Any]:
    """docs/rota-edits.md; handlers in ``ingest.overrides_api``."""
    schedule = {
        "name": "name", "in": "path", "required": True,
        "schema": {"type": "string", "minLength": 1}, "description": "the schedule's name",
    }  # fmt: skip
    override_id = {**_ALERT_ID, "description": "the override's id"}
    window = [
        {
            "name": "from", "in": "query", "schema": {"type": "string", "format": "date-time"},
            "description": "only overrides that end after this instant (RFC 3339); default now",
        },
        {
            "name": "to", "in": "query", "schema": {"type": "string", "format": "date-time"},
            "description": "only overrides that start before this instant (RFC 3339)",
        },
    ]  # fmt: skip
    listed = {200: _json(OverrideListOut, "by start time")}
    added = _json(
        OverrideAddedOut,
        "added",
        headers={"Location": {"schema": {"type": "string"}, "required": True}},
    )
    return {
        "/api/v1/overrides": {
            "get": _operation(
                "listOverrides", "Overrides of every schedule (from the file and made since)",
                _responses(listed, (401, 403, 422, 503)), scope="read", parameters=window,
            )
        },
        "/api/v1/schedules/{name}/overrides": {
            "get": _operation(
                "listScheduleOverrides", "Overrides of one schedule",
                _responses(listed, (401, 403, 404, 422, 503)), scope="read",
                parameters=[schedule, *window],
            ),
            "post": _operation(
                "addOverride",
                "Put someone on call for a while without replacing the rota; the same "
                "override twice is one (200 the second time)",
                _responses(
                    {201: added, 200: _json(OverrideAddedOut, "it was already there")},
                    (400, 401, 403, 404, 413, 422, 503),
                ),
                scope="admin", parameters=[schedule], body=_ref(OverrideIn),
            ),
        },
        "/api/v1/schedules/{name}/overrides/{id}": {
            "delete": _operation(
                "removeOverride", "Remove an override (one from the file comes back with the "
                "next rota import of that file)",
                _responses({200: _json(OverrideOut, "the override removed")}, (401, 403, 404, 503)),
                scope="admin", parameters=[schedule, override_id],
            )
        },
    }  # fmt: skip


def build_openapi(config: HttpConfig) -> dict[str, Any]:
    _, schemas = models_json_schema(
        [(m, "validation") for m in _REQUEST_MODELS]
        + [(m, "serialization") for m in _RESPONSE_MODELS],
        ref_template=REF,
    )
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "voipalert",
            "version": __version__,
            "description": "Triggers, alert history and acknowledgement for voipalert.",
        },
        "paths": {
            **_alert_paths(),
            **_hook_paths(config),
            **_heartbeat_paths(),
            **_override_paths(),
            **_calendar_paths(),
            **_ack_link_paths(),
            **_probe_paths(),
        },
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "an API token"}
            },
        },
    }
    if config.signature_headers:
        document["components"]["securitySchemes"]["signature"] = {
            "type": "apiKey",
            "in": "header",
            "name": config.signature_headers[0],
            "description": "hex HMAC-SHA256 of 'timestamp:body', the Unix time in "
            + ", ".join(config.timestamp_headers)
            + (" (required)" if config.require_signature_timestamp else " (or of the body alone)")
            + ", keyed with the token's signing secret (voipalert token signing-secret NAME); "
            "each signature is accepted once; grants the trigger scope only",
        }
    else:  # signatures switched off: bearer tokens only
        for item in document["paths"].values():
            for op in item.values():
                if "security" in op:
                    op["security"] = [{"bearer": []}]
    return document
