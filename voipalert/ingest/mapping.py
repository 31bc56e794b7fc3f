"""Any JSON document to an alert event, by a configured mapping (pure: no I/O).

A mapping names, for one generic webhook (``POST /api/v1/hooks/generic/{name}``), where in the
sender's JSON the summary, severity, dedup key, resolved flag and labels are. A path is a
dotted list of object keys and list indexes: ``alert.labels.host``, ``events.0.title``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

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
    labels = _labels(document, mapping)  # checked for a resolve too: the schema says so
    if _is_resolved(document, mapping):
        # Without a key a "resolved" names nothing to close: an empty key matches no alert,
        # so the sender hears "not_open" rather than an error for a legitimate message.
        return Resolve(key or "", mapping.source)
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
        labels=labels,
        team=TeamName(mapping.team) if mapping.team else None,
        policy=PolicyName(mapping.policy) if mapping.policy else None,
    )


# ------------------------------------------------------------------ the document's schema

_SCALAR_TEXT: Final[dict[str, Any]] = {
    "anyOf": [{"type": "string", "pattern": "[^\\x00-\\x20\\x7f]"}, {"type": "number"}]
}


def _insert(tree: dict[str, Any], path: str, leaf: dict[str, Any], required: bool) -> None:
    parts = path.split(".")
    node = tree
    for part in parts[:-1]:
        if part.isdigit():
            return  # list indexes: the document schema stops constraining here
        child = node.setdefault(part, {"children": {}, "required": False})
        child["required"] = child["required"] or required
        node = child["children"]
    if parts[-1].isdigit():
        return
    node[parts[-1]] = {"leaf": leaf, "required": required, "children": {}}


def _render(tree: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required = []
    for name, node in tree.items():
        if "leaf" in node:
            properties[name] = node["leaf"]
        elif node["required"]:
            properties[name] = _render(node["children"])
        else:
            # An optional branch that is not an object is simply not there for the lookup.
            properties[name] = {"anyOf": [{"not": {"type": "object"}}, _render(node["children"])]}
        if node["required"]:
            required.append(name)
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = sorted(required)
    return schema


def document_schema(mapping: GenericMapping) -> dict[str, Any]:
    """The JSON schema of the documents this mapping accepts (for the OpenAPI document):
    the summary's path must hold text or a number; the dedup key's, when present, a scalar;
    the labels', when present, an object."""
    tree: dict[str, Any] = {}
    if mapping.dedup_key is not None:
        _insert(tree, mapping.dedup_key, {"type": ["string", "number", "null"]}, False)
    if mapping.labels is not None:
        _insert(tree, mapping.labels, {"type": "object"}, False)
    if mapping.resolved is None:
        _insert(tree, mapping.summary, _SCALAR_TEXT, True)
        return _render(tree)
    # A resolved event needs no summary: require it only when the flag is not "resolved".
    flag_values = [*mapping.resolved_values, True]
    resolved_tree: dict[str, Any] = {}
    _insert(resolved_tree, mapping.resolved, {"enum": flag_values}, True)
    summary_tree: dict[str, Any] = {}
    _insert(summary_tree, mapping.summary, _SCALAR_TEXT, True)
    return {**_render(tree), "anyOf": [_render(resolved_tree), _render(summary_tree)]}
