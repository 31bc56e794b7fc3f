"""Generic JSON documents mapped to alerts by configured paths."""

from __future__ import annotations

import pytest

from voipalert.domain.alert import NewAlert, Severity
from voipalert.ingest.convert import Resolve
from voipalert.ingest.mapping import GenericMapping, MappingError, lookup, map_document

# An uptime monitor's notification, as such tools send it.
UPTIME = GenericMapping(
    summary="monitor.name",
    severity="monitor.priority",
    dedup_key="monitor.id",
    resolved="heartbeat.status",
    resolved_values=("1", "up"),
    labels="monitor.tags",
    source="generic:uptime",
    team="ops",
)


def doc(status: object = 0) -> dict[str, object]:
    return {
        "heartbeat": {"status": status, "msg": "timeout after 48s"},
        "monitor": {
            "id": 17,
            "name": "Customer portal https://portal.example.org",
            "priority": "P1",
            "tags": {"site": "paris", "tier": 1, "skip": {"nested": True}},
        },
    }


def test_down_event_becomes_an_alert() -> None:
    event = map_document(doc(0), UPTIME)
    assert isinstance(event, NewAlert)
    assert event.summary == "Customer portal https://portal.example.org"
    assert event.severity is Severity.CRITICAL
    assert event.dedup_key == "17"
    assert event.labels == {"site": "paris", "tier": "1"}  # scalars only, as text
    assert event.source == "generic:uptime" and event.team == "ops"
    assert event.fields["body"] == doc(0)


@pytest.mark.parametrize("status", [1, "1", "UP", True])
def test_resolved_values(status: object) -> None:
    assert map_document(doc(status), UPTIME) == Resolve("17", "generic:uptime")


def test_paths_index_lists() -> None:
    document = {"events": [{"title": "first"}, {"title": "second"}]}
    assert lookup(document, "events.1.title") == "second"
    mapping = GenericMapping(summary="events.0.title")
    event = map_document(document, mapping)
    assert isinstance(event, NewAlert) and event.summary == "first"
    assert event.dedup_key is None and event.severity is Severity.CRITICAL


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({}, "summary"),
        ({"monitor": {"name": ""}}, "summary"),
        ({"monitor": {"name": {"x": 1}}}, "summary"),
        ([1, 2], "summary"),
        ("just text", "summary"),
        ({"monitor": {"name": "n", "id": [1]}}, "dedup_key"),
        ({"monitor": {"name": "n", "tags": "a,b"}}, "labels"),
        ({"heartbeat": {"status": "up"}, "monitor": {"tags": [1]}}, "labels"),
    ],
)
def test_documents_that_do_not_fit_name_the_field(document: object, field: str) -> None:
    with pytest.raises(MappingError) as caught:
        map_document(document, UPTIME)
    assert caught.value.field == field


def test_unknown_severity_word_falls_back_to_the_default() -> None:
    mapping = GenericMapping(summary="s", severity="sev", default_severity=Severity.WARNING)
    event = map_document({"s": "x", "sev": "mauve"}, mapping)
    assert isinstance(event, NewAlert) and event.severity is Severity.WARNING


def test_a_resolve_without_a_key_closes_nothing() -> None:
    # Legitimate (a sender may not know the key), so not an error: it matches no alert.
    assert map_document({"heartbeat": {"status": "up"}}, UPTIME) == Resolve("", "generic:uptime")
