from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr
from numpy.typing import NDArray

from tests.media.dtmf_signals import add_noise, dtmf, silence, tone_power
from tests.requires import need_program
from voipalert.cli import main


def _write(path: Path, signal: NDArray[np.float64], rate: int = 8000, channels: int = 1) -> Path:
    """Write float samples (16-bit scale, 8 kHz) at ``rate`` with ``channels``."""

    audio = signal / 32768
    if rate != 8000:
        audio = soxr.resample(audio, 8000, rate)
    data = np.repeat(audio[:, None], channels, axis=1) if channels > 1 else audio
    soundfile.write(str(path), data, rate, subtype="PCM_16")
    return path


def _keys_signal(keys: str, rng: np.random.Generator) -> NDArray[np.float64]:
    parts = [silence(0.2)]
    for key in keys:
        parts += [dtmf(key, 0.1, row_dbm0=-12, rng=rng), silence(0.1)]
    return np.concatenate(parts)


def _sox() -> str:
    return need_program("sox", "apt-get install sox")


def test_one_line_per_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(1)
    a = _write(tmp_path / "a.wav", _keys_signal("1#9", rng))
    b = _write(tmp_path / "b.wav", silence(1.0))
    assert main(["dtmf", "decode", str(a), str(b)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{a}: 1 # 9", f"{b}:"]


@pytest.mark.parametrize(("rate", "channels"), [(16000, 1), (44100, 2), (48000, 1), (11025, 2)])
def test_any_rate_and_channel_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rate: int, channels: int
) -> None:
    rng = np.random.default_rng(rate)
    signal = _keys_signal("2580", rng)
    signal = add_noise(signal, 20, tone_power(-12, 0), rng)
    path = _write(tmp_path / "x.wav", signal, rate=rate, channels=channels)
    assert main(["dtmf", "decode", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: 2 5 8 0\n"


def test_json_gives_start_and_duration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(2)
    signal = np.concatenate(
        [silence(0.5), dtmf("4", 0.25, rng=rng), silence(0.3), dtmf("D", 0.1, rng=rng)]
    )
    path = _write(tmp_path / "k.wav", np.concatenate((signal, silence(0.2))))
    assert main(["dtmf", "decode", "--json", str(path)]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["file"] == str(path)
    keys = document["keys"]
    assert [k["key"] for k in keys] == ["4", "D"]
    assert keys[0]["start"] == pytest.approx(0.5, abs=0.01)
    assert keys[0]["duration"] == pytest.approx(0.25, abs=0.015)
    assert keys[1]["start"] == pytest.approx(1.05, abs=0.01)
    assert keys[1]["duration"] == pytest.approx(0.1, abs=0.015)


def test_a_sox_generated_tone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sox = _sox()
    mono, stereo = tmp_path / "dtmf1.wav", tmp_path / "dtmf1-st.wav"
    subprocess.run(
        [sox, "-n", "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", str(mono),
         "synth", "0.25", "sine", "697", "synth", "0.25", "sine", "mix", "1209", "gain", "-3"],
        check=True,
    )  # fmt: skip
    subprocess.run(
        [sox, "-n", "-r", "8000", "-c", "2", "-b", "16", "-e", "signed-integer", str(stereo),
         "synth", "0.25", "sine", "697", "sine", "1209", "gain", "-3"],
        check=True,
    )  # fmt: skip
    assert main(["dtmf", "decode", str(mono), str(stereo)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{mono}: 1", f"{stereo}: 1"]


def test_missing_and_unreadable_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _write(tmp_path / "good.wav", _keys_signal("7", np.random.default_rng(3)))
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio")
    missing = tmp_path / "missing.wav"
    status = main(["dtmf", "decode", str(missing), str(text), str(good), str(tmp_path)])
    assert status == 1
    captured = capsys.readouterr()
    assert captured.out == f"{good}: 7\n"
    errors = captured.err.splitlines()
    assert errors[0] == f"voipalert: cannot read {missing}: no such file"
    assert errors[1].startswith(f"voipalert: cannot read {text}: ")
    assert errors[2] == f"voipalert: cannot read {tmp_path}: not a regular file"
    assert "Traceback" not in captured.err
