"""``voipalert demo`` as a newcomer runs it from the repository."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

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


def test_demo_prints_the_escalation_timeline(testbed_factory: TestbedFactory, cache: Path) -> None:
    # testbed_factory is not called: it only makes the test fail in CI (skip elsewhere)
    # when Kamailio or baresip is missing. The demo starts its own testbed. Its speech comes
    # from the session's shared cache (tests/conftest.py): entries are keyed by text and
    # voice, so the timeline is the same, without ~15 s of Piper before each demo's serve.
    env = clean_env() | {"VOIPALERT_TTS__CACHE_DIR": str(cache)}
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


CONSOLE_LINE = re.compile(
    r"web console: (http://\S+/)  log in as 'demo' with the one-time password (\S+)"
)


def test_demo_prints_a_console_login_that_shows_the_timeline(
    testbed_factory: TestbedFactory, cache: Path
) -> None:
    """``demo --stay``: the printed address and one-time password open the console, whose
    alert page shows the whole story; Ctrl-C (SIGINT) then ends the demo cleanly."""
    env = clean_env() | {"VOIPALERT_TTS__CACHE_DIR": str(cache)}
    with subprocess.Popen(
        [sys.executable, "-m", "voipalert", "demo", "--stay"], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    ) as process:  # fmt: skip
        try:
            assert process.stdout is not None
            lines: list[str] = []
            for line in process.stdout:
                lines.append(line)
                if line.startswith("the web console stays up"):
                    break
            text = "".join(lines)
            match = CONSOLE_LINE.search(text)
            assert match is not None, text
            assert "acknowledged by bob" in text, text
            page = asyncio.run(_alert_page(match.group(1), match.group(2)))
            for expected in ("Disk full on SRV-DB-01", "Acknowledged by bob", "answered_no_ack"):
                assert expected in page, expected
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=60) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


async def _alert_page(base: str, password: str) -> str:
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        async with http.get(base + "login") as response:
            token = re.search(r'name="login_token" value="([^"]+)"', await response.text())
        assert token is not None
        form = {"login_token": token.group(1), "name": "demo", "password": password}
        async with http.post(base + "login", data=form) as response:
            assert response.status == 200 and str(response.url) == base
        async with http.get(base + "alerts/1") as response:
            assert response.status == 200
            return await response.text()
