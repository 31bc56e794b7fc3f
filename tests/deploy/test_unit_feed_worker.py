"""The rota sources' expansion child (``python -m voipalert.ingest.feed_worker``) runs
under deploy/voipalert.service's seccomp filter: it limits its own CPU time and memory
(setrlimit, which the unit's ``~@resources`` must not kill), parses and answers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sysconfig
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.requires import need
from tests.rota_sources.helpers import event, ics
from voipalert.domain.rota import ScheduleSource, SourceKind
from voipalert.ingest.feed_worker import child_request

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "voipalert.service"
HARNESS = Path(__file__).with_name("unit_seccomp.py")
SYSTEM_PYTHON = "/usr/bin/python3"


def test_feed_worker_runs_under_the_units_syscall_filter(tmp_path: Path) -> None:
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import seccomp"], capture_output=True, check=False
    )
    need(probe.returncode == 0, "python3-seccomp: bash sip-testbed/install-deps.sh --tests")
    need(os.geteuid() == 0, "switching to the unit's user needs root")
    need(shutil.which("systemd-analyze") is not None, "systemd: install-deps.sh --tests")
    now = datetime(2026, 3, 2, tzinfo=UTC)
    body = ics(
        event("a", "DTSTART:20260302T080000Z", "DURATION:PT12H", "alice", "RRULE:FREQ=DAILY")
    )
    request = child_request(
        body.encode(), ScheduleSource(SourceKind.ICAL, "http://x/"), frozenset({"alice"}),
        "Europe/Paris", now, (now, now + timedelta(days=3)), 10.0,
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOIPALERT_")}
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{sysconfig.get_paths()['purelib']}"
    result = subprocess.run(
        [SYSTEM_PYTHON, str(HARNESS), str(UNIT), "--user", "nobody", "--",
         SYSTEM_PYTHON, "-m", "voipalert.ingest.feed_worker"],
        input=request, cwd=tmp_path, env=env, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    answer = json.loads(result.stdout)
    assert len(json.loads(answer["shifts"])) == 3
