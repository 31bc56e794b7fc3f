"""deploy/voipalert.service really starts voipalert: its seccomp sandbox, rebuilt with
libseccomp the way systemd builds it (tests/deploy/unit_seccomp.py), around the real
``voipalert say`` and ``voipalert serve``; and ``systemd-analyze verify`` accepts the unit.

The commands run as ``nobody`` (the unit's ``User=``) under the system interpreter, with the
project and its dependencies on ``PYTHONPATH``: the test virtual environment may live under
root's home, which another user cannot enter.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sysconfig
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from testbed import Testbed

from tests.net.sip_harness import free_port
from tests.requires import need

# serve under the unit, ready within a minute: its speech is rendered at nice 10, which
# a concurrent test's load at nice 0 starves.
pytestmark = pytest.mark.alone

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "voipalert.service"
HARNESS = Path(__file__).with_name("unit_seccomp.py")
SYSTEM_PYTHON = "/usr/bin/python3"
SERVICE_USER = "nobody"


def _require(condition: bool, message: str) -> None:
    need(condition, message)


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import seccomp"], capture_output=True, check=False
    )
    _require(
        probe.returncode == 0 and shutil.which("systemd-analyze") is not None,
        "python3-seccomp and systemd-analyze are needed: bash sip-testbed/install-deps.sh --tests",
    )
    _require(os.geteuid() == 0, "switching to the unit's user needs root")


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A state directory the service user owns (pytest's own tmp is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="voipalert-unit-"))
    os.chmod(path, 0o755)
    os.chown(path, int(_uid(SERVICE_USER)), -1)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _uid(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_uid


def command(unit: Path, *args: str) -> list[str]:
    return [
        SYSTEM_PYTHON, str(HARNESS), str(unit), "--user", SERVICE_USER, "--",
        SYSTEM_PYTHON, "-m", "voipalert", *args,
    ]  # fmt: skip


def environment(workdir: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOIPALERT_")}
    env |= {
        "HOME": str(workdir),  # systemd sets HOME to the user's home: the state directory
        "PYTHONPATH": f"{REPO}{os.pathsep}{sysconfig.get_paths()['purelib']}",
        "VOIPALERT_DATABASE__PATH": str(workdir / "voipalert.db"),
        "VOIPALERT_TTS__CACHE_DIR": str(workdir / "cache"),
        "VOIPALERT_TTS__VOICES_DIR": str(REPO / "voices"),
    }
    env |= {f"VOIPALERT_{key.upper()}": value for key, value in settings.items()}
    return env


def run(unit: Path, workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(unit, *args), cwd=workdir, env=environment(workdir), capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip


def old_unit(tmp_path: Path) -> Path:
    """The unit as it was shipped before: @resources denied as a whole."""
    text = UNIT.read_text()
    old = re.sub(r"^SystemCallFilter=mbind sched_setaffinity.*\n", "", text, flags=re.M)
    assert old != text
    path = tmp_path / "old.service"
    path.write_text(old)
    return path


def test_say_runs_under_the_units_syscall_filter(workdir: Path) -> None:
    result = run(UNIT, workdir, "say", "Disk full on SRV-DB-01", "-o", "alert.wav")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "rendered" in result.stdout
    assert (workdir / "alert.wav").stat().st_size > 8000


def test_the_old_filter_kills_say_with_sigsys(workdir: Path, tmp_path: Path) -> None:
    # The negative control: without the calls allowed, Piper's first mbind() is fatal.
    result = run(old_unit(tmp_path), workdir, "say", "Disk full", "-o", "alert.wav")
    assert result.returncode == -signal.SIGSYS, result.stderr[-2000:]
    assert not (workdir / "alert.wav").exists()


def test_the_address_family_filter_is_applied(workdir: Path) -> None:
    # RestrictAddressFamilies= is rebuilt too: a netlink socket is refused, a UDP one is not.
    probe = (
        "import socket\n"
        "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()\n"
        "try:\n"
        "    socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)\n"
        "except OSError as exc:\n"
        "    print(exc.errno)\n"
    )
    argv = [
        SYSTEM_PYTHON, str(HARNESS), str(UNIT), "--user", SERVICE_USER, "--",
        SYSTEM_PYTHON, "-c", probe,
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(97)  # EAFNOSUPPORT


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _post_json(url: str, body: dict[str, object], token: str) -> dict[str, object]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=90) as response:
        answer: dict[str, object] = json.loads(response.read())
    return answer


def spawn(argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


async def test_serve_registers_calls_and_stops_cleanly_under_the_filter(
    workdir: Path, testbed: Testbed
) -> None:
    http_port = free_port(socket.SOCK_STREAM)
    rtp = free_port(even=True)
    env = environment(
        workdir,
        sip__registrar=testbed.registrar,
        sip__username="voipalert",
        sip__password=testbed.users["voipalert"],
        sip__local_port=str(free_port()),
        media__rtp_port_min=str(rtp),
        media__rtp_port_max=str(rtp + 99),
        http__port=str(http_port),
    )
    created = await asyncio.to_thread(
        subprocess.run,
        command(UNIT, "token", "create", "admin", "--scope", "admin", "--json"),
        cwd=workdir, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr[-2000:]
    token = json.loads(created.stdout)["token"]
    log = workdir / "serve.log"
    process = spawn(command(UNIT, "--log-format", "json", "serve"), workdir, env, log)
    try:
        async with asyncio.timeout(60):
            while await asyncio.to_thread(_get, f"http://127.0.0.1:{http_port}/readyz") != 200:
                assert process.poll() is None, log.read_text()[-3000:]
                await asyncio.sleep(0.2)
        # A whole call under the filter: speech rendered, RTP both ways, the key heard.
        report = await asyncio.to_thread(
            _post_json,
            f"http://127.0.0.1:{http_port}/api/v1/test-call",
            {"target": testbed.uri("ack"), "message": "sandbox test", "repetitions": 1},
            token,
        )
        assert report["outcome"] == "acknowledged", report
        os.killpg(process.pid, signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 30) == 0, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert any(e["msg"] == "stopped" for e in entries)
    # Structured fields are JSON keys, with their types, not only words in "msg".
    (ready,) = [e for e in entries if e["msg"].startswith("voipalert ready")]
    assert ready["registration_state"] == "registered"
    (ended,) = [e for e in entries if e["msg"].endswith(": acknowledged")]
    assert ended["sip_status"] == 200 and ended["outcome"] == "acknowledged"


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    # verify checks that ExecStart's program exists: point it at a stand-in, same arguments.
    program = tmp_path / "voipalert"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    text = UNIT.read_text().replace("/opt/voipalert/.venv/bin/voipalert", str(program))
    unit = tmp_path / "voipalert.service"
    unit.write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )  # fmt: skip
    problems = [line for line in result.stderr.splitlines() if str(unit.name) in line]
    assert result.returncode == 0 and problems == [], result.stderr


def test_verify_rejects_a_broken_unit(tmp_path: Path) -> None:
    # The check above can fail: a misspelt directive is reported.
    unit = tmp_path / "voipalert.service"
    unit.write_text(UNIT.read_text().replace("SystemCallFilter=mbind", "SystemCalFilter=mbind"))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert "SystemCalFilter" in result.stderr
