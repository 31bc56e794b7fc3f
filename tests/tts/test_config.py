"""``[tts]`` settings and their mapping onto the speech package's own config."""

from pathlib import Path

import pytest

from voipalert.errors import ConfigError
from voipalert.settings import load_settings
from voipalert.tts.config import RenderConfig, TtsConfig


def settings_from(tmp_path: Path, text: str) -> TtsConfig:
    path = tmp_path / "voipalert.toml"
    path.write_text(text)
    return load_settings(path, environ={}).tts.to_config()


def test_defaults_map_onto_the_core_config(tmp_path: Path) -> None:
    config = settings_from(tmp_path, "")
    assert config == TtsConfig(cache_max_bytes=256 * 1024 * 1024)
    assert config.render == RenderConfig()


def test_every_setting_is_mapped(tmp_path: Path) -> None:
    config = settings_from(
        tmp_path,
        """
[tts]
voices_dir = "/srv/voices"
cache_dir = "/var/cache/voipalert"
cache_max_mb = 10
workers = 2
target_level_dbfs = -18
peak_ceiling_dbfs = -4
sentence_pause_ms = 400
length_scale = 1.1
language_voices = { fr = "fr_FR-siwis-medium" }
max_field_chars = 100

[tts.pronunciations]
"SRV-DB-01" = "the main database"

[tts.pronunciations_by_language.fr]
"SRV-DB-01" = "la base principale"
""",
    )
    assert config.voices_dir == Path("/srv/voices")
    assert config.cache_max_bytes == 10 * 1024 * 1024
    assert config.workers == 2
    assert config.render == RenderConfig(
        target_level_dbfs=-18, peak_ceiling_dbfs=-4, sentence_pause_ms=400, length_scale=1.1
    )
    assert config.language_voices == {"fr": "fr_FR-siwis-medium"}
    assert config.pronunciations == {"SRV-DB-01": "the main database"}
    assert config.pronunciations_by_language == {"fr": {"SRV-DB-01": "la base principale"}}
    assert config.max_field_chars == 100


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[tts]\nlanguage_voices = { de = "x" }', "tts.language_voices"),
        ("[tts]\nworkers = 0", "tts.workers"),
        ("[tts]\npeak_ceiling_dbfs = 0", "tts.peak_ceiling_dbfs"),
        ('[tts.pronunciations]\n"SRV" = " "', "empty word or pronunciation"),
        ('[tts.pronunciations_by_language.xx]\n"a" = "b"', "unknown language 'xx'"),
    ],
)
def test_bad_settings_are_config_errors_naming_the_key(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from(tmp_path, text)
    assert any(message in p for p in info.value.problems), info.value.problems
