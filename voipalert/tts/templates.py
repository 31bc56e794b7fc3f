"""Message templates and the prompt catalog (pure).

Templates are Jinja2 in an immutable sandbox (no attribute tricks, no mutation of the fields)
with ``StrictUndefined``: naming a field that is not there is an error, never a silent blank.

- At configuration time, where the alert source declares its fields, ``compile_template``
  rejects a template that names any other field (``TemplateConfigError`` naming the template
  and the field).
- At run time, when a field is missing anyway (an optional label) or the template fails in
  any other way, ``render_message`` says the catalog's fallback sentence ("Alert: <summary>")
  and reports the problem; a call always has something to say.

Field values are untrusted: each string is cleaned (controls, markup, Piper phoneme syntax)
and cut to a spoken maximum before the template sees it, and the whole message is cut too.
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import jinja2
import jinja2.meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from voipalert.tts.errors import TemplateConfigError
from voipalert.tts.text import clean_text, speakable, truncate_spoken

# Fields tried, in order, for the fallback sentence.
FALLBACK_FIELDS: Final = ("summary", "title", "subject", "alertname", "description", "message")
MAX_ITEMS: Final = 50
MAX_DEPTH: Final = 4


def _finalize(value: object) -> object:
    return "" if value is None else value


ENVIRONMENT: Final = ImmutableSandboxedEnvironment(
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    trim_blocks=True,
    lstrip_blocks=True,
    finalize=_finalize,
)


@dataclass(frozen=True, slots=True)
class TextLimits:
    max_field_chars: int = 160
    max_message_chars: int = 600


@dataclass(frozen=True, slots=True)
class MessageTemplate:
    name: str
    language: str
    source: str
    fields: frozenset[str]
    compiled: jinja2.Template = field(repr=False, compare=False)

    def render(self, fields: Mapping[str, object]) -> str:
        """Render with already-sanitised fields; raises what Jinja raises."""
        return self.compiled.render(dict(fields))


@dataclass(frozen=True, slots=True)
class RenderedText:
    text: str
    fallback: bool = False
    problem: str | None = None


def referenced_fields(source: str) -> frozenset[str]:
    """Top-level names a template reads (``labels`` for ``{{ labels.instance }}``)."""
    return frozenset(jinja2.meta.find_undeclared_variables(ENVIRONMENT.parse(source)))


def compile_template(
    name: str, source: str, language: str, *, declared_fields: Collection[str] | None = None
) -> MessageTemplate:
    """Compile, and when the source's fields are known, check the template uses only them."""
    label = f"template {name} ({language})"
    try:
        compiled = ENVIRONMENT.from_string(source)
        fields = referenced_fields(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateConfigError(
            [f"{label}: syntax error on line {exc.lineno}: {exc.message}"]
        ) from None
    if declared_fields is not None:
        unknown = sorted(fields - set(declared_fields))
        if unknown:
            known = ", ".join(sorted(declared_fields)) or "none"
            raise TemplateConfigError(
                [
                    f"{label}: uses field {f!r}, which the alert source does not declare "
                    f"(declared: {known})"
                    for f in unknown
                ]
            )
    return MessageTemplate(name, language, source, fields, compiled)


def sanitise_value(value: object, limits: TextLimits, depth: int = 0) -> object:
    """Untrusted field value → something safe to speak: clean bounded strings, numbers,
    and (bounded) lists and mappings of those."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return speakable(value, limits.max_field_chars)
    if depth < MAX_DEPTH and isinstance(value, Mapping):
        items = list(value.items())[:MAX_ITEMS]
        return {str(k): sanitise_value(v, limits, depth + 1) for k, v in items}
    if depth < MAX_DEPTH and isinstance(value, list | tuple):
        return [sanitise_value(v, limits, depth + 1) for v in value[:MAX_ITEMS]]
    return speakable(str(value), limits.max_field_chars)


def sanitise_fields(fields: Mapping[str, object], limits: TextLimits) -> dict[str, object]:
    return {str(k): sanitise_value(v, limits) for k, v in list(fields.items())[: MAX_ITEMS * 4]}


class Catalog:
    """The fixed phrases of a call in one language (greeting, menu, goodbye, ...)."""

    def __init__(self, language: str, phrases: Mapping[str, MessageTemplate]) -> None:
        self.language = language
        self.phrases = dict(phrases)

    def say(self, key: str, **fields: object) -> str:
        """A phrase with its placeholders filled (field values are sanitised)."""
        return self.render(key, fields, TextLimits())

    def render(self, key: str, fields: Mapping[str, object], limits: TextLimits) -> str:
        template = self.phrases.get(key)
        if template is None:
            raise KeyError(f"no phrase {key!r} in the {self.language} catalog")
        return clean_text(template.render(sanitise_fields(fields, limits)))

    def fallback(self, fields: Mapping[str, object], limits: TextLimits) -> str:
        """ "Alert: <summary>" from the first usable summary-like field, else a plain notice."""
        for name in FALLBACK_FIELDS:
            value = fields.get(name)
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                summary = speakable(value, limits.max_field_chars)
                if summary:
                    return self.render("fallback", {"summary": summary}, limits)
        return self.render("fallback_unknown", {}, limits)


def parse_catalog(text: str, language: str, *, source: str) -> Catalog:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TemplateConfigError([f"{source}: not valid TOML: {exc}"]) from None
    problems: list[str] = []
    phrases: dict[str, MessageTemplate] = {}
    for key, value in data.items():
        if not isinstance(value, str):
            problems.append(f"{source}: phrase {key!r} must be a string")
            continue
        try:
            phrases[key] = compile_template(f"{source}:{key}", value, language)
        except TemplateConfigError as exc:
            problems += exc.problems
    if problems:
        raise TemplateConfigError(problems)
    return Catalog(language, phrases)


def render_message(
    template: MessageTemplate,
    fields: Mapping[str, object],
    catalog: Catalog,
    limits: TextLimits | None = None,
) -> RenderedText:
    """The spoken message for an alert; on any template failure, the catalog's fallback."""
    limits = limits or TextLimits()
    safe = sanitise_fields(fields, limits)
    label = f"template {template.name} ({template.language})"
    try:
        text = truncate_spoken(clean_text(template.render(safe)), limits.max_message_chars)
    except jinja2.UndefinedError as exc:
        return RenderedText(catalog.fallback(safe, limits), True, f"{label}: {exc.message}")
    # The fallback exists so that a call always has words: any failure of an operator's
    # template (TypeError on "x + 1", SecurityError, ZeroDivisionError ...) lands here.
    except Exception as exc:
        return RenderedText(catalog.fallback(safe, limits), True, f"{label}: {exc!r}")
    if not text:
        return RenderedText(catalog.fallback(safe, limits), True, f"{label}: produced no text")
    return RenderedText(text)


def catalog_differences(reference: Catalog, other: Catalog) -> list[str]:
    """Keys or placeholders that differ between two catalogs (they must match exactly)."""
    problems = [
        f"{other.language} catalog lacks phrase {key!r}"
        for key in sorted(set(reference.phrases) - set(other.phrases))
    ]
    problems += [
        f"{other.language} catalog has extra phrase {key!r}"
        for key in sorted(set(other.phrases) - set(reference.phrases))
    ]
    for key in sorted(set(reference.phrases) & set(other.phrases)):
        ours: Any = sorted(reference.phrases[key].fields)
        theirs: Any = sorted(other.phrases[key].fields)
        if ours != theirs:
            problems.append(
                f"phrase {key!r}: {reference.language} uses {ours}, {other.language} uses {theirs}"
            )
    return problems
