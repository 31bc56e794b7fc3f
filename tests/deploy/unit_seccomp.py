"""Run a command under the seccomp filters a systemd unit file would install.

    /usr/bin/python3 tests/deploy/unit_seccomp.py UNIT_FILE [--user NAME] -- COMMAND [ARG...]

systemd is not PID 1 on the development and CI machines, so the unit's syscall sandbox is
rebuilt here the way systemd builds it (systemd.exec(5), "SystemCallFilter=" and
"RestrictAddressFamilies="), with the same library (libseccomp, through Debian's
python3-seccomp, which is why this runs under the system interpreter), then the command is
exec'd: a seccomp filter survives execve, as it does for the service's ExecStart.

The rules reproduced:

- The first ``SystemCallFilter=`` decides the mode. A list without ``~`` is an allow list:
  every other system call kills the process with SIGSYS (the default action when no
  ``SystemCallErrorNumber=`` is set), and the ``@default`` group is allowed implicitly.
- Later lines edit that set in order: a ``~`` line removes its calls, a plain line adds them
  back. ``@group`` names expand recursively, from ``systemd-analyze syscall-filter`` (the same
  tables systemd uses, so a newer systemd's groups are followed automatically).
- ``RestrictAddressFamilies=`` makes ``socket()`` fail with EAFNOSUPPORT for other families.
- ``--user`` stands for ``User=``: started as root, the command runs as that user, as the
  service does (this matters: SQLite, which onnxruntime uses for a file in ``$HOME/.cache``,
  calls ``fchown()`` only when it runs as root, and ``~@privileged`` forbids ``fchown()``).
"""

from __future__ import annotations

import errno
import os
import pwd
import re
import subprocess
import sys
from pathlib import Path

import seccomp  # type: ignore[import-not-found]  # Debian: python3-seccomp

# socket(2) families go up to AF_MCTP (45) in Linux 6.x; anything above is refused too.
_MAX_FAMILY = 64


def groups() -> dict[str, list[str]]:
    """Every ``@group`` and its members (names and nested ``@groups``)."""
    text = subprocess.run(
        ["systemd-analyze", "syscall-filter"], capture_output=True, text=True, check=True
    ).stdout
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("@"):
            current = found.setdefault(line.strip(), [])
        elif not line.strip() or not line.startswith(" "):
            current = None
        elif current is not None and not line.strip().startswith("#"):
            current.append(line.strip())
    return found


def expand(names: list[str], table: dict[str, list[str]]) -> set[str]:
    calls: set[str] = set()
    for name in names:
        if name.startswith("@"):
            calls |= expand(table[name], table)
        else:
            calls.add(name)
    return calls


def directives(unit: Path, key: str) -> list[str]:
    pattern = re.compile(rf"^\s*{key}\s*=\s*(.*)$")
    return [
        m.group(1).strip() for line in unit.read_text().splitlines() if (m := pattern.match(line))
    ]


def allowed_calls(unit: Path) -> set[str] | None:
    """The allow list the unit ends with (None: the unit sets no SystemCallFilter=)."""
    lines = directives(unit, "SystemCallFilter")
    if not lines:
        return None
    if lines[0].startswith("~"):
        raise SystemExit("a deny-list-first SystemCallFilter= is not reproduced here")
    table = groups()
    allowed = expand(["@default"], table)
    for line in lines:
        deny = line.startswith("~")
        names = line.removeprefix("~").split()
        if deny:
            allowed -= expand(names, table)
        else:
            allowed |= expand(names, table)
    return allowed


def family_numbers(names: list[str]) -> set[int]:
    import socket

    return {int(getattr(socket, name)) for name in names}


def build(unit: Path) -> list[seccomp.SyscallFilter]:
    """The filters, in load order: the address-family one first, because the system-call
    allow list may not allow seccomp(2) itself, so it has to be the last one loaded."""
    filters = []
    families = directives(unit, "RestrictAddressFamilies")
    if families:
        keep = family_numbers(families[-1].split())
        sockets = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
        refuse = seccomp.ERRNO(errno.EAFNOSUPPORT)
        for family in range(_MAX_FAMILY):
            if family not in keep:
                sockets.add_rule(refuse, "socket", seccomp.Arg(0, seccomp.EQ, family))
        sockets.add_rule(refuse, "socket", seccomp.Arg(0, seccomp.GE, _MAX_FAMILY))
        filters.append(sockets)

    allowed = allowed_calls(unit)
    if allowed is not None:
        calls = seccomp.SyscallFilter(defaction=seccomp.KILL_PROCESS)
        for name in sorted(allowed):
            try:
                calls.add_rule(seccomp.ALLOW, name)
            except (RuntimeError, ValueError, OSError):
                pass  # not a system call on this architecture (systemd skips those too)
        filters.append(calls)
    return filters


def become(user: str) -> None:
    entry = pwd.getpwnam(user)
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)


def main(argv: list[str]) -> None:
    if "--" not in argv[1:] or len(argv) < 3:
        raise SystemExit(__doc__)
    split = argv.index("--")
    unit, options, command = Path(argv[0]), argv[1:split], argv[split + 1 :]
    if options and (options[0] != "--user" or len(options) != 2):
        raise SystemExit(__doc__)
    filters = build(unit)  # read as the caller: the unit file may be private to it
    if options and os.geteuid() == 0:
        become(options[1])
    for each in filters:
        each.load()  # sets no_new_privs first, as systemd's NoNewPrivileges=yes does
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
