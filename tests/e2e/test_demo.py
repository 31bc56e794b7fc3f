"""``voipalert demo`` as a newcomer runs it from the repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import TestbedFactory

REPO = Path(__file__).resolve().parents[2]


def demo(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voipalert", "demo"], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOIPALERT_")}
    env["PYTHONPATH"] = str(REPO)
    return env


def test_demo_prints_the_escalation_timeline(
    testbed_factory: TestbedFactory, tmp_path: Path
) -> None:
    # testbed_factory is not called: it only makes the test fail in CI (skip elsewhere)
    # when Kamailio or baresip is missing. The demo starts its own testbed.
    env = clean_env() | {"VOIPALERT_TTS__CACHE_DIR": str(tmp_path / "cache")}
    result = demo(env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    text = "\n".join(lines)
    expected_order = [
        "alert #1 received over the Alertmanager webhook",
        "calling alice",
        "alice: answers; voipalert speaks the alert",
        "alice: no key pressed",
        "calling bob",
        "bob pressed 1",
        "acknowledged by bob",
    ]
    positions = [text.find(fragment) for fragment in expected_order]
    assert all(p >= 0 for p in positions), text
    assert positions == sorted(positions), text


def test_demo_says_what_to_install_when_the_testbed_is_missing(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    env = clean_env() | {"PATH": str(bin_dir)}  # no kamailio, no baresip
    result = demo(env)
    assert result.returncode == 1
    assert "the demo needs kamailio, kamcmd, baresip" in result.stderr
    assert "sip-testbed/install-deps.sh" in result.stderr
