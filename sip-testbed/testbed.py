#!/usr/bin/env python3
"""voipalert SIP testbed: Kamailio (registrar + proxy with digest auth) and baresip phone bots.

Everything runs on loopback, in one temporary run directory, under one supervisor process
that is the leader of its own process group. Stopping the testbed signals that group, so no
Kamailio worker or baresip bot can outlive it, also when a test fails or its runner dies
(the supervisor watches the process that started it and exits with it).

Bot modes (one baresip instance each, registered as the SIP user of the same name):

    dtmf       answers at once, presses DIGIT as RFC 4733 telephone-event DELAY s later
    inband     answers at once, plays DIGIT as in-band tones DELAY s later (no telephone-event)
    voicemail  answers at once, plays a beep, never presses a key
    noanswer   rings and never answers
    busy       rejects every call with 486
    caller     a phone for the testbed's own checks: dials on command, never answers

Every bot records what it hears (``dump-*-dec.wav``) and what it sends (``-enc.wav``) in its
``rec`` directory, and logs every baresip event to ``events.jsonl``.

Usage (stdlib only, so the system python3 can run it):

    python3 sip-testbed/testbed.py start [--dir DIR] [--port PORT] [--bot SPEC]...
                                      (SPEC: NAME=MODE[:DIGIT[:DELAY]][/tcp])
    python3 sip-testbed/testbed.py status [--dir DIR]
    python3 sip-testbed/testbed.py command [--dir DIR] BOT COMMAND [PARAMS]
    python3 sip-testbed/testbed.py stop [--dir DIR]

From Python (the pytest fixture does this): ``tb = start(); ...; tb.stop()``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

HERE: Final = Path(__file__).resolve().parent
SUPERVISOR: Final = HERE / "supervisor.py"
KAMAILIO_CFG: Final = HERE / "kamailio.cfg"
USERS_FILE: Final = HERE / "users.txt"
REALM: Final = "testbed"
HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 5060
AUDIO_RATE: Final = 8000
MODES: Final = ("dtmf", "inband", "voicemail", "noanswer", "busy", "caller")
INSTALL_HINT: Final = (
    "apt-get install -y --no-install-recommends kamailio baresip-core "
    "(or: sudo bash sip-testbed/install-deps.sh)"
)

DTMF_KEYS: Final = "0123456789*#ABCD"


class TestbedError(RuntimeError):
    """The testbed could not be started or driven; the message says why."""

    __test__ = False  # not a pytest test class


@dataclass(frozen=True)
class BotSpec:
    name: str
    mode: str
    digit: str = "1"
    delay: float = 3.0
    transport: str = "udp"

    @classmethod
    def parse(cls, text: str) -> BotSpec:
        """``NAME=MODE[:DIGIT[:DELAY]][/tcp|/tls]``, e.g. ``ack=dtmf:1:3`` or ``vm=voicemail``.
        ``/tls``: the bot registers over TLS and requires SRTP (SDES) on its calls."""
        name, sep, rest = text.partition("=")
        if not sep or not name:
            raise TestbedError(f"bot spec {text!r}: expected NAME=MODE[:DIGIT[:DELAY]]")
        rest, _, transport = rest.partition("/")
        mode, _, tail = rest.partition(":")
        digit, _, delay = tail.partition(":")
        spec = cls(name, mode, digit or "1", float(delay) if delay else 3.0, transport or "udp")
        spec.validate()
        return spec

    def validate(self) -> None:
        if self.mode not in MODES:
            raise TestbedError(f"bot {self.name}: unknown mode {self.mode!r} (one of {MODES})")
        if len(self.digit) != 1 or self.digit.upper() not in DTMF_KEYS:
            raise TestbedError(f"bot {self.name}: {self.digit!r} is not a DTMF key")
        if self.transport not in ("udp", "tcp", "tls"):
            raise TestbedError(f"bot {self.name}: transport must be udp, tcp or tls")


DEFAULT_BOTS: Final = (
    BotSpec("ack", "dtmf", "1", 3.0),
    BotSpec("inband", "inband", "1", 3.0),
    BotSpec("voicemail", "voicemail"),
    BotSpec("noanswer", "noanswer"),
    BotSpec("busy", "busy"),
    BotSpec("caller", "caller"),
)


def read_users(path: Path = USERS_FILE) -> dict[str, str]:
    users: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or not all(p.replace("-", "").replace("_", "").isalnum() for p in parts):
            raise TestbedError(f"{path}:{number}: expected 'user password' (letters, digits, -_)")
        users[parts[0]] = parts[1]
    return users


def missing_programs() -> list[str]:
    return [p for p in ("kamailio", "kamcmd", "baresip") if shutil.which(p) is None]


# ------------------------------------------------------------------ ports and files


def _port_free(port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                return False
    return True


def free_port(preferred: int | None = None, span: int = 1, avoid: set[int] | None = None) -> int:
    """A port where ``span`` consecutive ports are free on UDP and TCP."""
    taken = avoid if avoid is not None else set()
    if preferred is not None and all(
        _port_free(preferred + i) and preferred + i not in taken for i in range(span)
    ):
        return preferred
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            base = int(sock.getsockname()[1])
        if base + span < 65536 and all(
            _port_free(base + i) and base + i not in taken for i in range(span)
        ):
            return base
    raise TestbedError("no free port found on 127.0.0.1")


@dataclass
class BotInfo:
    name: str
    mode: str
    digit: str
    delay: float
    transport: str
    sip_port: int
    ctrl_port: int
    rtp_ports: tuple[int, int]
    directory: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BotInfo:
        return cls(**{**data, "rtp_ports": tuple(data["rtp_ports"])})

    @property
    def rec_dir(self) -> Path:
        return Path(self.directory) / "rec"

    @property
    def events_file(self) -> Path:
        return Path(self.directory) / "events.jsonl"

    @property
    def log_file(self) -> Path:
        return Path(self.directory) / "baresip.log"


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group. Zombies are ignored: in a container
    whose init does not reap, a dead child can stay a zombie forever, and it holds nothing."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command: state ppid pgrp ...
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _group_alive(pgid: int) -> bool:
    return bool(group_members(pgid))


# ------------------------------------------------------------------ the client side


@dataclass
class Testbed:
    """A running testbed, as seen by a test or the CLI."""

    __test__ = False  # not a pytest test class

    run_dir: Path
    pgid: int
    port: int
    users: dict[str, str]
    bots: dict[str, BotInfo]
    control: Path
    keep: bool = False
    host: str = HOST
    realm: str = REALM
    tls_port: int = 0
    """Kamailio's TLS port when a bot uses TLS (else 0); ``tls_ca`` is its certificate."""
    tls_ca: str = ""
    _stopped: bool = field(default=False, repr=False)
    # The supervisor, when this process started it: kept so it is reaped on stop().
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @classmethod
    def attach(cls, run_dir: Path) -> Testbed:
        state_file = run_dir / "state.json"
        if not state_file.exists():
            raise TestbedError(f"no running testbed in {run_dir}")
        state = json.loads(state_file.read_text())
        return cls(
            run_dir=Path(state["run_dir"]),
            pgid=int(state["pid"]),
            port=int(state["port"]),
            users=dict(state["users"]),
            bots={n: BotInfo.from_json(b) for n, b in state["bots"].items()},
            control=Path(state["control"]),
            tls_port=int(state.get("tls_port", 0)),
            tls_ca=str(state.get("tls_ca", "")),
        )  # fmt: skip

    def uri(self, user: str, transport: str | None = None) -> str:
        suffix = f";transport={transport}" if transport else ""
        port = self.tls_port if transport == "tls" else self.port
        return f"sip:{user}@{self.host}:{port}{suffix}"

    @property
    def registrar(self) -> str:
        return f"sip:{self.host}:{self.port}"

    def _kamcmd(self, *args: str) -> subprocess.CompletedProcess[str]:
        ctl = f"unix:{self.run_dir / 'kamailio' / 'kamailio_ctl'}"
        return subprocess.run(
            ["kamcmd", "-s", ctl, *args], capture_output=True, text=True, timeout=5, check=False
        )

    def contacts(self, user: str) -> list[str]:
        """The contact addresses Kamailio holds for ``user`` (its location table)."""
        listed = self._kamcmd("ul.lookup", "location", user).stdout
        return [line.split(":", 1)[1].strip() for line in listed.splitlines()
                if line.strip().startswith("Address:")]  # fmt: skip

    def forget(self, user: str) -> None:
        """Remove every binding of ``user`` from Kamailio's location table."""
        self._kamcmd("ul.rm", "location", user)

    def command(self, bot: str, command: str, params: str = "") -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(self.control))
            payload = {"bot": bot, "command": command, "params": params}
            sock.sendall(json.dumps(payload).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        reply: dict[str, Any] = json.loads(data)
        if not reply.get("ok"):
            raise TestbedError(f"{bot}: {command} {params} failed: {reply}")
        return reply

    def events(self, bot: str) -> list[dict[str, Any]]:
        lines = self.bots[bot].events_file.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def wait_event(
        self, bot: str, kind: str, since: int = 0, timeout: float = 10.0
    ) -> dict[str, Any] | None:
        """The first event of type ``kind`` at index ``since`` or later in ``bot``'s event
        log, waiting up to ``timeout`` seconds for it; None when it never came."""
        waited = 0.0
        while True:
            for event in self.events(bot)[since:]:
                if event.get("type") == kind:
                    return event
            if waited >= timeout:
                return None
            _pause(0.05)
            waited += 0.05

    def dial(self, caller: str, callee: str) -> int:
        """Make ``caller`` dial ``callee`` (a user name or a SIP URI); returns the index of
        the caller's next event, to pass as ``since`` to wait_event()."""
        since = len(self.events(caller))
        self.command(caller, "dial", callee if ":" in callee else self.uri(callee))
        return since

    def send_text(self, bot: str, to: str, text: str) -> None:
        """Make ``bot`` send ``text`` as a SIP MESSAGE (RFC 3428) to ``to`` (a user name or a
        SIP URI), through Kamailio like its calls. baresip 1.0's ``/message`` goes to the
        contact module's current contact, so the bot's contacts file is rewritten to hold
        just that one and the module is (re)loaded to read it."""
        uri = to if ":" in to else self.uri(to)
        directory = Path(self.bots[bot].directory)
        (directory / "contacts").write_text(f'"{to}" <{uri}>\n')
        (directory / "current_contact").write_text(uri)
        self.command(bot, "rmmod", "contact")  # answers ok when it was not loaded
        self.command(bot, "insmod", "contact")
        self.command(bot, "message", text)

    def recordings(self, bot: str, kind: str = "dec") -> list[Path]:
        """What ``bot`` heard (``dec``) or sent (``enc``), one WAV per call, oldest first."""
        return sorted(self.bots[bot].rec_dir.glob(f"dump-*-{kind}.wav"))

    def sip_trace(self, bot: str) -> str:
        return self.bots[bot].log_file.read_text(errors="replace")

    def kamailio_log(self) -> str:
        return (self.run_dir / "kamailio" / "kamailio.log").read_text(errors="replace")

    def crash_kamailio(self) -> int:
        """SIGKILL every Kamailio process of this testbed at once: the PBX vanishes mid-call
        (its ports answer ICMP unreachable from now on), as in a crash or a power cut. The
        supervisor then sees Kamailio gone and stops the bots; ``stop()`` still cleans up.
        Returns how many processes were killed."""
        killed = 0
        for pid in group_members(self.pgid):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "kamailio":
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
        return killed

    def processes_alive(self) -> bool:
        return _group_alive(self.pgid)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every process of the testbed (TERM, then KILL) and remove the run dir."""
        if self._stopped:
            return
        _kill_group(self.pgid, timeout)
        if self._process is not None:
            self._process.wait(timeout=5)
        self._stopped = True
        if not self.keep:
            shutil.rmtree(self.run_dir, ignore_errors=True)


def _kill_group(pgid: int, timeout: float) -> None:
    """TERM to the supervisor (the group's leader) alone, which stops its daemons in order
    (bots, then Kamailio: supervisor.py ``terminate``); the whole group gets TERM only when
    the leader is gone. KILL to the group whatever is left after ``timeout``."""
    with contextlib.suppress(ProcessLookupError):
        if pgid in group_members(pgid):
            os.kill(pgid, signal.SIGTERM)
        else:
            os.killpg(pgid, signal.SIGTERM)
    if not _wait_gone(pgid, timeout):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        _wait_gone(pgid, 5.0)


def _wait_gone(pgid: int, timeout: float) -> bool:
    """Wait for the group to vanish, reaping the leader if it is our own child."""
    waited = 0.0
    step = 0.02
    while waited < timeout:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pgid, os.WNOHANG)
        if not _group_alive(pgid):
            return True
        _pause(step)
        waited += step
    return False


def start(
    run_dir: Path | None = None,
    bots: Sequence[BotSpec] = DEFAULT_BOTS,
    port: int | None = None,
    watch_pid: int | None = None,
    keep: bool = False,
    timeout: float = 30.0,
) -> Testbed:
    """Start a testbed and return once Kamailio answers and every bot is registered."""
    missing = missing_programs()
    if missing:
        raise TestbedError(f"missing programs: {', '.join(missing)}; install with: {INSTALL_HINT}")
    for spec in bots:
        spec.validate()
    if run_dir is None:
        run_dir = Path(tempfile.mkdtemp(prefix="voipalert-testbed-"))
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        if (run_dir / "state.json").exists():
            raise TestbedError(f"a testbed already runs in {run_dir}; stop it first")
        for stale in run_dir.iterdir():
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    args = [sys.executable, str(SUPERVISOR), "--dir", str(run_dir)]
    args += [f"--bot={s.name}={s.mode}:{s.digit}:{s.delay:g}/{s.transport}" for s in bots]
    if port is not None:
        args += ["--port", str(port)]
    if watch_pid is not None:
        args += ["--watch-pid", str(watch_pid)]
    log = run_dir / "supervisor.log"
    with log.open("ab") as out:
        child = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    (run_dir / "supervisor.pid").write_text(f"{child.pid}\n")
    try:
        _wait_ready(run_dir, child, timeout)
    except BaseException:
        _kill_group(child.pid, 10.0)
        child.wait(timeout=5)
        if not keep:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    testbed = Testbed.attach(run_dir)
    testbed.keep = keep
    testbed._process = child
    return testbed


def _pause(seconds: float) -> None:
    # select() with no descriptors: a sub-second wait for polling loops outside asyncio.
    select.select([], [], [], seconds)


def _wait_ready(run_dir: Path, child: subprocess.Popen[bytes], timeout: float) -> None:
    waited = 0.0
    while not (run_dir / "state.json").exists():
        if child.poll() is not None:
            tail = (run_dir / "supervisor.log").read_text(errors="replace")[-3000:]
            raise TestbedError(f"testbed failed to start (status {child.returncode}):\n{tail}")
        if waited > timeout:
            raise TestbedError(f"testbed not ready after {timeout:g} s; see {run_dir}")
        _pause(0.02)
        waited += 0.02


# ------------------------------------------------------------------ command line


def _default_dir() -> Path:
    user = os.environ.get("USER") or str(os.getuid())
    return Path(tempfile.gettempdir()) / f"voipalert-testbed-{user}"


def _cli(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="testbed.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    for name in ("start", "status", "stop", "command"):
        p = sub.add_parser(name)
        p.add_argument("--dir", type=Path, default=_default_dir(), help="run directory")
        if name == "start":
            p.add_argument(
                "--port", type=int, default=None, help="Kamailio port (default 5060 or a free one)"
            )
            p.add_argument(
                "--bot",
                action="append",
                type=BotSpec.parse,
                default=None,
                metavar="NAME=MODE[:DIGIT[:DELAY]]",
            )
        if name == "command":
            p.add_argument("bot")
            p.add_argument("command")
            p.add_argument("params", nargs="?", default="")
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except TestbedError as exc:
        print(f"testbed: {exc}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    if args.action == "start":
        tb = start(args.dir, args.bot or DEFAULT_BOTS, args.port, keep=True)
        _print_status(tb)
        return 0
    if args.action == "stop":
        pid_file = args.dir / "supervisor.pid"
        if not pid_file.exists():
            print(f"testbed: nothing to stop in {args.dir}")
            return 0
        _kill_group(int(pid_file.read_text()), 10.0)
        shutil.rmtree(args.dir, ignore_errors=True)
        print(f"testbed: stopped and removed {args.dir}")
        return 0
    tb = Testbed.attach(args.dir)
    if args.action == "status":
        _print_status(tb)
    else:
        print(json.dumps(tb.command(args.bot, args.command, args.params)))
    return 0


def _print_status(tb: Testbed) -> None:
    print(f"run directory: {tb.run_dir}")
    print(f"registrar/proxy: {tb.registrar} (udp+tcp), realm {tb.realm!r}")
    print(f"voipalert account: user voipalert, password {tb.users.get('voipalert')}")
    for name, bot in tb.bots.items():
        print(f"  {name:<10} {bot.mode:<9} {tb.uri(name):<32} recordings {bot.rec_dir}")
    print(f"stop with: python3 {Path(__file__).resolve()} stop --dir {tb.run_dir}")


if __name__ == "__main__":
    raise SystemExit(_cli())
