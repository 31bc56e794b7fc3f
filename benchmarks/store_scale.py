"""Intake rate and engine pass time with N open alerts: SQLite against PostgreSQL, one node
against three (issue 15's benchmark).

    python -m benchmarks.bench_store [N] --compare [--posters=K]   (N: 10000 by default)

Three set-ups, each on a fresh database, each node its own process (as ``serve`` is):

- ``sqlite x1``: one process on a SQLite file (synchronous FULL);
- ``postgresql x1``: one node on a throw-away PostgreSQL 15 on 127.0.0.1 (leases, as a
  single ``serve`` on PostgreSQL runs);
- ``postgresql x3``: three nodes on that PostgreSQL sharing the alerts by their leases.

For each: the intake (N alerts through ``create_or_join_alert``, split between the nodes,
all writing at once; each node from K concurrent posters, ``--posters=K``, 1 by default: one
alert at a time, each its own transaction; with several, as the HTTP intake's clients,
alerts that arrive together share a commit: store/batch.py), then the engines started on those N
alerts (first pass: plan and commit an intent for each), then 5 passes re-planning them all
mid-escalation (every call rings until stopped) at once on every node. Each node takes at
most ``ceil(N / nodes)`` alerts per pass (serve's batch is 50) so that the first pass
shares them out; the steady passes do not depend on it. The load average is printed with
each figure: the machine is shared, and the figures move with it.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks.bench_store import _RingsForever, _wait_ticks
from benchmarks.nodes import start_postgres, stop_postgres
from voipalert.clock import FakeClock
from voipalert.domain.alert import NewAlert
from voipalert.engine import Engine, EngineConfig
from voipalert.rotafile.parse import parse_rota
from voipalert.store import Store, StoreConfig
from voipalert.store.cluster import ClusterNode

ROOT = Path(__file__).resolve().parent.parent
ROTA = ROOT / "deploy" / "rota.example.yaml"
START = datetime(2026, 3, 2, 10, tzinfo=UTC)
LEASE_SECONDS = 600.0  # no lease expires during a run: the nodes share, never take over
PASSES = 5


def _load() -> str:
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


# ------------------------------------------------------------------------- one node (child)


def _say(**what: Any) -> None:
    print(json.dumps(what), flush=True)


async def _node(
    database: str, secret: Path, first: int, count: int, batch: int, posters: int
) -> None:
    """One node, told what to do on stdin, one line per step; answers on stdout."""
    clock = FakeClock(START)
    store = await Store.open(database, clock, StoreConfig(secret_file=secret))
    config = EngineConfig(idle_poll_seconds=3600, tick_timeout_seconds=3600, slow_tick_seconds=3600)
    engine = Engine(store, _RingsForever(), clock, config)
    tasks: list[asyncio.Task[None]] = []
    cluster: ClusterNode | None = None
    _say(ready=True)
    while True:
        command = (await asyncio.to_thread(sys.stdin.readline)).strip()
        if command == "insert":
            started = time.perf_counter()
            numbers = iter(range(first, first + count))

            async def poster(numbers: Iterator[int] = numbers) -> None:
                for i in numbers:  # shared: each number is posted once, by one poster
                    await store.create_or_join_alert(NewAlert(f"disk {i} full", dedup_key=f"k{i}"))

            await asyncio.gather(*(poster() for _ in range(posters)))
            _say(seconds=time.perf_counter() - started)
        elif command == "engine":
            started = time.perf_counter()
            cluster = await store.join_cluster(LEASE_SECONDS, engine.wake, batch)
            tasks.append(asyncio.create_task(engine.run()))
            if cluster is not None:
                tasks.append(asyncio.create_task(cluster.run()))
            await _wait_ticks(engine, 1)
            _say(seconds=time.perf_counter() - started)
        elif command == "passes":
            started = time.perf_counter()
            for _ in range(PASSES):
                target = engine.ticks + 1
                engine.wake()
                await _wait_ticks(engine, target)
            held = None if cluster is None else cluster.lease.held
            _say(seconds=(time.perf_counter() - started) / PASSES, held=held)
        else:
            break
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await store.close()


# ---------------------------------------------------------------------------- the driver


@dataclass
class Node:
    process: asyncio.subprocess.Process

    async def ask(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        if command:
            self.process.stdin.write(f"{command}\n".encode())
            await self.process.stdin.drain()
        line = await self.process.stdout.readline()
        if not line:
            raise SystemExit(f"a node exited ({command or 'start'}): see its stderr above")
        answer: dict[str, Any] = json.loads(line)
        return answer


async def _everyone(nodes: list[Node], command: str) -> tuple[float, list[dict[str, Any]]]:
    started = time.perf_counter()
    answers = await asyncio.gather(*(node.ask(command) for node in nodes))
    return time.perf_counter() - started, list(answers)


async def _leased(url: str, n: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        while True:
            held = await conn.fetchval("SELECT count(*) FROM alerts WHERE lease_node IS NOT NULL")
            if held >= n:
                return
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def _setup(
    name: str, database: str, secret: Path, n: int, count: int, posters: int
) -> dict[str, float]:
    store = await Store.open(database, FakeClock(START), StoreConfig(secret_file=secret))
    await store.replace_rota(parse_rota(ROTA.read_text()))
    await store.close()
    share = math.ceil(n / count)
    nodes = []
    for k in range(count):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks.store_scale", "--node", database, str(secret),
            str(k * share), str(min(share, n - k * share)), str(share), str(posters),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT,
        )  # fmt: skip
        nodes.append(Node(process))
    try:
        await asyncio.gather(*(node.ask("") for node in nodes))
        got: dict[str, float] = {}
        wall, _ = await _everyone(nodes, "insert")
        got["rate"] = n / wall
        print(f"{name}: intake {got['rate']:,.0f} alerts/s ({n} alerts; {_load()})", flush=True)
        wall, _ = await _everyone(nodes, "engine")
        if database.startswith("postgresql://"):
            await _leased(database, n)
        got["first"] = wall
        print(f"{name}: first pass over {n} new alerts {wall:.1f} s ({_load()})", flush=True)
        wall, answers = await _everyone(nodes, "passes")
        got["pass"] = wall / PASSES
        each = ", ".join(f"{a['seconds'] * 1000:,.0f}" for a in answers)
        held = "" if count == 1 else f"; leases held {[a['held'] for a in answers]}"
        print(
            f"{name}: pass re-planning {n} alerts {got['pass'] * 1000:,.0f} ms "
            f"(each node's: {each} ms{held}; {_load()})",
            flush=True,
        )
        return got
    finally:
        for node in nodes:
            assert node.process.stdin is not None
            node.process.stdin.write(b"quit\n")
            await node.process.stdin.drain()
        for node in nodes:
            await node.process.wait()


async def compare(n: int, posters: int = 1) -> None:
    print(
        f"cpu_count={os.cpu_count()} python={sys.version.split()[0]} posters per node "
        f"{posters} {_load()}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        top = Path(tmp)
        secret = top / "server.secret"
        results = {"sqlite x1": await _setup("sqlite x1", str(top / "v.db"), secret, n, 1, posters)}
        base, data = start_postgres(top)
        try:
            for name, count in (("postgresql x1", 1), ("postgresql x3", 3)):
                admin = await asyncpg.connect(base)
                database = name.replace(" ", "_")
                await admin.execute(f'CREATE DATABASE "{database}"')
                await admin.close()
                url = base.rsplit("/", 1)[0] + f"/{database}"
                results[name] = await _setup(name, url, secret, n, count, posters)
        finally:
            stop_postgres(data)
    _ratios(results)


def _ratios(results: dict[str, dict[str, float]]) -> None:
    sqlite, one, three = results["sqlite x1"], results["postgresql x1"], results["postgresql x3"]
    print("\nratios (higher rate is better; lower pass time is better)")
    print(f"  intake rate   postgresql x1 / sqlite x1:     {one['rate'] / sqlite['rate']:.2f}")
    print(f"  intake rate   postgresql x3 / postgresql x1: {three['rate'] / one['rate']:.2f}")
    print(f"  first pass    postgresql x1 / sqlite x1:     {one['first'] / sqlite['first']:.2f}")
    print(f"  first pass    postgresql x3 / postgresql x1: {three['first'] / one['first']:.2f}")
    print(f"  steady pass   postgresql x1 / sqlite x1:     {one['pass'] / sqlite['pass']:.2f}")
    print(f"  steady pass   postgresql x3 / postgresql x1: {three['pass'] / one['pass']:.2f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--node"]:
        database, secret, first, count, batch, posters = sys.argv[2:8]
        asyncio.run(_node(database, Path(secret), int(first), int(count), int(batch), int(posters)))
    else:
        asyncio.run(compare(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000))
