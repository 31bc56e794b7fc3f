import pytest

from voipalert.errors import ConfigError
from voipalert.tts.catalog import load_catalog
from voipalert.tts.errors import TemplateConfigError
from voipalert.tts.templates import (
    TextLimits,
    compile_template,
    referenced_fields,
    render_message,
)

SOURCE_FIELDS = {"summary", "severity", "host", "labels"}
en = load_catalog("en")
fr = load_catalog("fr")


def test_fields_a_template_reads() -> None:
    source = (
        "{{ severity }}: {{ host }} {% if labels.team is defined %}{{ labels.team }}{% endif %}"
    )
    assert referenced_fields(source) == {"severity", "host", "labels"}


def test_a_template_using_only_declared_fields_compiles() -> None:
    template = compile_template(
        "disk", "{{ severity }}: {{ host }} is down", "en", declared_fields=SOURCE_FIELDS
    )
    assert template.fields == {"severity", "host"}


def test_an_undeclared_field_is_a_configuration_error_naming_template_and_field() -> None:
    with pytest.raises(TemplateConfigError) as info:
        compile_template("disk", "{{ hostname }} is down", "fr", declared_fields=SOURCE_FIELDS)
    (problem,) = info.value.problems
    assert problem.startswith("template disk (fr): uses field 'hostname'")
    assert "declared: host, labels, severity, summary" in problem
    assert isinstance(info.value, ConfigError)


def test_a_syntax_error_is_a_configuration_error() -> None:
    with pytest.raises(TemplateConfigError, match=r"template bad \(en\): syntax error on line 1"):
        compile_template("bad", "{{ host ", "en")


def test_rendering_speaks_the_fields() -> None:
    template = compile_template("t", "{{ severity|capitalize }}: {{ host }} is down.", "en")
    result = render_message(template, {"severity": "critical", "host": "SRV-DB-01"}, en)
    assert result.text == "Critical: SRV-DB-01 is down."
    assert not result.fallback and result.problem is None


def test_a_missing_field_at_run_time_falls_back_to_the_summary() -> None:
    template = compile_template("t", "{{ host }} is down", "en")
    result = render_message(template, {"summary": "Disk full on db01"}, en)
    assert result.text == "Alert: Disk full on db01"
    assert result.fallback
    assert result.problem == "template t (en): 'host' is undefined"


def test_a_missing_nested_field_falls_back_too() -> None:
    template = compile_template("t", "team {{ labels.team }}", "fr")
    result = render_message(template, {"labels": {"env": "prod"}, "title": "Disque plein"}, fr)
    assert result.text == "Alerte : Disque plein"
    assert result.fallback


def test_without_any_summary_the_fallback_is_a_plain_notice() -> None:
    template = compile_template("t", "{{ host }}", "en")
    assert render_message(template, {}, en).text == en.say("fallback_unknown")
    assert render_message(template, {"summary": "  \x00 "}, fr).text == fr.say("fallback_unknown")


def test_any_template_failure_falls_back() -> None:
    for source in (
        "{{ host + 1 }}",
        "{{ 1 / 0 }}",
        "{{ ''.__class__.__mro__ }}",
        "{{ labels.clear() }}",
    ):
        template = compile_template("t", source, "en")
        result = render_message(template, {"host": "a", "labels": {"x": "y"}, "summary": "s"}, en)
        assert result.fallback, source
        assert result.text == "Alert: s"


def test_the_sandbox_keeps_fields_immutable() -> None:
    labels = {"team": "db"}
    template = compile_template("t", "{% set _ = labels.pop('team') %}{{ labels.team }}", "en")
    render_message(template, {"labels": labels, "summary": "s"}, en)
    assert labels == {"team": "db"}


def test_hostile_values_never_break_rendering() -> None:
    template = compile_template("t", "{{ summary }} on {{ host }}", "en")
    hostile = {
        "summary": "<speak><break time='60s'/>Disk</speak> [[ ʃ ʃ ʃ ]] full\x00\x1b[31m\u202e",
        "host": "A" * 10_000,
    }
    result = render_message(template, hostile, en, TextLimits(max_field_chars=50))
    assert not result.fallback
    summary, host = result.text.split(" on ")
    assert summary == "Disk ʃ ʃ ʃ full"
    assert host == "A" * 49 + "…"


def test_the_whole_message_is_bounded() -> None:
    template = compile_template("t", "{% for i in range(1000) %}{{ summary }} {% endfor %}", "en")
    result = render_message(template, {"summary": "word"}, en, TextLimits(max_message_chars=100))
    assert len(result.text) <= 100 and result.text.endswith("…")


def test_none_values_are_silent_and_structures_are_bounded() -> None:
    template = compile_template("t", "[{{ owner }}] {{ items|length }}", "en")
    result = render_message(template, {"owner": None, "items": list(range(1000))}, en)
    assert result.text == "50"  # brackets stripped, at most 50 items kept


def test_a_template_that_renders_nothing_falls_back() -> None:
    template = compile_template("t", "{% if false %}x{% endif %}", "en")
    result = render_message(template, {"summary": "Pump 3 stopped"}, en)
    assert result.text == "Alert: Pump 3 stopped"
    assert result.problem == "template t (en): produced no text"
