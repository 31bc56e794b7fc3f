from pathlib import Path

import pytest

from voipalert.errors import ConfigError
from voipalert.tts.errors import BrokenVoiceError, NoVoiceForLanguageError, VoiceNotFoundError
from voipalert.tts.voices import (
    DEFAULT_VOICE_ID,
    ManifestEntry,
    Voice,
    VoiceId,
    VoiceInventory,
    check_voice_config,
    normalise_language,
    parse_manifest,
    same_language,
)

SHA = "ab" * 32
REPO = Path(__file__).resolve().parents[2]


def entry(**overrides: object) -> str:
    fields: dict[str, object] = {
        "id": "fr_FR-siwis-medium",
        "language": "fr-fr",
        "sample_rate": 22050,
        "sha256": SHA,
        "licence": "CC-BY-4.0",
        "model": "fr_FR-siwis-medium.onnx",
    }
    fields.update(overrides)
    lines = [f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v}" for k, v in fields.items()]
    lines = [line.replace("'", '"') for line in lines if "None" not in line]
    return "[[voice]]\n" + "\n".join(lines) + "\n"


def problems_of(text: str) -> list[str]:
    with pytest.raises(BrokenVoiceError) as info:
        parse_manifest(text)
    return info.value.problems


def test_the_shipped_manifest_has_no_extra_voice_and_is_valid() -> None:
    assert parse_manifest((REPO / "voices" / "voices.toml").read_text("utf-8")) == ()


def test_a_valid_entry() -> None:
    (voice,) = parse_manifest(entry())
    assert voice == ManifestEntry(
        id=VoiceId("fr_FR-siwis-medium"),
        language="fr_FR",
        sample_rate=22050,
        sha256=SHA,
        licence="CC-BY-4.0",
        model="fr_FR-siwis-medium.onnx",
        config="fr_FR-siwis-medium.onnx.json",
    )


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"sha256": "xyz"}, "sha256 must be 64 lowercase hex digits"),
        ({"sha256": SHA.upper()}, "sha256 must be 64 lowercase hex digits"),
        ({"model": "../etc/passwd"}, "model must be a plain file name"),
        ({"model": "/abs/voice.onnx"}, "model must be a plain file name"),
        ({"config": "sub/x.onnx.json"}, "config must be a plain file name"),
        ({"language": "French"}, "language must look like fr or fr_FR"),
        ({"sample_rate": 100}, "sample_rate must be an integer 8000-48000"),
        ({"sample_rate": 22050.5}, "sample_rate must be an integer"),
        ({"licence": " "}, "licence must not be empty"),
        ({"speed": 3}, "unknown key 'speed'"),
        ({"id": DEFAULT_VOICE_ID}, "is the built-in voice's"),
    ],
)
def test_bad_entries_name_the_voice(override: dict[str, object], expected: str) -> None:
    problems = problems_of(entry(**override))
    assert any(expected in p for p in problems), problems
    voice_id = override.get("id", "fr_FR-siwis-medium")
    assert all(f"voice {voice_id!r}" in p for p in problems), problems


def test_missing_keys_and_duplicates_are_all_reported() -> None:
    text = entry() + entry() + '[[voice]]\nid = "x"\n'
    problems = problems_of(text)
    assert "voices.toml: voice 'fr_FR-siwis-medium': id is listed twice" in problems
    assert "voices.toml: voice 'x': missing key 'sha256'" in problems
    assert "voices.toml: voice 'x': missing key 'model'" in problems


def test_broken_toml_and_wrong_shapes() -> None:
    assert "not valid TOML" in problems_of("[[voice]\nid=")[0]
    assert "'voice' must be an array of tables" in problems_of('voice = "x"')[0]
    assert "unknown top-level key 'voices'" in problems_of("[[voices]]\nid = 'x'")[0]
    assert "must be a string" in problems_of(entry(id=5))[0]


def test_broken_voice_error_is_a_config_error() -> None:
    assert issubclass(BrokenVoiceError, ConfigError)


def test_languages() -> None:
    assert normalise_language("fr-fr") == "fr_FR"
    assert normalise_language("en") == "en"
    assert normalise_language("english") is None
    assert same_language("fr", "fr_CA")
    assert same_language("en_US", "en-us")
    assert not same_language("en_US", "en_GB")
    assert not same_language("fr", "en")


def piper_config(**overrides: object) -> dict[str, object]:
    config: dict[str, object] = {
        "num_symbols": 256,
        "num_speakers": 1,
        "phoneme_id_map": {},
        "audio": {"sample_rate": 22050},
        "espeak": {"voice": "fr"},
        "language": {"code": "fr_FR"},
    }
    config.update(overrides)
    return config


def test_voice_config_checks() -> None:
    (manifest,) = parse_manifest(entry())
    assert check_voice_config("voice v", piper_config(), manifest) == []
    assert check_voice_config("voice v", [1, 2], manifest) == [
        "voice v: config is not a JSON object"
    ]
    wrong_language = check_voice_config(
        "voice v", piper_config(language={"code": "de_DE"}), manifest
    )
    assert wrong_language == ["voice v: manifest says language fr_FR, config says de_DE"]
    wrong_rate = check_voice_config("voice v", piper_config(audio={"sample_rate": 16000}), manifest)
    assert wrong_rate == ["voice v: manifest says sample_rate 22050, config says 16000"]
    no_map = piper_config()
    del no_map["phoneme_id_map"]
    assert "lacks 'phoneme_id_map'" in check_voice_config("voice v", no_map, manifest)[0]
    # Without language.code the espeak voice tells the language.
    espeak_only = piper_config()
    del espeak_only["language"]
    assert check_voice_config("voice v", espeak_only, manifest) == []


def voice(voice_id: str, language: str) -> Voice:
    return Voice(VoiceId(voice_id), language, 22050, Path("m"), Path("c"), SHA, SHA, "CC0")


def test_inventory_lookup_by_id_and_language() -> None:
    inventory = VoiceInventory(
        {
            DEFAULT_VOICE_ID: voice(DEFAULT_VOICE_ID, "en_US"),
            VoiceId("fr_B"): voice("fr_B", "fr_FR"),
            VoiceId("fr_A"): voice("fr_A", "fr_FR"),
        }
    )
    assert inventory.for_language("en").id == DEFAULT_VOICE_ID
    assert inventory.for_language("fr").id == "fr_A"  # first by id when none is configured
    assert inventory.for_language("fr", {"fr": "fr_B"}).id == "fr_B"
    with pytest.raises(NoVoiceForLanguageError, match="fr_B speaks fr_FR, not en"):
        inventory.for_language("en", {"en": "fr_B"})
    with pytest.raises(NoVoiceForLanguageError, match="no installed voice speaks de"):
        inventory.for_language("de")
    with pytest.raises(VoiceNotFoundError, match="no voice 'nl_X' is installed"):
        inventory.get("nl_X")
    problems = inventory.language_problems(["en", "fr", "de"], {"fr": "missing"})
    assert len(problems) == 2
    assert problems[0].startswith("language fr: no voice 'missing'")
    assert problems[1].startswith("language de: no installed voice speaks de")
