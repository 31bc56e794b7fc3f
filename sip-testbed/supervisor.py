#!/usr/bin/env python3
"""The testbed's supervisor: one process that owns Kamailio and the baresip phone bots.

``testbed.start()`` runs this file under a new session, so the supervisor leads a process
group holding every daemon it spawns; stopping the testbed signals that group. The
supervisor writes ``state.json`` into the run directory once Kamailio answers and every bot
is registered: that file is the readiness signal. It then drives the bots (ctrl_tcp),
answers control requests on ``control.sock``, and exits when told to (SIGTERM/SIGINT), when a
daemon dies, or when the process it watches (``--watch-pid``, the test runner) is gone.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import wave
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final

from testbed import (
    AUDIO_RATE,
    DEFAULT_BOTS,
    DEFAULT_PORT,
    HOST,
    KAMAILIO_CFG,
    REALM,
    USERS_FILE,
    BotInfo,
    BotSpec,
    TestbedError,
    free_port,
    read_users,
)

BARESIP_MODULES: Final = Path("/usr/lib/baresip/modules")
AUDIO_SECONDS: Final = 600  # aufile hangs the call up at end of file (docs/testbed.md §2.3)

# DTMF row/column frequencies (ITU-T Q.23).
_DTMF_FREQS: Final = {
    "1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "A": (697, 1633),
    "4": (770, 1209), "5": (770, 1336), "6": (770, 1477), "B": (770, 1633),
    "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "C": (852, 1633),
    "*": (941, 1209), "0": (941, 1336), "#": (941, 1477), "D": (941, 1633),
}  # fmt: skip


def _silence(seconds: float) -> bytes:
    return bytes(2 * int(seconds * AUDIO_RATE))


def _tones(freqs: Sequence[float], seconds: float, amplitude: float) -> bytes:
    samples = array.array("h")
    for n in range(int(seconds * AUDIO_RATE)):
        value = sum(math.sin(2 * math.pi * f * n / AUDIO_RATE) for f in freqs)
        samples.append(int(amplitude * 32767 * value / len(freqs)))
    if sys.byteorder != "little":
        samples.byteswap()
    return samples.tobytes()


def _audio_for(spec: BotSpec, directory: Path) -> Path:
    """The WAV a bot plays as its microphone (8 kHz mono S16LE, as aufile requires)."""
    path = directory / f"{spec.mode}-{spec.digit}-{spec.delay:g}.wav"
    if path.exists():
        return path
    parts: list[bytes] = []
    if spec.mode == "inband":
        # Two key presses of 250 ms, 0.5 s apart, each tone at about -9 dBm0.
        freqs = _DTMF_FREQS[spec.digit.upper()]
        tone = _tones(freqs, 0.25, 0.5)
        parts = [_silence(spec.delay), tone, _silence(0.5), tone]
    elif spec.mode == "voicemail":
        parts = [_silence(1.0), _tones((1000.0,), 0.5, 0.3)]
    parts.append(_silence(AUDIO_SECONDS))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(AUDIO_RATE)
        out.writeframes(b"".join(parts))
    return path


def _baresip_config(info: BotInfo, audio: Path, tls_dir: Path | None = None) -> str:
    lines = {
        "poll_method": "epoll",
        "sip_listen": f"{HOST}:{info.sip_port}",
        "net_interface": HOST,
        "dns_server": f"{HOST}:53",
        "audio_player": "alsa,null",
        "audio_alert": "alsa,null",
        "audio_source": f"aufile,{audio}",
        "ausrc_srate": str(AUDIO_RATE),
        "ausrc_channels": "1",
        "rtp_ports": f"{info.rtp_ports[0]}-{info.rtp_ports[1]}",
        "rtcp_mux": "no",
        "jitter_buffer_delay": "5-10",
        "module_path": str(BARESIP_MODULES),
        "ctrl_tcp_listen": f"{HOST}:{info.ctrl_port}",
        "snd_path": str(info.rec_dir),
    }
    modules = ["g711.so", "aufile.so", "alsa.so", "sndfile.so"]
    if info.transport == "tls" and tls_dir is not None:
        # A TLS listener (sip_port + 1) for Kamailio's requests, the testbed's certificate
        # trusted for Kamailio's, and SDES-SRTP for ";mediaenc=srtp-mand" accounts.
        lines["sip_certificate"] = str(tls_dir / "bundle.pem")
        lines["sip_cafile"] = str(tls_dir / "cert.pem")
        modules.append("srtp.so")
    text = "".join(f"{key}\t\t{value}\n" for key, value in lines.items())
    text += "".join(f"module\t\t{m}\n" for m in modules)
    text += "module_tmp\t\tuuid.so\nmodule_tmp\t\taccount.so\n"
    text += "module_app\t\tmenu.so\nmodule_app\t\tctrl_tcp.so\n"
    return text


def _baresip_account(info: BotInfo, password: str, kam_port: int) -> str:
    answer = "manual" if info.mode in ("noanswer", "busy", "caller") else "auto"
    # Over TLS the bot insists on SRTP: an offer without a=crypto is refused (488).
    tls = info.transport == "tls"
    media, aor = (";mediaenc=srtp-mand", ";transport=tls") if tls else ("", "")
    return (
        f"<sip:{info.name}@{HOST}:{kam_port}{aor}>;auth_pass={password};"
        f'outbound="sip:{HOST}:{kam_port};transport={info.transport}";regint=600;'
        f"answermode={answer};audio_codecs=PCMU,PCMA;ptime=20{media}\n"
    )


def _certificate(directory: Path) -> Path:
    """A self-signed certificate for 127.0.0.1 (Kamailio's and the TLS bots'), made with
    the openssl command line; ``bundle.pem`` is certificate + key for baresip."""
    directory.mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", "key.pem", "-out", "cert.pem"],
        cwd=directory, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    bundle = (directory / "cert.pem").read_text() + (directory / "key.pem").read_text()
    (directory / "bundle.pem").write_text(bundle)
    return directory


def _kamailio_tls(directory: Path) -> str:
    # The testbed trusts nobody's certificate and asks for none: it is a lab on loopback
    # (voipalert's side verifies Kamailio's certificate against tls_ca).
    return (
        f"[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\n"
        f"require_certificate = no\nprivate_key = {directory / 'key.pem'}\n"
        f"certificate = {directory / 'cert.pem'}\n\n"
        "[client:default]\nmethod = TLSv1.2+\nverify_certificate = no\n"
        "require_certificate = no\n"
    )


# ------------------------------------------------------------------ the supervisor


def _netstring(payload: dict[str, Any]) -> bytes:
    data = json.dumps(payload).encode()
    return str(len(data)).encode() + b":" + data + b","


async def _read_netstring(reader: asyncio.StreamReader) -> dict[str, Any]:
    length = int((await reader.readuntil(b":"))[:-1])
    data = await reader.readexactly(length + 1)
    parsed: dict[str, Any] = json.loads(data[:-1])
    return parsed


class _Bot:
    """The supervisor's single ctrl_tcp connection to one baresip (baresip sends its
    events to the most recent ctrl_tcp client only, so there must be exactly one)."""

    def __init__(self, info: BotInfo) -> None:
        self.info = info
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.pending: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.lock = asyncio.Lock()
        self.timers: list[asyncio.TimerHandle] = []
        self.tasks: set[asyncio.Task[dict[str, Any]]] = set()
        self.process: subprocess.Popen[bytes] | None = None

    def ctrl_open(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            return probe.connect_ex((HOST, self.info.ctrl_port)) == 0

    async def connect(self) -> None:
        # The probe in ctrl_open() was the "most recent client" for a moment; this
        # connection replaces it as the one baresip sends its events to.
        self.reader, self.writer = await asyncio.open_connection(HOST, self.info.ctrl_port)

    async def command(self, command: str, params: str = "") -> dict[str, Any]:
        assert self.writer is not None
        async with self.lock:
            self.writer.write(_netstring({"command": command, "params": params, "token": "tb"}))
            await self.writer.drain()
            return await asyncio.wait_for(self.pending.get(), 5.0)

    def _record(self, event: dict[str, Any]) -> None:
        event["t"] = asyncio.get_running_loop().time()
        with self.info.events_file.open("a") as out:
            out.write(json.dumps(event) + "\n")

    async def pump(self) -> None:
        assert self.reader is not None
        while True:
            try:
                message = await _read_netstring(self.reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                self._record({"event": True, "type": "CTRL_CLOSED"})
                return
            if message.get("response"):
                await self.pending.put(message)
                continue
            self._record(message)
            self._react(message)

    def _later(self, command: str, params: str = "") -> None:
        task = asyncio.get_running_loop().create_task(self.command(command, params))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _react(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if self.info.mode == "busy" and kind == "CALL_INCOMING":
            # baresip answers a hangup of a ringing call with "486 Rejected"
            # (docs/testbed.md §2.8).
            self._later("hangup")
        elif self.info.mode == "dtmf" and kind == "CALL_ESTABLISHED":
            loop = asyncio.get_running_loop()
            self.timers.append(
                loop.call_later(self.info.delay, self._later, "sndcode", self.info.digit)
            )
        elif kind == "CALL_CLOSED":
            for timer in self.timers:
                timer.cancel()
            self.timers.clear()


class Supervisor:
    def __init__(self, run_dir: Path, specs: Sequence[BotSpec], port: int | None) -> None:
        self.run_dir = run_dir
        self.specs = list(specs)
        self.requested_port = port
        self.children: list[subprocess.Popen[bytes]] = []
        self.kamailio: subprocess.Popen[bytes] | None = None
        self.bots: dict[str, _Bot] = {}
        self.users = read_users()
        self.port = 0
        self.tls_port = 0
        self.tls_dir: Path | None = None

    def _spawn(self, args: list[str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            child = subprocess.Popen(
                args, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self.children.append(child)
        return child

    async def _wait(self, what: str, check: Any, child: subprocess.Popen[bytes], log: Path) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15.0
        while not check():
            if child.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]  # noqa: ASYNC240 - failure path
                raise TestbedError(f"{what} exited with status {child.returncode}:\n{tail}")
            if loop.time() > deadline:
                raise TestbedError(f"{what} not ready after 15 s; see {log}")
            await asyncio.sleep(0.02)

    def _kamcmd(self, *args: str) -> subprocess.CompletedProcess[str]:
        ctl = f"unix:{self.run_dir / 'kamailio' / 'kamailio_ctl'}"
        return subprocess.run(
            ["kamcmd", "-s", ctl, *args], capture_output=True, text=True, timeout=5, check=False
        )

    async def start_kamailio(self) -> None:
        kdir = self.run_dir / "kamailio"
        kdir.mkdir()
        shutil.copy(KAMAILIO_CFG, kdir / "kamailio.cfg")
        (kdir / "users.cfg").write_text(
            "".join(f'$sht(users=>{u}) = "{p}";\n' for u, p in self.users.items())
        )
        self.port = free_port(self.requested_port or DEFAULT_PORT)
        if self.requested_port and self.port != self.requested_port:
            raise TestbedError(f"port {self.requested_port} is taken on {HOST}")
        listen = f"{HOST}:{self.port}"
        log = kdir / "kamailio.log"
        extra: list[str] = []
        if any(spec.transport == "tls" for spec in self.specs):
            self.tls_dir = _certificate(self.run_dir / "tls")
            self.tls_port = free_port(avoid={self.port})
            (kdir / "tls.cfg").write_text(_kamailio_tls(self.tls_dir))
            extra = ["-A", "WITH_TLS", "-l", f"tls:{HOST}:{self.tls_port}"]
        child = self._spawn(
            ["kamailio", "-f", str(kdir / "kamailio.cfg"), "-DD", "-E", "-m", "64", "-M", "8",
             "-Y", str(kdir), "-w", str(kdir), "-P", str(kdir / "kamailio.pid"),
             "-l", f"udp:{listen}", "-l", f"tcp:{listen}", *extra],
            kdir, log,
        )  # fmt: skip
        self.kamailio = child
        await self._wait(
            "kamailio", lambda: self._kamcmd("core.uptime").returncode == 0, child, log
        )

    async def start_bot(self, spec: BotSpec, taken: set[int]) -> None:
        if spec.name not in self.users:
            raise TestbedError(f"bot {spec.name}: no such user in {USERS_FILE}")
        bdir = self.run_dir / "bots" / spec.name
        (bdir / "rec").mkdir(parents=True)
        audio = _audio_for(spec, self.run_dir / "audio")
        # Ports are probed free, then bound by baresip: another program on the box can take
        # one in between. baresip then exits with EADDRINUSE, and we retry on fresh ports.
        for attempt in range(1, 4):
            info = self._bot_ports(spec, bdir, taken)
            (bdir / "config").write_text(_baresip_config(info, audio, self.tls_dir))
            kam_port = self.tls_port if spec.transport == "tls" else self.port
            (bdir / "accounts").write_text(_baresip_account(info, self.users[spec.name], kam_port))
            info.events_file.touch()
            # -s: SIP trace in the log, so tests can see the real messages each bot exchanged.
            child = self._spawn(["baresip", "-f", str(bdir), "-s"], bdir, info.log_file)
            bot = _Bot(info)
            bot.process = child
            try:
                await self._wait(f"baresip {spec.name}", bot.ctrl_open, child, info.log_file)
            except TestbedError:
                if attempt < 3 and "already in use" in info.log_file.read_text(errors="replace"):
                    self._log(f"bot {spec.name}: port taken, retrying")
                    continue
                raise
            await bot.connect()
            self.bots[spec.name] = bot
            return

    def _bot_ports(self, spec: BotSpec, bdir: Path, taken: set[int]) -> BotInfo:
        # baresip also opens TLS on sip_port + 1 (docs/testbed.md §2.1), hence a span of 2.
        sip_port = free_port(span=2, avoid=taken)
        taken.update((sip_port, sip_port + 1))
        ctrl_port = free_port(avoid=taken)
        taken.add(ctrl_port)
        rtp = free_port(span=20, avoid=taken)
        taken.update(range(rtp, rtp + 20))
        return BotInfo(
            spec.name, spec.mode, spec.digit, spec.delay, spec.transport,
            sip_port, ctrl_port, (rtp, rtp + 19), str(bdir),
        )  # fmt: skip

    def _log(self, message: str) -> None:
        print(f"{asyncio.get_running_loop().time():.3f} {message}", flush=True)

    async def wait_registered(self) -> None:
        for name, bot in self.bots.items():
            assert bot.process is not None
            await self._wait(
                f"registration of {name}",
                lambda n=name: self._kamcmd("ul.lookup", "location", n).returncode == 0,
                bot.process,
                bot.info.log_file,
            )

    def state(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "run_dir": str(self.run_dir),
            "host": HOST,
            "port": self.port,
            "realm": REALM,
            "users": self.users,
            "control": str(self.run_dir / "control.sock"),
            "tls_port": self.tls_port,
            "tls_ca": str(self.tls_dir / "cert.pem") if self.tls_dir else "",
            "bots": {name: asdict(bot.info) for name, bot in self.bots.items()},
        }

    async def handle_control(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            request = json.loads(await reader.readline())
            bot = self.bots.get(request.get("bot", ""))
            if bot is None:
                reply: dict[str, Any] = {"ok": False, "error": "no such bot"}
            else:
                reply = await bot.command(str(request["command"]), str(request.get("params", "")))
        except (ValueError, KeyError, TimeoutError) as exc:
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        writer.write(json.dumps(reply).encode() + b"\n")
        await writer.drain()
        writer.close()

    async def run(self, watch_pid: int | None) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        (self.run_dir / "audio").mkdir(exist_ok=True)
        try:
            await self.start_kamailio()
            self._log(f"kamailio ready on {HOST}:{self.port}")
            taken: set[int] = {self.port}
            for spec in self.specs:
                await self.start_bot(spec, taken)
                self._log(f"bot {spec.name} started")
            async with asyncio.TaskGroup() as group:
                for bot in self.bots.values():
                    group.create_task(bot.pump())
                await self.wait_registered()
                self._log("all bots registered")
                server = await asyncio.start_unix_server(
                    self.handle_control, path=str(self.run_dir / "control.sock")
                )
                tmp = self.run_dir / "state.json.tmp"
                tmp.write_text(json.dumps(self.state(), indent=2))
                tmp.replace(self.run_dir / "state.json")
                while not stop.is_set():
                    if watch_pid is not None and not _alive(watch_pid):
                        break
                    dead = [c for c in self.children if c.poll() is not None]
                    if dead:
                        raise TestbedError(f"{dead[0].args!r} exited ({dead[0].returncode})")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 0.5)
                server.close()
                raise _Shutdown
        except* _Shutdown:
            pass
        finally:
            self.terminate()

    def terminate(self) -> None:
        """The bots first, while Kamailio still answers them, then Kamailio.

        On TERM baresip un-REGISTERs and waits for the answer before it exits. With Kamailio
        signalled at the same moment (the whole group at once) that answer never came, and
        each bot lingered 5-20 s (docs/testbed.md §1.9); in this order they exit in
        milliseconds. When Kamailio is already gone (``crash_kamailio``) there is nobody to
        answer: the bots get a short grace and are then killed."""
        kamailio = self.kamailio
        bots = [child for child in self.children if child is not kamailio]
        answered = kamailio is not None and kamailio.poll() is None
        _terminate_all(bots, grace=5.0 if answered else 1.0)
        if kamailio is not None:
            _terminate_all([kamailio], grace=5.0)


class _Shutdown(Exception):
    pass


def _terminate_all(children: Sequence[subprocess.Popen[bytes]], grace: float) -> None:
    """TERM every child, then KILL whichever is still running ``grace`` seconds later."""
    for child in children:
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + grace
    for child in children:
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="supervisor.py", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True, help="run directory")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--bot", action="append", type=BotSpec.parse, default=None)
    parser.add_argument("--watch-pid", type=int, default=None)
    args = parser.parse_args(argv)
    supervisor = Supervisor(args.dir, args.bot or DEFAULT_BOTS, args.port)
    failures: list[BaseException] = []
    try:
        asyncio.run(supervisor.run(args.watch_pid))
    except* TestbedError as group:
        failures.extend(group.exceptions)
    for exc in failures:
        print(f"testbed: {exc}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
