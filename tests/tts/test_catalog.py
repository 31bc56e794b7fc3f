import pytest

from voipalert.tts.catalog import available_languages, load_catalog
from voipalert.tts.errors import TemplateConfigError
from voipalert.tts.pronounce import Pronouncer
from voipalert.tts.templates import catalog_differences, parse_catalog

REQUIRED = {
    "greeting",
    "message",
    "press_to_acknowledge",
    "press_to_repeat",
    "invalid_key",
    "acknowledged",
    "already_acknowledged",
    "resolved",
    "no_acknowledgement",
    "goodbye",
    "handled_elsewhere",
    "voicemail",
    "fallback",
    "fallback_unknown",
    # The call-in menu (voipalert.callin_menu, docs/call-in.md).
    "callin_welcome",
    "callin_enter_pin",
    "callin_wrong_pin",
    "callin_locked_out",
    "callin_unknown",
    "callin_no_open_alerts",
    "callin_menu",
    "callin_menu_no_resolve",
    "callin_resolved",
    "callin_already_handled",
    "callin_not_allowed",
    "callin_no_more",
}


def test_english_and_french_ship() -> None:
    assert available_languages() == ("en", "fr")
    assert load_catalog("fr_FR") is load_catalog("fr")


def test_both_catalogs_have_exactly_the_same_keys_and_placeholders() -> None:
    en, fr = load_catalog("en"), load_catalog("fr")
    assert set(en.phrases) == REQUIRED
    assert catalog_differences(en, fr) == []
    assert catalog_differences(fr, en) == []
    assert en.phrases["already_acknowledged"].fields == {"name"}
    assert fr.phrases["message"].fields == {"severity", "summary"}
    assert en.phrases["press_to_acknowledge"].fields == {"ack_key"}
    assert fr.phrases["invalid_key"].fields == {"ack_key", "repeat_key"}


def test_differences_are_reported() -> None:
    en = load_catalog("en")
    other = parse_catalog('greeting = "Hallo {{ who }}"', "de", source="de.toml")
    problems = catalog_differences(en, other)
    assert "de catalog lacks phrase 'goodbye'" in problems
    assert "phrase 'greeting': en uses [], de uses ['who']" in problems


@pytest.mark.parametrize("language", ["en", "fr"])
def test_every_phrase_renders_and_is_speakable(language: str) -> None:
    catalog = load_catalog(language)
    pronouncer = Pronouncer(language)
    fields = {"name": "Alice <b>Martin</b>", "severity": "critical", "summary": "SRV-DB-01 down"}
    fields |= {"ack_key": "1", "repeat_key": "0"}
    for key in catalog.phrases:
        text = catalog.say(key, **fields)
        assert text and "<" not in text, key
        assert pronouncer.spoken(text), key


def test_phrases_read_as_expected() -> None:
    assert load_catalog("en").say("already_acknowledged", name="Alice") == (
        "This alert is already acknowledged by Alice."
    )
    assert load_catalog("fr").say("already_acknowledged", name="Alice") == (
        "Cette alerte a déjà été acquittée par Alice."
    )
    assert load_catalog("en").say("message", summary="Pump 3 stopped") == "Pump 3 stopped"
    assert load_catalog("fr").say("message", severity="critique", summary="Pompe 3") == (
        "Alerte critique. Pompe 3"
    )


def test_a_phrase_placeholder_must_be_given() -> None:
    with pytest.raises(Exception, match="'name' is undefined"):
        load_catalog("en").say("already_acknowledged")
    with pytest.raises(KeyError, match="no phrase 'nope'"):
        load_catalog("en").say("nope")


def test_unknown_language_and_broken_catalogs() -> None:
    with pytest.raises(TemplateConfigError, match="no prompt catalog for language 'de'"):
        load_catalog("de")
    with pytest.raises(TemplateConfigError, match=r"x\.toml: phrase 'a' must be a string"):
        parse_catalog("a = 1", "xx", source="x.toml")
    with pytest.raises(TemplateConfigError, match="syntax error"):
        parse_catalog('a = "{{ oops"', "xx", source="x.toml")


@pytest.mark.parametrize(
    ("language", "ack", "repeat", "expected"),
    [
        ("en", "5", "0", ("Press 5 to acknowledge.", "Press 0 to hear the message again.")),
        ("en", "#", "*", ("Press hash to acknowledge.", "Press star to hear the message again.")),
        ("fr", "7", "9", ("Appuyez sur 7 pour acquitter l'alerte.",
                          "Appuyez sur 9 pour réécouter le message.")),
        ("fr", "*", "#", ("Appuyez sur étoile pour acquitter l'alerte.",
                          "Appuyez sur dièse pour réécouter le message.")),
    ],
)  # fmt: skip
def test_the_menu_says_the_configured_keys(
    language: str, ack: str, repeat: str, expected: tuple[str, str]
) -> None:
    from voipalert.notify.voice import menu_fields

    catalog = load_catalog(language)
    menu = menu_fields(ack, repeat, language)
    said = (catalog.say("press_to_acknowledge", **menu), catalog.say("press_to_repeat", **menu))
    assert said == expected
    invalid = catalog.say("invalid_key", **menu)
    assert menu["ack_key"] in invalid and menu["repeat_key"] in invalid
    assert "1" not in invalid or ack == "1"
