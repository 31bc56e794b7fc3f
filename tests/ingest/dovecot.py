"""A real IMAP server for the poller's tests: Dovecot from Debian's packages
(``apt-get install dovecot-imapd``; ``sip-testbed/install-deps.sh`` installs it), started
with its own configuration in the test's tmp_path, on a free 127.0.0.1 port, with one
plaintext passwd-file user and a Maildir under tmp_path, and stopped by its process group.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

INSTALL_HINT: Final = "apt-get install -y dovecot-imapd (or: bash sip-testbed/install-deps.sh)"
USER: Final = "alerts"
PASSWORD: Final = "imap-test-pw"
START_TIMEOUT_SECONDS: Final = 15.0

CONFIG: Final = """\
base_dir = {run}
state_dir = {state}
log_path = {log}
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
mail_location = maildir:{mail}/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={mail}/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
}}
"""


def dovecot_binary() -> str | None:
    return shutil.which("dovecot", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _let_mail_user_walk(path: Path) -> None:
    # Dovecot never runs mail processes as root; its unprivileged user must be able to walk
    # into tmp_path, which pytest creates 0700. Only the search (x) bit is added.
    for directory in (path, *path.parents):
        if directory == Path(tempfile.gettempdir()) or directory == Path("/"):
            break
        mode = directory.stat().st_mode
        directory.chmod(mode | stat.S_IXOTH)


@dataclass
class Dovecot:
    port: int
    process: subprocess.Popen[bytes]
    root: Path
    run_dir: Path

    @property
    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
        shutil.rmtree(self.run_dir, ignore_errors=True)


def start(root: Path, binary: str) -> Dovecot:
    nobody = pwd.getpwnam("nobody")
    root.mkdir(parents=True, exist_ok=True)
    mail = root / "mail"
    mail.mkdir()
    os.chown(mail, nobody.pw_uid, nobody.pw_gid)
    (root / "state").mkdir()
    # Socket paths must stay under 108 bytes, so the run directory is a short one of its own.
    run_dir = Path(tempfile.mkdtemp(prefix="vadc-"))
    run_dir.chmod(0o755)
    passwd = root / "passwd"
    passwd.write_text(f"{USER}:{{PLAIN}}{PASSWORD}:::::\n")
    passwd.chmod(0o644)
    port = free_port()
    config = root / "dovecot.conf"
    config.write_text(
        CONFIG.format(
            run=run_dir,
            state=root / "state",
            log=root / "dovecot.log",
            mail=mail,
            passwd=passwd,
            uid=nobody.pw_uid,
            gid=nobody.pw_gid,
            port=port,
        )
    )
    _let_mail_user_walk(root)
    with (root / "dovecot.stderr").open("wb") as stderr:
        process = subprocess.Popen(
            [binary, "-F", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,  # its own process group, stopped as one
        )
    server = Dovecot(port, process, root, run_dir)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server
        except OSError:
            pass
        try:
            process.wait(timeout=0.05)  # the pause between tries; returns if it died
            break
        except subprocess.TimeoutExpired:
            continue
    server.stop()
    errors = (root / "dovecot.stderr").read_text(errors="replace")
    raise RuntimeError(f"dovecot did not start on port {port}: {errors}\n{server.log}")
