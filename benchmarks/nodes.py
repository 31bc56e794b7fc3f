"""Three nodes on one PostgreSQL: alert to first dial, and take-over after a SIGKILL.

    python -m benchmarks.nodes [ALERTS] [--lease SECONDS]

Starts a PostgreSQL 15 in a temporary directory (Debian's ``postgresql`` package; as the
``postgres`` user under root), the SIP testbed with ALERTS (default 12, at most 48) bots
that never answer, and three ``voipalert serve`` processes on the database
(docs/multi-node.md). ALERTS alerts are posted round-robin to the three nodes, 0.2 s
apart, each ringing its own bot. Figures:

- create → dial: from an alert's ``created_at`` to its first attempt's ``started_at``, the
  commit made just before the INVITE leaves (both written by the nodes on this machine);
- take-over: the node with the most calls in flight is SIGKILLed; the time until every one
  of its alerts has been dialled again by another node (bound: ``lease * 4/3`` + a pass).

The nodes share one prompt cache directory, cold at the start.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pwd
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import aiohttp
import asyncpg

from voipalert.app.demo import find_testbed

REPO = Path(__file__).resolve().parents[1]
PG_BIN = Path("/usr/lib/postgresql/15/bin")
# Each node registers with an account of its own (deploy/ha.md; the testbed's Kamailio
# keeps at most two contacts per account).
ACCOUNTS = ("voipalert", "voipalert2", "alice")
NODES = len(ACCOUNTS)


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _free_rtp() -> int:
    while True:
        port = _free_port(socket.SOCK_DGRAM)
        if port % 2 == 0 and port < 65000:
            return port


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def start_postgres(top: Path) -> tuple[str, Path]:
    """A throw-away PostgreSQL on 127.0.0.1 with trust authentication; its URL."""
    data, sockets = top / "pg", top / "pg-run"
    sockets.mkdir()
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for path in (top, sockets):
            os.chown(path, user.pw_uid, user.pw_gid)
    port = _free_port()
    subprocess.run(
        [*_as_postgres(), str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
         "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    subprocess.run(
        [*_as_postgres(), str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(top / "pg.log"),
         "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets}", "-w", "start"],
        check=True, capture_output=True, timeout=90,
    )  # fmt: skip
    return f"postgresql://postgres@127.0.0.1:{port}/postgres", data


def stop_postgres(data: Path) -> None:
    subprocess.run(
        [*_as_postgres(), str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
        check=False, capture_output=True, timeout=60,
    )  # fmt: skip


def rota(testbed: Any, bots: list[str]) -> str:
    people = "".join(
        f"  - name: {b}-person\n    language: en\n    contacts:\n      - sip: {testbed.uri(b)}\n"
        for b in bots
    )
    policies = "".join(
        f"  - name: p-{b}\n    repeat: 0\n    steps:\n      - targets:\n"
        f"          - person: {b}-person\n        timeout: 300s\n        ring_timeout: 110s\n"
        for b in bots
    )
    return (
        f"version: 1\npeople:\n{people}teams:\n  - name: all\n    members: "
        f"[{', '.join(f'{b}-person' for b in bots)}]\npolicies:\n{policies}"
        f"routes:\n  - name: all\n    default: true\n    policy: p-{bots[0]}\n    team: all\n"
    )


def node_env(testbed: Any, url: str, top: Path, lease: float, account: str) -> dict[str, str]:
    rtp = _free_rtp()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOIPALERT_")}
    return env | {
        "PYTHONPATH": str(REPO),
        "VOIPALERT_DATABASE__URL": url,
        "VOIPALERT_HTTP__SECRET_FILE": str(top / "server.key"),
        "VOIPALERT_HTTP__PORT": str(_free_port()),
        "VOIPALERT_CLUSTER__LEASE_SECONDS": str(lease),
        "VOIPALERT_SIP__REGISTRAR": testbed.registrar,
        "VOIPALERT_SIP__USERNAME": account,
        "VOIPALERT_SIP__PASSWORD": testbed.users[account],
        "VOIPALERT_SIP__LOCAL_PORT": str(_free_port(socket.SOCK_DGRAM)),
        "VOIPALERT_MEDIA__RTP_PORT_MIN": str(rtp),
        "VOIPALERT_MEDIA__RTP_PORT_MAX": str(rtp + 99),
        "VOIPALERT_TTS__CACHE_DIR": str(top / "cache"),  # shared: rendered once
        "VOIPALERT_TTS__VOICES_DIR": str(REPO / "voices"),
        "VOIPALERT_ENGINE__IDLE_POLL_SECONDS": "1",
        # A survivor carries its own calls and the dead node's: with the default 8 lines, a
        # taken-over call would wait for a line while every phone rings for 110 s.
        "VOIPALERT_ENGINE__MAX_CONCURRENT_CALLS": "48",
    }


def spawn(env: dict[str, str], cwd: Path, log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "voipalert", "serve"], env=env, cwd=cwd,
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def cli(env: dict[str, str], cwd: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "voipalert", *args], env=env, cwd=cwd,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"voipalert {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


async def ready(port: int, process: subprocess.Popen[bytes]) -> None:
    async with asyncio.timeout(300):  # three Piper start-ups on a shared 2-core machine
        while True:
            if process.poll() is not None:
                raise SystemExit(f"a node exited with {process.returncode}")
            try:
                async with (
                    aiohttp.ClientSession() as http,
                    http.get(f"http://127.0.0.1:{port}/readyz") as r,
                ):
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)


async def fetch(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def run(alerts: int, lease: float, top: Path) -> dict[str, float]:
    base_url, data = start_postgres(top)
    testbed_module = find_testbed()
    bots = [f"load{n:02d}" for n in range(1, alerts + 1)]
    testbed = await asyncio.to_thread(
        testbed_module.start, bots=[testbed_module.BotSpec(b, "noanswer") for b in bots]
    )
    processes: list[subprocess.Popen[bytes]] = []
    try:
        admin = await asyncpg.connect(base_url)
        await admin.execute("CREATE DATABASE bench")
        await admin.close()
        url = base_url.rsplit("/", 1)[0] + "/bench"
        envs = [node_env(testbed, url, top, lease, account) for account in ACCOUNTS]
        (top / "rota.yaml").write_text(rota(testbed, bots))
        cli(envs[0], top, "rota", "import", "rota.yaml")
        token = json.loads(cli(envs[0], top, "token", "create", "b", "--scope", "admin", "--json"))
        for n, env in enumerate(envs):
            with (top / f"node{n}.log").open("wb") as log:
                processes.append(spawn(env, top, log))
        ports = [int(env["VOIPALERT_HTTP__PORT"]) for env in envs]
        try:
            await asyncio.gather(
                *(ready(p, proc) for p, proc in zip(ports, processes, strict=True))
            )
        except TimeoutError:
            raise SystemExit((top / "node0.log").read_text()[-3000:]) from None
        headers = {"Authorization": f"Bearer {token['token']}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            for n, bot in enumerate(bots):
                body = {"summary": f"disk {n} full", "policy": f"p-{bot}"}
                api = f"http://127.0.0.1:{ports[n % NODES]}/api/v1/alerts"
                async with http.post(api, json=body) as r:
                    if r.status != 202:
                        raise SystemExit(f"POST answered {r.status}: {await r.text()}")
                await asyncio.sleep(0.2)
        return await _measure(url, alerts, lease, processes)
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        await asyncio.to_thread(testbed.stop)
        stop_postgres(data)


async def _measure(
    url: str, alerts: int, lease: float, processes: list[subprocess.Popen[bytes]]
) -> dict[str, float]:
    async with asyncio.timeout(120):
        while True:
            rows = await fetch(url, "SELECT count(*) FROM attempts WHERE state = 'in_flight'")
            if int(rows[0][0]) == alerts:
                break
            await asyncio.sleep(0.1)
    first = await fetch(
        url, "SELECT a.created_at, min(t.started_at) AS dialled FROM alerts a "
        "JOIN attempts t ON t.alert_id = a.id GROUP BY a.id, a.created_at",
    )  # fmt: skip
    delays = [
        (
            datetime.fromisoformat(r["dialled"]) - datetime.fromisoformat(r["created_at"])
        ).total_seconds()
        for r in first
    ]
    holders = await fetch(
        url, "SELECT n.id, n.pid, count(*) AS calls FROM attempts t JOIN nodes n "
        "ON n.id = t.node WHERE t.state = 'in_flight' GROUP BY n.id, n.pid ORDER BY calls DESC",
    )  # fmt: skip
    victim, pid, calls = holders[0]["id"], holders[0]["pid"], holders[0]["calls"]
    theirs = [r["alert_id"] for r in await fetch(
        url, "SELECT alert_id FROM attempts WHERE node = $1", victim
    )]  # fmt: skip
    process = next(p for p in processes if p.pid == pid)
    os.killpg(process.pid, signal.SIGKILL)
    killed = time.monotonic()
    async with asyncio.timeout(lease * 4 + 60):
        while True:
            rows = await fetch(
                url, "SELECT count(DISTINCT alert_id) FROM attempts WHERE alert_id = ANY($1) "
                "AND started_at IS NOT NULL AND node IS DISTINCT FROM $2", theirs, victim,
            )  # fmt: skip
            if int(rows[0][0]) == len(theirs):
                break
            await asyncio.sleep(0.05)
    return {
        "median": statistics.median(delays),
        "p90": sorted(delays)[int(0.9 * (len(delays) - 1))],
        "max": max(delays),
        "takeover": time.monotonic() - killed,
        "calls": float(calls),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("alerts", nargs="?", type=int, default=12)
    parser.add_argument("--lease", type=float, default=3.0, help="[cluster] lease_seconds")
    args = parser.parse_args()
    if not 1 <= args.alerts <= 48:
        parser.error("ALERTS: 1 to 48 (one testbed bot each)")
    top = Path(tempfile.mkdtemp(prefix="voipalert-nodes-"))
    try:
        got = asyncio.run(run(args.alerts, args.lease, top))
    finally:
        shutil.rmtree(top, ignore_errors=True)
    print(f"cores: {os.cpu_count()}, nodes: {NODES}, alerts: {args.alerts}, lease: {args.lease} s")
    print(
        f"create -> dial: median {got['median'] * 1000:.0f} ms, p90 {got['p90'] * 1000:.0f} ms, "
        f"max {got['max'] * 1000:.0f} ms (prompt cache cold at start)"
    )
    bound = args.lease * 4 / 3 + 1
    print(
        f"take-over after SIGKILL of the node with {got['calls']:.0f} call(s) in flight: "
        f"{got['takeover']:.1f} s (bound {bound:.1f} s + one engine pass)"
    )


if __name__ == "__main__":
    main()
