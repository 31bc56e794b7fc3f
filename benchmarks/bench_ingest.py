"""Trigger throughput over loopback HTTP: nothing lost, nothing duplicated.

    python benchmarks/bench_ingest.py [N] [CONCURRENCY]

Starts the real HTTP API (``ingest.webhook``) in a child process over a fresh SQLite file
(WAL, synchronous=FULL: every 202 is on disk), then posts N alerts (default 5000), each with
its own dedup key, from CONCURRENCY client connections (default 32) as fast as the server
answers. Then it replays 10 % of them (each must join its open alert) and opens the SQLite
file with a separate connection to check that every alert is there exactly once, with the id
the server returned. Prints the accepted rate, latency percentiles and the check's result;
exits 1 if anything was lost or duplicated.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent


async def _serve(db: Path, ready: Path) -> None:
    from voipalert.clock import SystemClock
    from voipalert.ingest.config import IngestConfig
    from voipalert.ingest.health import SipState
    from voipalert.ingest.webhook import build_app, start_http
    from voipalert.store import Scope, Store

    clock = SystemClock()
    store = await Store.open(db, clock)
    _, token = await store.create_api_token("bench", frozenset({Scope.TRIGGER}))
    app = build_app(
        store,
        wake=lambda: None,
        sip_state=lambda: SipState.NOT_CONFIGURED,
        config=IngestConfig(),
        clock=clock,
    )
    runner, port = await start_http(app, "127.0.0.1", 0)
    await asyncio.to_thread(ready.write_text, f"{port} {token}")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await store.close()


def _start_server(directory: Path) -> tuple[subprocess.Popen[bytes], int, str]:
    ready = directory / "ready"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(directory / "bench.db"), str(ready)],
        env=env,
        start_new_session=True,
    )
    for _ in range(300):
        if ready.exists() and ready.read_text():
            port, token = ready.read_text().split()
            return server, int(port), token
        try:
            server.wait(timeout=0.05)
            raise RuntimeError("the server exited at start-up")
        except subprocess.TimeoutExpired:
            continue
    raise RuntimeError("the server did not start")


async def _post_all(
    base: str, token: str, keys: list[str], concurrency: int
) -> tuple[dict[str, tuple[int, bool]], list[float]]:
    results: dict[str, tuple[int, bool]] = {}
    latencies: list[float] = []
    queue: asyncio.Queue[str] = asyncio.Queue()
    for key in keys:
        queue.put_nowait(key)
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker() -> None:
            while not queue.empty():
                key = queue.get_nowait()
                body = {"summary": f"load test alert {key}", "dedup_key": key, "severity": "info"}
                started = time.perf_counter()
                async with session.post(f"{base}/api/v1/alerts", json=body) as response:
                    reply = await response.json()
                    if response.status != 202:
                        raise RuntimeError(f"{key}: HTTP {response.status} {reply}")
                latencies.append(time.perf_counter() - started)
                results[key] = (reply["id"], reply["created"])

        async with asyncio.TaskGroup() as group:
            for _ in range(concurrency):
                group.create_task(worker())
    return results, latencies


def _check(
    db: Path, first: dict[str, tuple[int, bool]], replayed: dict[str, tuple[int, bool]]
) -> list[str]:
    problems = []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT id, dedup_key, occurrences FROM alerts").fetchall()
    finally:
        conn.close()
    stored = {key: (alert_id, occurrences) for alert_id, key, occurrences in rows}
    if len(rows) != len(stored):
        problems.append(f"{len(rows) - len(stored)} duplicated dedup keys in the database")
    if len(rows) != len(first):
        problems.append(f"{len(rows)} alerts stored for {len(first)} posted")
    for key, (alert_id, created) in first.items():
        if not created:
            problems.append(f"{key}: first post did not create")
        if stored.get(key, (None, 0))[0] != alert_id:
            problems.append(f"{key}: stored under {stored.get(key)}, the 202 said {alert_id}")
    for key, (alert_id, created) in replayed.items():
        if created or alert_id != first[key][0] or stored[key][1] != 2:
            problems.append(f"{key}: replay did not join its alert")
    return problems


async def _client(port: int, token: str, n: int, concurrency: int, db: Path) -> int:
    base = f"http://127.0.0.1:{port}"
    keys = [f"load-{i:06d}" for i in range(n)]
    started = time.perf_counter()
    first, latencies = await _post_all(base, token, keys, concurrency)
    elapsed = time.perf_counter() - started
    replay_keys = keys[::10]
    replayed, _ = await _post_all(base, token, replay_keys, concurrency)
    problems = _check(db, first, replayed)
    cuts = statistics.quantiles(latencies, n=100)
    print(f"cpus: {os.cpu_count()}  alerts: {n}  client connections: {concurrency}")
    print(f"accepted: {n / elapsed:,.0f} alerts/s ({elapsed:.2f} s; 202 only after each commit)")
    print(f"latency: p50 {cuts[49] * 1000:.1f} ms  p99 {cuts[98] * 1000:.1f} ms")
    print(f"replayed {len(replayed)}: all joined their open alert" if not problems else "")
    if problems:
        print(f"FAILED: {len(problems)} problems, first: {problems[:5]}")
        return 1
    print(f"database: all {n} alerts present exactly once, ids as returned; none lost")
    return 0


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        asyncio.run(_serve(Path(sys.argv[2]), Path(sys.argv[3])))
        return 0
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    concurrency = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    with tempfile.TemporaryDirectory(prefix="voipalert-bench-") as tmp:
        directory = Path(tmp)
        server, port, token = _start_server(directory)
        try:
            return asyncio.run(_client(port, token, n, concurrency, directory / "bench.db"))
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
