"""Commands that never speak or call do not load the speech engine or the phone: importing
onnxruntime and the SIP/RTP stack cost about a second of CPU per command (measured on the
development machine: `voipalert token list` 2.0 s of CPU before, 1.2 s after)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("onnxruntime", "numpy", "voipalert.tts.speech", "voipalert.calls", "aiohttp")

PROBE = """
import json, sys
from voipalert.cli import main
status = main(sys.argv[1:])
heavy = [name for name in {heavy!r} if name in sys.modules]
print(json.dumps({{"status": status, "heavy": heavy}}), file=sys.stderr)
"""


def loaded(tmp_path: Path, *args: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOIPALERT_")}
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    answer: dict[str, object] = json.loads(result.stderr.strip().splitlines()[-1])
    return answer


@pytest.mark.parametrize(
    "command",
    [
        ("token", "list"),
        ("config", "check"),
        ("rota", "export"),
        ("ready",),
        ("heartbeat", "list"),
        ("override", "list"),
        ("user", "list"),
        ("calendar", "url", "person", "nobody"),
        ("oncall",),
    ],
)
def test_commands_that_do_not_speak_load_no_speech_or_phone(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    answer = loaded(tmp_path, *command)
    assert answer["heavy"] == [], answer


def test_the_probe_sees_a_command_that_speaks(tmp_path: Path) -> None:
    # The control: `say --explain` with a voice loads the speech engine, and the probe says so.
    answer = loaded(tmp_path, "say", "--explain", "--voice", "en_US-joe-medium", "hello")
    assert "onnxruntime" in str(answer["heavy"]), answer
