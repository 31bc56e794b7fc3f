"""Any JSON document to an alert event, by a configured mapping (pure: no I/O).

A mapping names, for one generic webhook (``POST /api/v1/hooks/generic/{name}``), where in the
sender's JSON the summary, severity, dedup key, resolved flag and labels are. A path is a
dotted list of object keys and list indexes: ``alert.labels.host``, ``events.0.title``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from voipalert.domain.alert import NewAlert, Severity
from voipalert.domain.rota import PolicyName, TeamName
from voipalert.errors import VoipAlertError
from voipalert.ingest.convert import Event, Resolve, clean_labels, clean_text, parse_severity
from voipalert.ingest.schemas import MAX_KEY_CHARS, MAX_SUMMARY_CHARS

DEFAULT_RESOLVED_VALUES: Final = ("true", "resolved", "ok", "recovery", "recovered", "closed")
_MISSING: Final = object()


class MappingError(VoipAlertError, ValueError):
    """The document does not fit the mapping: ``field`` is the mapping's key, ``reason``
    says what was found at its path."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


@dataclass(frozen=True, slots=True)
class GenericMapping:
    """Where a generic webhook's JSON keeps each part of an alert."""

    summary: str
    severity: str | None = None
    dedup_key: str | None = None
    resolved: str | None = None
    resolved_values: tuple[str, ...] = DEFAULT_RESOLVED_VALUES
    labels: str | None = None
    source: str = "generic"
    default_severity: Severity = Severity.CRITICAL
    team: str | None = None
    policy: str | None = None


def lookup(document: object, path: str) -> object:
    """The value at ``path``, or ``_MISSING``."""
    node = document
    for part in path.split("."):
        if isinstance(node, Mapping):
            node = node.get(part, _MISSING)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
        if node is _MISSING:
            return _MISSING
    return node


def _scalar_text(value: object) -> str | None:
    if isinstance(value, bool) or value is None or value is _MISSING:
        return None
    if isinstance(value, str | int | float):
        return str(value)
    return None


def _is_resolved(document: object, mapping: GenericMapping) -> bool:
    if mapping.resolved is None:
        return False
    value = lookup(document, mapping.resolved)
    if isinstance(value, bool):
        return value
    text = _scalar_text(value)
    return text is not None and text.strip().lower() in mapping.resolved_values


def _labels(document: object, mapping: GenericMapping) -> dict[str, str]:
    if mapping.labels is None:
        return {}
    value = lookup(document, mapping.labels)
    if value is _MISSING:
        return {}
    if not isinstance(value, Mapping):
        raise MappingError("labels", f"expected an object at {mapping.labels!r}")
    scalars = {str(k): _scalar_text(v) for k, v in value.items()}
    return clean_labels({k: v for k, v in scalars.items() if v is not None})


def _dedup_key(document: object, mapping: GenericMapping) -> str | None:
    if mapping.dedup_key is None:
        return None
    value = lookup(document, mapping.dedup_key)
    if value is _MISSING or value is None:
        return None
    text = _scalar_text(value)
    if text is None:
        raise MappingError("dedup_key", f"expected a string or number at {mapping.dedup_key!r}")
    return clean_text(text, MAX_KEY_CHARS) or None


def map_document(document: object, mapping: GenericMapping) -> Event:
    """The event the document stands for, or ``MappingError`` naming what is missing."""
    key = _dedup_key(document, mapping)
    if _is_resolved(document, mapping):
        if key is None:
            raise MappingError("dedup_key", "a resolved event needs a dedup key to close")
        return Resolve(key, mapping.source)
    summary = clean_text(_scalar_text(lookup(document, mapping.summary)) or "", MAX_SUMMARY_CHARS)
    if not summary:
        raise MappingError("summary", f"no text at {mapping.summary!r}")
    severity = mapping.default_severity
    if mapping.severity is not None:
        severity = parse_severity(lookup(document, mapping.severity)) or severity
    # The whole document is kept for templates, re-encoded so nothing but JSON is stored.
    body = json.loads(json.dumps(document))
    return NewAlert(
        summary=summary,
        severity=severity,
        source=mapping.source,
        dedup_key=key,
        fields={"body": body},
        labels=_labels(document, mapping),
        team=TeamName(mapping.team) if mapping.team else None,
        policy=PolicyName(mapping.policy) if mapping.policy else None,
    )
