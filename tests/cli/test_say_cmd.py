"""``voipalert say`` run as a real subprocess (``python -m voipalert``)."""

import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np

from tests.tts.voice_dirs import joe_model_sha256, make_voice_dir

REPO = Path(__file__).resolve().parents[2]
TEXT = "Critical: SRV-DB-01 disk at 95 %"


def voipalert(
    tmp_path: Path, *args: str, voices: str = "voices"
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "voipalert.toml").write_text(
        f'[tts]\nvoices_dir = "{voices}"\ncache_dir = "cache"\n'
        '[tts.pronunciations]\n"Kx3" = "kay ex three"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOIPALERT_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "voipalert", "--log-level", "WARNING", "say", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def read(path: Path) -> tuple[wave._wave_params, np.ndarray]:
    with wave.open(str(path), "rb") as source:
        params = source.getparams()
        samples = np.frombuffer(source.readframes(params.nframes), dtype="<i2")
    return params, samples


def test_say_writes_the_8khz_prompt_and_reuses_the_cache(tmp_path: Path) -> None:
    first = voipalert(tmp_path, TEXT, "-o", "alert.wav")
    assert first.returncode == 0, first.stderr
    assert "alert.wav:" in first.stdout and "rendered" in first.stdout
    params, samples = read(tmp_path / "alert.wav")
    assert (params.nchannels, params.sampwidth, params.framerate) == (1, 2, 8000)
    spoken = "Critical: S R V D B zero one disk at 95 percent"
    assert len(spoken) / 20 < params.nframes / 8000 < len(spoken) / 8
    assert np.abs(samples.astype(np.int32)).max() <= round(10 ** (-3 / 20) * 32767)

    second = voipalert(tmp_path, TEXT, "-o", "again.wav")
    assert second.returncode == 0, second.stderr
    assert "from the cache" in second.stdout
    assert (tmp_path / "again.wav").read_bytes() == (tmp_path / "alert.wav").read_bytes()

    (tmp_path / "a-directory.wav").mkdir()
    unwritable = voipalert(tmp_path, TEXT, "-o", "a-directory.wav")
    assert unwritable.returncode == 1
    assert "voipalert say: cannot write a-directory.wav" in unwritable.stderr


def test_explain_prints_the_spoken_form(tmp_path: Path) -> None:
    result = voipalert(tmp_path, "--explain", "Kx3: SRV-DB-01 at 80 °C")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "kay ex three: S R V D B zero one at 80 degrees Celsius"
    assert "  'SRV-DB-01' → 'S R V D B zero one' (host name)" in lines
    assert "  'Kx3' → 'kay ex three' (site)" in lines

    french = voipalert(tmp_path, "--explain", "--lang", "fr", "Disque à 95 %")
    assert french.stdout.splitlines()[0] == "Disque à 95 pour cent"


def test_french_with_a_french_voice(tmp_path: Path) -> None:
    make_voice_dir(tmp_path, joe_model_sha256())
    result = voipalert(tmp_path, "--lang", "fr", "Le serveur SRV-DB-01 est arrêté.", "-o", "fr.wav")
    assert result.returncode == 0, result.stderr
    assert "voice fr_FR-test-medium" in result.stdout
    assert read(tmp_path / "fr.wav")[0].framerate == 8000


def test_unknown_voice_and_missing_language_exit_1(tmp_path: Path) -> None:
    unknown = voipalert(tmp_path, "--voice", "nl_NL-nobody", "hallo", "-o", "x.wav")
    assert unknown.returncode == 1
    assert "voipalert say: no voice 'nl_NL-nobody' is installed" in unknown.stderr
    french = voipalert(tmp_path, "--lang", "fr", "bonjour", "-o", "x.wav")
    assert french.returncode == 1
    assert "no installed voice speaks fr" in french.stderr
    assert not (tmp_path / "x.wav").exists()


def test_a_broken_voice_is_a_configuration_error(tmp_path: Path) -> None:
    voices = make_voice_dir(tmp_path, joe_model_sha256())
    (voices / "fr_FR-test-medium.onnx.json").write_text("{broken")
    result = voipalert(tmp_path, "hello", "-o", "x.wav")
    assert result.returncode == 2
    assert "configuration error: voice fr_FR-test-medium: config file" in result.stderr
    assert "is not valid JSON" in result.stderr


def test_output_is_required_without_explain(tmp_path: Path) -> None:
    result = voipalert(tmp_path, "hello")
    assert result.returncode == 2
    assert "give -o FILE.wav" in result.stderr
