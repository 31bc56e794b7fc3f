"""The façade end to end: pronunciation → real Piper → prompt, in English and French."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.tts.voice_dirs import make_voice_dir
from voipalert.tts.config import TtsConfig
from voipalert.tts.errors import BrokenVoiceError, NoVoiceForLanguageError
from voipalert.tts.speech import Speech
from voipalert.tts.templates import compile_template


@pytest.fixture
async def speech(tmp_path: Path, joe_sha256: str) -> AsyncIterator[Speech]:
    config = TtsConfig(
        voices_dir=make_voice_dir(tmp_path, joe_sha256),
        cache_dir=tmp_path / "cache",
        pronunciations={"Kx3": "kay ex three"},
        pronunciations_by_language={"fr": {"Kx3": "ka iks trois"}},
    )
    async with Speech.open(config) as opened:
        yield opened


async def test_say_applies_the_pronunciation_rules_then_renders(speech: Speech) -> None:
    prompt = await speech.say("SRV-DB-01 at 95 % on Kx3", language="en")
    assert prompt.text == "S R V D B zero one at 95 percent on kay ex three"
    assert prompt.voice_id == "en_US-joe-medium"
    assert prompt.duration_seconds > 1.5


async def test_french_uses_the_french_voice_rules_and_site_entries(speech: Speech) -> None:
    prompt = await speech.say("SRV-DB-01 à 95 % sur Kx3", language="fr")
    assert prompt.text == "S R V D B zéro un à 95 pour cent sur ka iks trois"
    assert prompt.voice_id == "fr_FR-test-medium"
    assert prompt.duration_seconds > 1.5


async def test_catalog_phrases_render_in_each_language(speech: Speech) -> None:
    english = await speech.phrase("already_acknowledged", language="en", name="Alice")
    french = await speech.phrase("already_acknowledged", language="fr", name="Alice")
    assert english.text == "This alert is already acknowledged by Alice."
    assert french.text == "Cette alerte a déjà été acquittée par Alice."
    assert french.voice_id == "fr_FR-test-medium"
    assert speech.renderer.synth_count == 2
    await speech.phrase("already_acknowledged", language="en", name="Alice")
    assert speech.renderer.synth_count == 2  # a repeated phrase is a cache hit


async def test_an_alert_template_is_rendered_and_pronounced(speech: Speech) -> None:
    template = compile_template("disk", "{{ severity }}: {{ host }} disk at {{ usage }}", "en")
    prompt, rendered = await speech.alert(
        template, {"severity": "Critical", "host": "SRV-DB-01", "usage": "95 %"}
    )
    assert rendered.text == "Critical: SRV-DB-01 disk at 95 %"
    assert prompt.text == "Critical: S R V D B zero one disk at 95 percent"


async def test_a_failing_alert_template_says_the_fallback(
    speech: Speech, caplog: pytest.LogCaptureFixture
) -> None:
    template = compile_template("disk", "{{ host }} est arrêté", "fr")
    prompt, rendered = await speech.alert(template, {"summary": "Pompe 3 arrêtée"})
    assert rendered.fallback
    assert prompt.text == "Alerte : Pompe 3 arrêtée"
    assert prompt.voice_id == "fr_FR-test-medium"
    assert "template disk (fr): 'host' is undefined; saying the fallback" in caplog.text


def test_start_up_check_names_languages_without_a_voice(speech: Speech) -> None:
    assert speech.problems(["en", "fr"]) == []
    problems = speech.problems(["en", "de"])
    assert problems[0].startswith("language de: no installed voice speaks de")
    assert any("no prompt catalog for language 'de'" in p for p in problems)


def test_voice_selection(speech: Speech) -> None:
    assert speech.voice_for().id == "en_US-joe-medium"
    assert speech.voice_for("fr").id == "fr_FR-test-medium"
    assert speech.voice_for(voice_id="fr_FR-test-medium").language == "fr_FR"
    with pytest.raises(NoVoiceForLanguageError, match="speaks fr_FR, not en"):
        speech.voice_for("en", "fr_FR-test-medium")


def test_a_broken_voice_stops_start_up(tmp_path: Path, joe_sha256: str) -> None:
    voices = make_voice_dir(tmp_path, joe_sha256, manifest_sha256="f" * 64)
    with pytest.raises(BrokenVoiceError, match="voice fr_FR-test-medium: wrong checksum"):
        Speech.open(TtsConfig(voices_dir=voices, cache_dir=None))
